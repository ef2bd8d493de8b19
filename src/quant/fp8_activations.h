// Per-token dynamic FP8 activations (vLLM's FP8_DYNAMIC, compressed-tensors input_activations
// {type: float, num_bits: 8, dynamic: true, strategy: token}): each token's row of x rounded to E4M3.
#pragma once

#include <cstdint>

namespace anvil {

// For each token t (a row of k floats), in f32:
//   s_t = amax_t / 448,   inv = 1 / s_t,   out = e4m3(x * inv) * s_t
// with e4m3() float_to_e4m3's rounding (nearest, ties to even, saturating at ±448): out holds the
// E4M3 values the row quantizes to, already dequantized, so an F8_E4M3 weight's ordinary f32
// GEMM over `out` is the fp8 x fp8 GEMM with f32 accumulation (as vLLM's scaled_fp8_quant
// followed by its fp8 GEMM; vLLM also multiplies by the reciprocal of the scale). The element of
// largest magnitude becomes exactly ±448 * s_t.
// A row whose s_t is 0 or subnormal (amax_t < 448 * 2^-126, where 1 / s_t would overflow) becomes
// all +0. Non-finite activations give NaNs (never a crash); the SIMD and scalar versions agree
// bit for bit on finite input (NaN payloads may differ). In place (out == x) is allowed.
// Uses AVX-512 when active_isa() allows; quantize_dequantize_rows_e4m3_scalar is the reference.
void quantize_dequantize_rows_e4m3(const float* x, int64_t n_tokens, int64_t k, float* out);
void quantize_dequantize_rows_e4m3_scalar(const float* x, int64_t n_tokens, int64_t k, float* out);

// The same rounding, split for GEMMs that take the E4M3 values exactly and scale their results:
// values = e4m3(x * inv) (unscaled, in [-448, 448]; exact in bf16) and scales[t] = s_t (0 for a
// zero row, whose values are +0). values[i] * scales[t] is quantize_dequantize_rows_e4m3's output
// bit for bit. In place (values == x) is allowed.
void quantize_rows_e4m3(const float* x, int64_t n_tokens, int64_t k, float* values, float* scales);
void quantize_rows_e4m3_scalar(const float* x, int64_t n_tokens, int64_t k, float* values, float* scales);

}  // namespace anvil
