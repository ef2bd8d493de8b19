// gemv dispatch: activation preparation and the choice of kernel for the active ISA.
#include "compute/cpu/gemv.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "compute/cpu/gemv_kernels.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/vector_ops.h"
#include "quant/ggml_panels.h"
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
  if (isa >= Isa::Avx512)
    kernel = avx512_kernel(dtype, isa_has_avx512_vnni(), isa_has_avx512_vbmi(), isa_has_avx512_bf16());
  if (kernel == nullptr && isa >= Isa::Avx2) kernel = avx2_kernel(dtype);
#endif
  if (kernel == nullptr) kernel = scalar_kernel(dtype);
  return kernel;
}

// GemvActivations::f32_permuted.
void prepare_permuted(DType weight_dtype, const float* x, int64_t n_tokens, int64_t k, GemvActivations& out) {
  out.f32_permuted.resize(n_tokens * k);
  const bool i4 = weight_dtype == DType::I4;
  const int64_t blocked = i4 ? k / 128 * 128 : k / 64 * 64;  // whole blocks of the kernel's order
  const int64_t pairs = i4 ? k / kBlock * kBlock : blocked;  // then I4's 32-element runs
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    float* pt = out.f32_permuted.data() + t * k;
    if (i4) {
      for (int64_t b = 0; b < blocked; b += 128)
        for (int n = 0; n < 8; ++n)
          for (int j = 0; j < 16; ++j) pt[b + 16 * n + j] = xt[b + 8 * j + n];
    } else {
      constexpr int kFirst[4] = {0, 1, 8, 9};
      for (int64_t b = 0; b < blocked; b += 64)
        for (int v = 0; v < 4; ++v)
          for (int q = 0; q < 4; ++q)
            for (int j = 0; j < 4; ++j) pt[b + 16 * v + 4 * q + j] = xt[b + 16 * q + kFirst[v] + 2 * j];
    }
    for (int64_t b = blocked; b < pairs; b += kBlock)
      for (int i = 0; i < 16; ++i) {
        pt[b + i] = xt[b + 2 * i];
        pt[b + 16 + i] = xt[b + 2 * i + 1];
      }
    std::copy(xt + pairs, xt + k, pt + pairs);
  }
}

// GemvActivations::bf16_pairs, from f32_permuted (whose values are bf16 already: the top halves).
void prepare_bf16_pairs(DType weight_dtype, int64_t n_tokens, int64_t k, GemvActivations& out) {
  out.bf16_pairs.assign(n_tokens * k, 0);
  const auto top = [](float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    return static_cast<uint16_t>(bits >> 16);
  };
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* pt = out.f32_permuted.data() + t * k;
    uint16_t* bt = out.bf16_pairs.data() + t * k;
    if (weight_dtype == DType::I4) {
      // f32_permuted vector n (16 floats) holds elements 8i + n: words 2i, 2i + 1 of vector m
      // take its vectors m and 4 + m.
      for (int64_t b = 0; b + 128 <= k; b += 128)
        for (int m = 0; m < 4; ++m)
          for (int i = 0; i < 16; ++i) {
            bt[b + 32 * m + 2 * i] = top(pt[b + 16 * m + i]);
            bt[b + 32 * m + 2 * i + 1] = top(pt[b + 16 * (4 + m) + i]);
          }
    } else {  // F8_E4M3, straight from the element order
      const float* xt = out.f32.data() + t * k;
      for (int64_t b = 0; b + 64 <= k; b += 64)
        for (int v = 0; v < 2; ++v)
          for (int lane = 0; lane < 4; ++lane)
            for (int j = 0; j < 8; ++j) bt[b + 32 * v + 8 * lane + j] = top(xt[b + 16 * lane + 8 * v + j]);
    }
  }
}

// GemvActivations' panel layout, from the per-block codes, lane scales and lane biases.
void prepare_panels(int64_t n_tokens, int64_t k, GemvActivations& out) {
  const int64_t blocks = k / kBlock, superblocks = panel_superblocks(k);
  out.q_panel.assign(n_tokens * superblocks * 512, 0);
  out.scale_panel.assign(n_tokens * superblocks * 16, 0.0f);
  out.bias_panel.assign(n_tokens * superblocks * 16, 0);
  out.min_panel.assign(out.min_term.empty() ? 0 : n_tokens * superblocks * 16, 0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t block = t * blocks + b, lane = (t * superblocks + b / 16) * 16 + b % 16;
      const int8_t* q = out.q.data() + block * kBlock;
      int8_t* panel = out.q_panel.data() + (t * superblocks + b / 16) * 512 + 4 * (b % 16);
      for (int w = 0; w < 8; ++w) std::memcpy(panel + 64 * w, q + 4 * w, 4);
      out.scale_panel[lane] = out.scale[block * kLanesPerBlock];
      int32_t bias = 0;
      for (int m = 0; m < kLanesPerBlock; ++m) bias += out.bias[block * kLanesPerBlock + m];
      out.bias_panel[lane] = bias;
      if (!out.min_term.empty()) out.min_panel[lane] = out.min_term[(block / 8) * 16 + 8 + block % 8];
    }
  }
}

}  // namespace

bool gemv_supports(DType weight_dtype) { return scalar_kernel(weight_dtype) != nullptr; }

