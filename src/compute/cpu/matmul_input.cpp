// matmul_input: per-token activation quantization ahead of a weight's matmul, into a thread_local buffer.
#include "compute/cpu/matmul_input.h"

#include <vector>

#include "quant/fp8_activations.h"

namespace anvil {

namespace {

// rows(first_token, count) over all tokens: a decode step's few rows are cheaper than a
// dispatch; a prefill's are split by token.
template <class Rows>
void for_token_rows(ThreadPool& pool, int64_t n_tokens, int64_t k, const Rows& rows) {
  constexpr int64_t kParallelElements = 1 << 16;
  if (n_tokens * k < kParallelElements || n_tokens == 1) {
    rows(0, n_tokens);
  } else {
    pool.parallel_for(n_tokens, [&](int64_t begin, int64_t end) { rows(begin, end - begin); });
  }
}

float* grown(std::vector<float>& buffer, int64_t n) {
  if (buffer.size() < static_cast<size_t>(n)) buffer.resize(static_cast<size_t>(n));
  return buffer.data();
}

}  // namespace

const float* matmul_input(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens) {
  const bool quantized = weight.quant.activations == ActivationQuant::DynamicPerTokenFp8;
  const int32_t* order = weight.quant.input_order;
  if ((!quantized && order == nullptr) || n_tokens <= 0) return x;
  const int64_t k = weight.cols();
  // One buffer per calling thread (each call's workers only read it): decode reuses it every call.
  thread_local std::vector<float> caller_buffer;
  float* out = grown(caller_buffer, n_tokens * k);
  // (check_quant_scale_layout allows an input_order on I4 weights only, which take no activation
  // quantization: one of the two applies.)
  if (order != nullptr) {
    for_token_rows(pool, n_tokens, k, [&](int64_t t, int64_t count) {
      for (int64_t i = t; i < t + count; ++i) {
        const float* src = x + i * k;
        float* dst = out + i * k;
        for (int64_t j = 0; j < k; ++j) dst[j] = src[order[j]];
      }
    });
    return out;
  }
  for_token_rows(pool, n_tokens, k, [&](int64_t t, int64_t count) {
    quantize_dequantize_rows_e4m3(x + t * k, count, k, out + t * k);
  });
  return out;
}

E4M3Rows matmul_input_e4m3_rows(ThreadPool& pool, const float* x, int64_t n_tokens, int64_t k) {
  thread_local std::vector<float> caller_values, caller_scales;
  float* values = grown(caller_values, n_tokens * k);
  float* scales = grown(caller_scales, n_tokens);
  for_token_rows(pool, n_tokens, k, [&](int64_t t, int64_t count) {
    quantize_rows_e4m3(x + t * k, count, k, values + t * k, scales + t);
  });
  return {values, scales};
}

}  // namespace anvil
