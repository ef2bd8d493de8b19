// matmul: the GEMV kernels split over threads by output rows; and the plain reference path.
#include "compute/cpu/matmul.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <span>
#include <string_view>
#include <cstring>
#include <vector>

#include "compute/cpu/gemm_provider.h"
#include "compute/cpu/gemv.h"
#include "compute/cpu/gemv_kernels.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/matmul_input.h"
#include "compute/cpu/vector_ops.h"
#include "core/stealing_ranges.h"
#include "quant/ggml_panels.h"
#include "quant/scaled_dequant.h"

namespace anvil {

void weight_row_to_f32(const Tensor& weight, int64_t row, float* dst) {
  const int32_t* order = weight.quant.input_order;
  if (order == nullptr) {
    weight_row_to_f32_as_stored(weight, row, dst);
    return;
  }
  thread_local std::vector<float> stored;
  const int64_t cols = weight.cols();
  stored.resize(static_cast<size_t>(cols));
  weight_row_to_f32_as_stored(weight, row, stored.data());
  for (int64_t j = 0; j < cols; ++j) dst[order[j]] = stored[j];
}

void weight_row_to_f32_as_stored(const Tensor& weight, int64_t row, float* dst) {
  const std::byte* src = dtype_is_panels(weight.dtype) ? nullptr : weight.row(row);
  const int64_t cols = weight.cols();
  switch (weight.dtype) {
    case DType::F32: std::memcpy(dst, src, cols * sizeof(float)); break;
    case DType::BF16: bf16_row_to_f32(reinterpret_cast<const uint16_t*>(src), dst, cols); break;
    case DType::F16: f16_row_to_f32(reinterpret_cast<const uint16_t*>(src), dst, cols); break;
    case DType::F8_E4M3:
    case DType::I8:
    case DType::I4: dequantize_scaled_row(weight, row, dst); break;
    case DType::Q8_0_R4:
    case DType::Q4_0_R4:
    case DType::Q4_K_R4:
#if defined(__x86_64__)
      if (active_isa() >= Isa::Avx2) {
        gemv_detail::avx2_panel_row_to_f32(weight.dtype, weight.data, weight.rows(), cols, row, dst);
        break;
      }
#endif
      panel_row_to_f32(weight.dtype, weight.data, weight.rows(), cols, row, dst);
      break;
    default: dtype_info(weight.dtype).to_float(src, dst, cols); break;
  }
}

void matmul_reference(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y) {
  const int64_t out = weight.rows(), in = weight.cols();
  x = matmul_input(pool, weight, x, n_tokens);  // FP8 W8A8: the reference rounds x as every path does
  pool.parallel_for(out, [&](int64_t begin, int64_t end) {
    std::vector<float> row_buffer(weight.dtype == DType::F32 ? 0 : in);
    for (int64_t r = begin; r < end; ++r) {
      const float* row;
      if (weight.dtype == DType::F32) {
        row = reinterpret_cast<const float*>(weight.row(r));
      } else {
        weight_row_to_f32_as_stored(weight, r, row_buffer.data());
        row = row_buffer.data();
      }
      for (int64_t t = 0; t < n_tokens; ++t) y[t * out + r] = dot_f32(row, x + t * in, in);
    }
  });
}

namespace {

// gemv_prepare of the activations `weight`'s matmul multiplies (matmul_input). FP8 W8A8 passes
// the unscaled E4M3 values and their token scales, which the kernels apply to the dots: exact
// in the bf16 products of the AVX-512 BF16 kernels, as in the oneDNN bf16 GEMM.
void prepare_matmul_input(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens,
                          GemvActivations& activations) {
  if (weight.dtype == DType::F8_E4M3 && weight.quant.activations == ActivationQuant::DynamicPerTokenFp8) {
    const E4M3Rows rows = matmul_input_e4m3_rows(pool, x, n_tokens, weight.cols());
    gemv_prepare(weight.dtype, rows.values, n_tokens, weight.cols(), activations, rows.token_scales);
  } else {
    gemv_prepare(weight.dtype, matmul_input(pool, weight, x, n_tokens), n_tokens, weight.cols(), activations);
  }
}

// The GEMV kernels over the rows of `outputs` laid end to end, one dispatch. Row ranges in
// multiples of 16 keep every thread on the kernels' multi-row fast path; threads take them from
// StealingRanges, so a thread that finishes its share first helps the others.
void gemv_outputs(ThreadPool& pool, std::span<const MatmulOutput> outputs, const GemvActivations& activations) {
  constexpr int64_t kGemvRowAlign = 16;
  int64_t total_rows = 0;
  for (const MatmulOutput& o : outputs) total_rows += o.weight->rows();
  StealingRanges ranges(total_rows, pool.thread_count(), kGemvRowAlign);
  pool.run([&](int index, int) {
    int64_t begin, end;
    while (ranges.next(index, begin, end)) {
      int64_t offset = 0;
      for (const MatmulOutput& o : outputs) {
        const int64_t rows = o.weight->rows();
        const int64_t lo = std::max(begin, offset), hi = std::min(end, offset + rows);
        if (lo < hi) gemv_rows(*o.weight, activations, lo - offset, hi - offset, o.y, rows);
        offset += rows;
      }
    }
  });
}

}  // namespace

void matmul_gemv(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y) {
  // One buffer per thread that calls matmul: prepared activations are reused across calls.
  // (A thread_local named inside the lambda would be each worker's own, empty, instance: bind
  // a reference to the caller's first.)
  thread_local GemvActivations caller_activations;
  GemvActivations& activations = caller_activations;
  prepare_matmul_input(pool, weight, x, n_tokens, activations);
  const MatmulOutput output{&weight, y};
  gemv_outputs(pool, std::span<const MatmulOutput>(&output, 1), activations);
}

namespace {

// ANVIL_GEMM, read once: a provider name, or empty for the automatic choice.
GemmProvider* forced_provider() {
  static GemmProvider* provider = [] () -> GemmProvider* {
    const char* name = std::getenv("ANVIL_GEMM");
    if (!name || !*name || std::string_view(name) == "auto") return nullptr;
    GemmProvider* found = find_gemm_provider(name);
    if (!found) fmt::print(stderr, "anvil: warning: ANVIL_GEMM={} is not a GEMM provider; using the automatic choice\n", name);
    return found;
  }();
  return provider;
}

}  // namespace

// The provider a prefill-sized call goes to; null: the GEMV kernels.
static GemmProvider* prefill_provider_for(const Tensor& weight, int64_t n_tokens) {
  if (GemmProvider* forced = forced_provider()) return forced;
  // I8 (W8A8): the int8 GEMM (the GEMV kernels' activation codes and arithmetic, so the same
  // numbers) where oneDNN's int8 kernels are exact; elsewhere the GEMV kernels, as for the GGML
  // types, up to kQuantizedGemmMinTokens and oneDNN's bf16 beyond.
  if (weight.dtype == DType::I8) {
    static GemmProvider* const int8_gemm = find_gemm_provider("onednn_int8");
    if (int8_gemm != nullptr && int8_gemm->supports(weight.dtype, n_tokens, weight.rows(), weight.cols()))
      return n_tokens >= kI8GemmMinTokens ? int8_gemm : nullptr;
  }
  // The GGML quantized types run int8 dot products on the GEMV kernels, and beat oneDNN's bf16 up
  // to as many tokens. F8_E4M3 and I4 (W8A16, W4A16) multiply f32 activations, as the float types
  // do: oneDNN's bf16 GEMM wins from the same 16 tokens (`anvil bench kernels --kernels gemm
  // --tokens 16,32,64 --providers gemv,onednn`).
  const bool int8_gemv = dtype_is_ggml_block(weight.dtype) || weight.dtype == DType::I8;
  const int64_t gemm_min = int8_gemv ? kQuantizedGemmMinTokens : kPrefillGemmMinTokens;
  return n_tokens >= gemm_min ? find_gemm_provider("onednn") : nullptr;
}

void matmul(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y) {
  GemmProvider* provider = prefill_provider_for(weight, n_tokens);
  if (provider && provider->supports(weight.dtype, n_tokens, weight.rows(), weight.cols())) {
    // A provider that fails (e.g. oneDNN cannot create a primitive) leaves the call to GEMV.
    if (provider->run(pool, weight, x, n_tokens, y).is_ok()) return;
  }
  matmul_gemv(pool, weight, x, n_tokens, y);
}

namespace {

// Whether two weights of the same width gather x the same way (GPTQ act-order q/k/v, or gate/up,
// share one order: it comes from their common input's statistics, but each file stores its own).
bool same_input_order(const Tensor& a, const Tensor& b) {
  const int32_t* p = a.quant.input_order;
  const int32_t* q = b.quant.input_order;
  if (p == q) return true;
  if (p == nullptr || q == nullptr) return false;
  return std::memcmp(p, q, static_cast<size_t>(a.cols()) * sizeof(int32_t)) == 0;
}

}  // namespace

void matmul_shared_input(ThreadPool& pool, std::span<const MatmulOutput> outputs, const float* x, int64_t n_tokens) {
  if (outputs.empty()) return;
  const Tensor& first = *outputs[0].weight;
  bool fuse = outputs.size() > 1;
  bool one_order = first.quant.input_order != nullptr;  // act-order weights sharing one column order
  for (const MatmulOutput& o : outputs) {
    const bool same_order = o.weight->cols() == first.cols() && same_input_order(*o.weight, first);
    one_order = one_order && same_order;
    fuse = fuse && same_order && o.weight->dtype == first.dtype &&
           o.weight->quant.activations == first.quant.activations &&
           prefill_provider_for(*o.weight, n_tokens) == nullptr;
  }
  if (!fuse) {
    // Act-order weights that share their column order (q/k/v, gate/up) take x gathered once.
    if (one_order) {
      const float* gathered = matmul_input(pool, first, x, n_tokens);
      for (const MatmulOutput& o : outputs) {
        Tensor in_stored_order = *o.weight;
        in_stored_order.quant.input_order = nullptr;
        matmul(pool, in_stored_order, gathered, n_tokens, o.y);
      }
      return;
    }
    for (const MatmulOutput& o : outputs) matmul(pool, *o.weight, x, n_tokens, o.y);
    return;
  }
  // One activation preparation and one dispatch for all the weights: the threads share out their
  // rows laid end to end (decode is ~7 calls per layer; the dispatch and the activation
  // quantization were paid per call).
  thread_local GemvActivations caller_activations;
  GemvActivations& activations = caller_activations;
  prepare_matmul_input(pool, first, x, n_tokens, activations);
  gemv_outputs(pool, outputs, activations);
}

}  // namespace anvil
