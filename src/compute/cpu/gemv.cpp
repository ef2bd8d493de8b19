// gemv dispatch: activation preparation and the choice of kernel for the active ISA.
#include "compute/cpu/gemv.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "compute/cpu/gemv_kernels.h"
#include "compute/cpu/isa.h"
#include "quant/int8_w8a8.h"

namespace anvil {

using namespace gemv_detail;

namespace {

// How a weight dtype wants its activations (see GemvActivations).
enum class ActivationKind { Float, Int8Blocks, Int8PerToken };

ActivationKind activation_kind(DType dtype) {
  switch (dtype) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::F8_E4M3:  // W8A16
    case DType::I4:       // W4A16
      return ActivationKind::Float;
    case DType::I8: return ActivationKind::Int8PerToken;  // W8A8
    default: return ActivationKind::Int8Blocks;
  }
}

// The best kernel at or below the active ISA; every dtype has a scalar kernel.
GemvKernel select_kernel(DType dtype) {
  const Isa isa = active_isa();
  GemvKernel kernel = nullptr;
#if defined(__x86_64__)
  if (isa >= Isa::Avx512) kernel = avx512_kernel(dtype, isa_has_avx512_vnni());
  if (kernel == nullptr && isa >= Isa::Avx2) kernel = avx2_kernel(dtype);
#endif
  if (kernel == nullptr) kernel = scalar_kernel(dtype);
  return kernel;
}

}  // namespace

bool gemv_supports(DType weight_dtype) { return scalar_kernel(weight_dtype) != nullptr; }

void gemv_prepare(DType weight_dtype, const float* x, int64_t n_tokens, int64_t k, GemvActivations& out) {
  assert(k % dtype_info(weight_dtype).block_elems == 0);
  out.weight_dtype = weight_dtype;
  out.n_tokens = n_tokens;
  out.k = k;
  const ActivationKind kind = activation_kind(weight_dtype);
  if (kind == ActivationKind::Float) {
    out.f32.assign(x, x + n_tokens * k);
    return;
  }
  if (kind == ActivationKind::Int8PerToken) {
    out.q.resize(n_tokens * k);
    out.token_scale.resize(n_tokens);
    quantize_int8_per_token(x, n_tokens, k, out.q.data(), out.token_scale.data());
    return;
  }
  const int64_t blocks = n_tokens * k / kBlock;
  const bool k_quant = weight_dtype == DType::Q4_K;
  out.q.resize(n_tokens * k);
  out.scale.resize(blocks * kLanesPerBlock);
  out.bias.resize(blocks * kLanesPerBlock);
  out.min_term.resize(k_quant ? blocks / 8 * 16 : 0);
  QuantizeActivationsFn quantize = quantize_activations_scalar;
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512) quantize = quantize_activations_avx512;
#endif
  // Tokens are contiguous and k is a whole number of blocks (of 256 for Q4_K), so one call
  // covers them all.
  quantize(x, blocks, weight_code_offset(weight_dtype), out.q.data(), out.scale.data(), out.bias.data(),
           k_quant ? out.min_term.data() : nullptr);
  if (weight_dtype == DType::Q8_0 || weight_dtype == DType::Q4_0) {
    const int64_t groups = k / kBlock / 4;
    out.q_grouped.resize(n_tokens * k);
    out.scale_grouped.resize(n_tokens * groups * 16);
    out.bias_grouped.resize(n_tokens * groups * 16);
    for (int64_t t = 0; t < n_tokens; ++t) {
      for (int64_t g = 0; g < groups; ++g) {
        int8_t* qg = out.q_grouped.data() + t * k + g * 128;
        float* sg = out.scale_grouped.data() + (t * groups + g) * 16;
        int32_t* bg = out.bias_grouped.data() + (t * groups + g) * 16;
        for (int j = 0; j < 4; ++j) {
          const int64_t block = t * (k / kBlock) + g * 4 + j;
          const int8_t* q = out.q.data() + block * kBlock;
          std::memcpy(qg + 16 * j, q, 16);
          std::memcpy(qg + 64 + 16 * j, q + 16, 16);
          for (int m = 0; m < 4; ++m) {
            sg[4 * j + m] = out.scale[block * kLanesPerBlock];
            bg[4 * j + m] = out.bias[block * kLanesPerBlock + m] + out.bias[block * kLanesPerBlock + m + 4];
          }
        }
      }
    }
  } else {
    out.q_grouped.clear();
    out.scale_grouped.clear();
    out.bias_grouped.clear();
  }
}

// Weight bytes per row block when several token passes share it: well inside L2.
constexpr int64_t kGemvRowBlockBytes = 192 * 1024;

void gemv_rows(const Tensor& weight, const GemvActivations& x, int64_t row_begin, int64_t row_end, float* y,
               int64_t y_stride) {
  assert(weight.dtype == x.weight_dtype && weight.cols() == x.k);
  if (row_begin >= row_end || x.n_tokens <= 0) return;
  const GemvKernel kernel = select_kernel(weight.dtype);
  const int64_t k = x.k;
  const ActivationKind kind = activation_kind(weight.dtype);
  // Tokens beyond kMaxTokens run as further passes over the same rows, a cache-sized block of
  // rows at a time (batched decode), so that the weights come from memory once, not per pass.
  const int64_t block_rows =
      x.n_tokens <= kMaxTokens ? row_end - row_begin
                               : std::max<int64_t>(16, (kGemvRowBlockBytes / std::max<int64_t>(1, weight.row_bytes())) / 16 * 16);
  for (int64_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
    for (int64_t t0 = 0; t0 < x.n_tokens; t0 += kMaxTokens) {
      GemvArgs args{};
      args.w = weight.data;
      args.row_bytes = weight.row_bytes();
      args.k = k;
      args.n_tokens = static_cast<int>(std::min<int64_t>(kMaxTokens, x.n_tokens - t0));
      args.wscale = weight.quant.scale;
      args.wzero = weight.quant.zero;
      args.wgroup = weight.quant.group;
      if (kind == ActivationKind::Float) {
        args.xf = x.f32.data() + t0 * k;
      } else if (kind == ActivationKind::Int8PerToken) {
        args.xq = x.q.data() + t0 * k;
        args.xtoken_scale = x.token_scale.data() + t0;
      } else {
        args.xq = x.q.data() + t0 * k;
        args.xscale = x.scale.data() + t0 * k / kBlock * kLanesPerBlock;
        args.xbias = x.bias.data() + t0 * k / kBlock * kLanesPerBlock;
        args.xmin = x.min_term.empty() ? nullptr : x.min_term.data() + t0 * k / 256 * 16;
        if (!x.q_grouped.empty()) {
          const int64_t groups = k / kBlock / 4;
          args.xq_grouped = x.q_grouped.data() + t0 * k;
          args.xscale_grouped = x.scale_grouped.data() + t0 * groups * 16;
          args.xbias_grouped = x.bias_grouped.data() + t0 * groups * 16;
        }
      }
      args.row_begin = r0;
      args.row_end = std::min(row_end, r0 + block_rows);
      args.y = y + t0 * y_stride;
      args.y_stride = y_stride;
      kernel(args);
    }
  }
}

}  // namespace anvil