bool gemv_prefers_panels(DType ggml_dtype) {
#if defined(__x86_64__)
  if (!has_panel_layout(ggml_dtype)) return false;
  // select_kernel falls back from AVX-512 to AVX2 kernels (Q8_0_R4 without VNNI has only the
  // AVX2 one), so either level's panel kernel makes panels the faster layout.
  const DType panels = panel_dtype_for(ggml_dtype);
  if (active_isa() >= Isa::Avx512 && avx512_panel_kernel(panels, isa_has_avx512_vnni()) != nullptr) return true;
  return active_isa() >= Isa::Avx2 && avx2_panel_kernel(panels) != nullptr;
#else
  (void)ggml_dtype;
  return false;
#endif
}

void gemv_prepare(DType weight_dtype, const float* x, int64_t n_tokens, int64_t k, GemvActivations& out,
                  const float* token_scales) {
  assert(k % dtype_info(weight_dtype).block_elems == 0);
  assert(token_scales == nullptr || weight_dtype == DType::F8_E4M3);
  out.weight_dtype = weight_dtype;
  out.n_tokens = n_tokens;
  out.k = k;
  const ActivationKind kind = activation_kind(weight_dtype);
  if (kind == ActivationKind::Float) {
    if (weight_dtype == DType::F8_E4M3 || weight_dtype == DType::I4) {  // W8A16, W4A16: bf16 x
      out.f32.resize(n_tokens * k);
      f32_round_to_bf16(x, out.f32.data(), n_tokens * k);
      prepare_permuted(weight_dtype, out.f32.data(), n_tokens, k, out);
      prepare_bf16_pairs(weight_dtype, n_tokens, k, out);
      if (token_scales != nullptr) {
        out.token_scale.assign(token_scales, token_scales + n_tokens);
      } else {
        out.token_scale.clear();
      }
    } else {
      out.f32.assign(x, x + n_tokens * k);
      out.f32_permuted.clear();
      out.bf16_pairs.clear();
    }
    return;
  }
  if (kind == ActivationKind::Int8PerToken) {
    out.q.resize(n_tokens * k);
    out.token_scale.resize(n_tokens);
    out.bias.resize(n_tokens);
    quantize_int8_per_token(x, n_tokens, k, out.q.data(), out.token_scale.data());
    for (int64_t t = 0; t < n_tokens; ++t) {
      const int8_t* q = out.q.data() + t * k;
      int32_t sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += q[i];
      // -128 * sum can pass 2^31 at kMaxI8Cols: kept modulo 2^32, as the kernels' int32 lanes
      // wrap, which leaves their exact final dot (in int32 range) unchanged.
      out.bias[t] = static_cast<int32_t>(static_cast<uint32_t>(-128 * int64_t{sum}));
    }
    return;
  }
  const int64_t blocks = n_tokens * k / kBlock;
  const bool k_quant = weight_dtype == DType::Q4_K || weight_dtype == DType::Q4_K_R4;
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
  if (dtype_is_panels(weight_dtype)) {
    prepare_panels(n_tokens, k, out);
  } else {
    out.q_panel.clear();
    out.scale_panel.clear();
    out.bias_panel.clear();
    out.min_panel.clear();
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
  // Tokens beyond a kernel call's share run as further passes over the same rows, a cache-sized
  // block of rows at a time (batched decode), so that the weights come from memory once, not per
  // pass. F8_E4M3 and I4 kernels take at most 4 tokens a call: their f32 activations of more
  // tokens no longer fit in L1 beside the weights of a pass (and 3 accumulators per row and token
  // would not fit the registers).
  // Panel kernels take 4 too (a 4-row pass keeps 8 unpacked code vectors and 4 x T accumulators in
  // registers).
  const int64_t max_tokens =
      weight.dtype == DType::F8_E4M3 || weight.dtype == DType::I4 || dtype_is_panels(weight.dtype) ? 4 : kMaxTokens;
  const int64_t block_rows =
      x.n_tokens <= max_tokens ? row_end - row_begin
                               : std::max<int64_t>(16, (kGemvRowBlockBytes / std::max<int64_t>(1, weight.row_bytes())) / 16 * 16);
  for (int64_t r0 = row_begin; r0 < row_end; r0 += block_rows) {
    for (int64_t t0 = 0; t0 < x.n_tokens; t0 += max_tokens) {
      GemvArgs args{};
      args.w = weight.data;
      args.row_bytes = weight.row_bytes();
      args.rows = weight.rows();
      args.k = k;
      args.n_tokens = static_cast<int>(std::min<int64_t>(max_tokens, x.n_tokens - t0));
      args.wscale = weight.quant.scale;
      args.wzero = weight.quant.zero;
      args.wgroup = weight.quant.group;
      if (kind == ActivationKind::Float) {
        args.xf = x.f32.data() + t0 * k;
        if (!x.f32_permuted.empty()) args.xf_permuted = x.f32_permuted.data() + t0 * k;
        if (!x.bf16_pairs.empty()) args.xbf16_pairs = x.bf16_pairs.data() + t0 * k;
        if (!x.token_scale.empty()) args.xtoken_scale = x.token_scale.data() + t0;
      } else if (kind == ActivationKind::Int8PerToken) {
        args.xq = x.q.data() + t0 * k;
        args.xtoken_scale = x.token_scale.data() + t0;
        args.xbias = x.bias.data() + t0;
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
        if (!x.q_panel.empty()) {
          const int64_t superblocks = panel_superblocks(k);
          args.xq_panel = x.q_panel.data() + t0 * superblocks * 512;
          args.xscale_panel = x.scale_panel.data() + t0 * superblocks * 16;
          args.xbias_panel = x.bias_panel.data() + t0 * superblocks * 16;
          if (!x.min_panel.empty()) args.xmin_panel = x.min_panel.data() + t0 * superblocks * 16;
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
