// Internal interface between gemv's dispatcher and its per-ISA kernels (plain data, no std types,
// so ISA-specific translation units never instantiate shared inline code under their target flags).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace anvil::gemv_detail {

constexpr int64_t kBlock = 32;         // activation quantization block
constexpr int64_t kLanesPerBlock = 8;  // int32 lanes per activation block (4 elements each)
constexpr int kMaxTokens = 8;          // tokens one kernel call handles; more are chunked

// One kernel call: rows [row_begin, row_end) of a weight times n_tokens (1..kMaxTokens) tokens.
// Activation pointers are for token 0; token t adds t * (its per-token stride, derived from k).
struct GemvArgs {
  const std::byte* w;  // row 0 of the weight
  size_t row_bytes;
  int64_t k;
  int n_tokens;
  const float* xf;        // float activations (F32/F16/BF16; F8_E4M3 and I4: bf16-rounded), stride k
  const int8_t* xq;       // int8 codes, stride k
  const float* xscale;    // stride k/32*8
  const int32_t* xbias;   // stride k/32*8
  const float* xmin;      // Q4_K only, stride k/256*16
  const int8_t* xq_grouped;       // Q8_0/Q4_0 grouped copy (see GemvActivations), stride k
  const float* xscale_grouped;    // stride k/128*16
  const int32_t* xbias_grouped;   // stride k/128*16
  const float* xtoken_scale;      // I8 (W8A8): one activation scale per token (codes in xq, and
                                  // in xbias one int32 per token: -128 * the sum of its codes);
                                  // F8_E4M3: null, or FP8 W8A8's scale per token (xf unscaled)
  const float* xf_permuted;       // F8_E4M3 and I4: xf in the order their AVX-512 kernels unpack
                                  // codes (GemvActivations::f32_permuted), stride k
  const uint16_t* xbf16_pairs;    // F8_E4M3 and I4: GemvActivations::bf16_pairs, stride k
  const int8_t* xq_panel;         // panel layouts (GemvActivations::q_panel), stride superblocks*512
  const float* xscale_panel;      // stride superblocks*16
  const int32_t* xbias_panel;     // stride superblocks*16
  const float* xmin_panel;        // Q4_K_R4 only, stride superblocks*16
  int64_t rows;                   // the weight's rows (panel geometry)
  // Scaled weights (F8_E4M3, I8, I4; core/quant_scales.h): row r's scales (and zero points)
  // start at r * (k / wgroup); wgroup == k for F8_E4M3 and I8 (one scale per row).
  const float* wscale;
  const float* wzero;             // asymmetric I4 only; null: the implicit zero (8 for I4)
  int64_t wgroup;
  int64_t row_begin, row_end;
  float* y;
  int64_t y_stride;
};

using GemvKernel = void (*)(const GemvArgs& args);

// Unsigned-code offset of each quantized dtype (see GemvActivations::bias).
constexpr int32_t weight_code_offset(DType dtype) {
  switch (dtype) {
    case DType::Q8_0:
    case DType::Q8_0_R4: return 128;
    case DType::Q4_0:
    case DType::Q4_0_R4: return 8;
    case DType::Q6_K: return 32;
    default: return 0;
  }
}

// Superblocks of kPanelBlocks (16) blocks per token row of the panel activations (the last padded).
constexpr int64_t panel_superblocks(int64_t k) { return (k / kBlock + 15) / 16; }

// Kernels per ISA; null where that ISA has no kernel for the dtype (the dispatcher falls back).
GemvKernel scalar_kernel(DType dtype);
GemvKernel avx2_kernel(DType dtype);
GemvKernel avx512_kernel(DType dtype, bool vnni, bool vbmi, bool bf16);
// The scaled types' kernels (arch/x86/gemv_scaled_*.cpp), consulted by the two above.
GemvKernel avx2_scaled_kernel(DType dtype);
GemvKernel avx512_scaled_kernel(DType dtype, bool vnni, bool vbmi, bool bf16);
// The panel layouts' AVX-512 kernels (arch/x86/gemv_panels_avx512.cpp): Q4_0_R4 and Q4_K_R4 (with or
// without VNNI), Q8_0_R4 (VNNI only: its unsigned codes reach 255, which maddubs would saturate; an
// AVX-512 CPU without VNNI takes the AVX2 kernel, whose sign trick avoids that).
GemvKernel avx512_panel_kernel(DType dtype, bool vnni);
// The same layouts on AVX2 (arch/x86/gemv_panels_avx2.cpp): all three, without VNNI.
GemvKernel avx2_panel_kernel(DType dtype);
// panel_row_to_f32 (quant/ggml_panels.h) on AVX2, bit for bit: the prefill conversion of CPUs
// without AVX-512 BF16.
void avx2_panel_row_to_f32(DType dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst);

// Quantizes n_blocks blocks of 32 floats into codes, per-lane scales and biases (and, when
// min_term is non-null, the Q4_K min terms per 8 blocks). Identical results on every ISA.
using QuantizeActivationsFn = void (*)(const float* x, int64_t n_blocks, int32_t offset, int8_t* q, float* scale,
                                       int32_t* bias, float* min_term);
void quantize_activations_scalar(const float* x, int64_t n_blocks, int32_t offset, int8_t* q, float* scale,
                                 int32_t* bias, float* min_term);
void quantize_activations_avx512(const float* x, int64_t n_blocks, int32_t offset, int8_t* q, float* scale,
                                 int32_t* bias, float* min_term);

}  // namespace anvil::gemv_detail

namespace anvil::gemv_detail {

// Q4_K's 12 packed bytes -> 8 six-bit scales (bytes 0..7) and 8 mins (bytes 8..15), with
// llama.cpp's word trick. `static` so each ISA translation unit compiles its own copy.
static inline void unpack_q4k_scales(const uint8_t* packed, uint32_t out[4]) {
  constexpr uint32_t kLow6 = 0x3f3f3f3f, kLow4 = 0x0f0f0f0f, kLow2 = 0x03030303;
  uint32_t w[3];
  __builtin_memcpy(w, packed, 12);
  out[0] = w[0] & kLow6;                                     // scales 0..3
  out[1] = (w[2] & kLow4) | (((w[0] >> 6) & kLow2) << 4);    // scales 4..7
  out[2] = w[1] & kLow6;                                     // mins 0..3
  out[3] = ((w[2] >> 4) & kLow4) | (((w[1] >> 6) & kLow2) << 4);  // mins 4..7
}

}  // namespace anvil::gemv_detail

namespace anvil::gemv_detail {
namespace {  // internal linkage: each ISA translation unit compiles its own copy

// Software prefetch of the R weight-row streams of a pass. Rows are short (1-18 KB) and read R at
// a time, so the hardware prefetchers barely train before a stream ends: each row's stream is
// fetched `kAheadBytes` ahead, and past its end continues into the same row of the next pass.
template <int R>
struct RowPrefetcher {
  static constexpr int64_t kAheadBytes = 1024;
  const std::byte* rows[R];
  int64_t row_bytes;

  RowPrefetcher(const std::byte* first_row, int64_t row_bytes_) : row_bytes(row_bytes_) {
    for (int r = 0; r < R; ++r) rows[r] = first_row + r * row_bytes;
  }
  // Called once per step with the byte offset (within each row) the step starts at.
  inline void at(int64_t offset) const {
    int64_t target = offset + kAheadBytes;
    if (target >= row_bytes) target += (R - 1) * row_bytes;
    for (int r = 0; r < R; ++r) __builtin_prefetch(rows[r] + target, 0, 3);
  }
};

}  // namespace
}  // namespace anvil::gemv_detail
