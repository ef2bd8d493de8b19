// Decode GEMV: y = W x for 1..8 tokens, streaming each weight byte once, for every weight dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace anvil {

// 64-byte aligned storage so the kernels' activation loads never split cache lines.
template <typename T>
struct GemvAlignedAllocator {
  using value_type = T;
  GemvAlignedAllocator() = default;
  template <typename U>
  GemvAlignedAllocator(const GemvAlignedAllocator<U>&) {}  // NOLINT: allocator rebind
  T* allocate(size_t n) {
    void* p = ::operator new(n * sizeof(T), std::align_val_t{64});
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { ::operator delete(p, std::align_val_t{64}); }
  template <typename U>
  bool operator==(const GemvAlignedAllocator<U>&) const { return true; }
};
template <typename T>
using GemvBuffer = std::vector<T, GemvAlignedAllocator<T>>;

// Activations prepared once per matmul call for one weight dtype (and reusable for every weight
// of that dtype and width that multiplies the same x, e.g. the q/k/v projections).
//
// Float weights (F32, F16, BF16) multiply the activations as given (exact f32 products).
// Quantized weights (Q8_0, Q4_0, Q4_K, Q6_K) use integer dot products, as llama.cpp does: x is
// quantized per block of 32 to int8 with scale amax/127 (round to nearest even). The relative
// error this adds to each output is bounded by sum|w_i| * scale_i/2 / |y|, typically ~1e-3.
// Layout, per token t (the kernels' vector lanes each cover 4 consecutive elements):
//   q[t*k + i]                 int8 codes
//   scale[(t*k/32 + b)*8 + j]  block b's scale, repeated in its 8 lanes j
//   bias[(t*k/32 + b)*8 + j]   -offset * (q[4j] + ... + q[4j+3]) of block b: the exact integer
//                              correction that turns dot(u, q) into dot(u - offset, q) where the
//                              weight codes u are stored unsigned (offset 128 for Q8_0, 8 for
//                              Q4_0, 32 for Q6_K, 0 for Q4_K)
//   min_term[(t*k/256 + s)*16 + 8 + j]  Q4_K only: -scale * sum(q) of sub-block j of super-block s
//                              (lanes 0..7 are zero so one FMA applies the 8 mins)
//
// The scaled types (core/quant_scales.h) follow their schemes: F8_E4M3 (W8A16) and I4 (W4A16)
// weights multiply 16-bit activations, as on the GPUs these schemes come from (vLLM's Marlin
// kernels multiply bf16/fp16 activations by the dequantized weights) and as oneDNN's bf16 prefill
// GEMM does: `f32` holds x rounded to bf16 (ties to even), and every kernel takes exact products
// of those with the weight values in f32 (the AVX-512 BF16 kernels as vdpbf16ps pairs, half the
// instructions per weight of f32 FMAs). Versus f32 activations that moves an output by at most
// 2^-9 of sum |w x| (GemmCompute::Bf16Activations). FP8 W8A8 (F8_E4M3 weights with
// DynamicPerTokenFp8) passes the unscaled E4M3 values of x (exact in bf16) and their per-token
// scales, kept in `token_scale` and applied with the row's scale. I8 weights (W8A8) multiply
// int8 activations quantized per token (quant/int8_w8a8.h: one symmetric scale amax/127 per
// token, round to nearest even): q[t*k + i] codes, token_scale[t], and bias[t] = -128 * the sum
// of token t's codes (the SIMD kernels flip the weight codes to unsigned, as for Q8_0); the
// kernels take exact int32 dot products and scale each by w_scale[row] * token_scale[t].
// F8_E4M3 and I4 also get `f32_permuted` (stride k per token): x in the order in which the
// AVX-512 kernels produce f32 weights from their codes without further shuffles.
//   F8_E4M3: per whole 64-element block, 4 vectors v of 16: element 16q + {0, 1, 8, 9}[v] + 2j
//     at 16v + 4q + j (the bf16 words of a byte interleave, split into int32 low and high
//     halves); the k % 64 tail as is.
//   I4: per whole 128-element block, element 8j + n at 16n + j (int32 lane j of 64 code bytes
//     holds elements 8j..8j+7 in its nibbles n = 0..7); then, for a k % 128 tail of 32- or
//     64-groups, each 32-element run as its 16 even then its 16 odd elements ("pairs").
// and `bf16_pairs` (stride k per token; the whole blocks only, the rest zero): the bf16 bits of x
// in the word order of the weight vectors those kernels build, so that one vdpbf16ps multiplies
// a vector of 32 weights by its activations pair by pair (int32 lane i: words 2i and 2i + 1).
//   F8_E4M3: per whole 64-element block, 2 vectors v of 32 words: element 16L + 8v + j at word
//     32v + 8L + j (L < 4, j < 8: byte interleaves of each 128-bit lane's 16 codes).
//   I4: per whole 128-element block, 4 vectors m of 32 words: elements 8i + m and 8i + 4 + m at
//     words 32m + 2i and 32m + 2i + 1 (nibble m, and m + 4, of int32 lane i's code word pair).
//
// Q8_0 and Q4_0 also get a grouped copy for the AVX-512 kernels, per group g of 4 whole blocks
// (128 elements; the k/32 % 4 trailing blocks have none), token stride k (q) and k/128*16 (lanes):
//   q_grouped[t*k + g*128 + 16j + i]       element i of block 4g+j        (i < 16)
//   q_grouped[t*k + g*128 + 64 + 16j + i]  element 16+i of block 4g+j
//   scale_grouped[(t*groups + g)*16 + 4j + m]  block 4g+j's scale
//   bias_grouped[(t*groups + g)*16 + 4j + m]   -offset * (sum of the 8 codes at elements
//                                              4m..4m+3 and 16+4m..16+4m+3 of block 4g+j)
// so one 64-byte weight vector per half-block set meets its activations lane for lane, and both
// halves accumulate into the same int32 lanes (4 per block) before one conversion and scaling.
//
// The panel layouts Q8_0_R4 / Q4_0_R4 / Q4_K_R4 (quant/ggml_panels.h) get the codes in their order, per
// token t and superblock s of 16 blocks (S = panel_superblocks(k); a last partial superblock is
// padded with zero codes, scales and biases):
//   q_panel[(t*S + s)*512 + 64w + 4j + m]  element 4w+m of block 16s+j   (w < 8, m < 4)
//   scale_panel[(t*S + s)*16 + j]          block 16s+j's scale
//   bias_panel[(t*S + s)*16 + j]           -offset * the sum of block 16s+j's 32 codes
// so code vector w of a weight row's superblock (Q8_0_R4), or the low (w < 4) and high (w - 4)
// nibbles of its vector w % 4 (Q4_0_R4, Q4_K_R4), meet x vector w lane for lane: one int32 lane per
// block. Q4_K_R4's lanes are its 32-element sub-blocks (bias 0), and it also gets
//   min_panel[(t*S + s)*16 + j]            sub-block 16s+j's min term (min_term's lane 8 + j % 8)
struct GemvActivations {
  DType weight_dtype = DType::F32;
  int64_t n_tokens = 0;
  int64_t k = 0;
  GemvBuffer<float> f32;  // float weights: n_tokens x k
  GemvBuffer<int8_t> q;
  GemvBuffer<float> scale;
  GemvBuffer<int32_t> bias;
  GemvBuffer<float> min_term;
  GemvBuffer<int8_t> q_grouped;
  GemvBuffer<float> scale_grouped;
  GemvBuffer<int32_t> bias_grouped;
  GemvBuffer<float> token_scale;  // I8, and F8_E4M3 for FP8 W8A8: n_tokens
  GemvBuffer<float> f32_permuted;  // F8_E4M3 and I4: n_tokens x k
  GemvBuffer<uint16_t> bf16_pairs;  // F8_E4M3 and I4: n_tokens x k
  GemvBuffer<int8_t> q_panel;       // Q8_0_R4 and Q4_0_R4
  GemvBuffer<float> scale_panel;
  GemvBuffer<int32_t> bias_panel;
  GemvBuffer<float> min_panel;      // Q4_K_R4
};

// True when gemv supports weights of this dtype (today: every DType).
bool gemv_supports(DType weight_dtype);

// True when the active ISA has decode kernels for the panel layout of this GGML type (Q8_0, Q4_0, Q4_K),
// i.e. when repacking such weights at load (model/repack_weights.h) makes decode faster; other
// paths run panels through the scalar kernel.
bool gemv_prefers_panels(DType ggml_dtype);

// Prepares x (n_tokens x k floats, row-major) for weights of weight_dtype. k must be a multiple
// of the dtype's block size. `out` keeps its buffers between calls, so reuse it across tokens.
// token_scales (F8_E4M3 only; FP8 W8A8): x holds unscaled E4M3 values (matmul_input_e4m3_rows)
// and token t's outputs are multiplied by token_scales[t].
void gemv_prepare(DType weight_dtype, const float* x, int64_t n_tokens, int64_t k, GemvActivations& out,
                  const float* token_scales = nullptr);

// y[t*y_stride + r] = dot(weight row r, x_t) for r in [row_begin, row_end) and t < x.n_tokens.
// weight is (rows, k) with weight.dtype == x.weight_dtype (and, for the scaled types, valid
// QuantScales: check_quant_scale_layout). Callers split rows
// across threads; each weight byte of the range is read from memory once per call whatever
// n_tokens is. Uses the kernels of active_isa().
void gemv_rows(const Tensor& weight, const GemvActivations& x, int64_t row_begin, int64_t row_end, float* y,
               int64_t y_stride);

}  // namespace anvil
