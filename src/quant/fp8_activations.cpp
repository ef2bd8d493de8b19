// Per-token E4M3 rounding of activations: the scalar reference (E4M3 codes through float_to_e4m3)
// and an AVX-512 version that rounds in the float domain, bit for bit the same.
#include "quant/fp8_activations.h"

#include <algorithm>
#include <cmath>
#include <limits>

#if defined(__x86_64__)
// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "compute/cpu/isa.h"
#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

// 1 / s must be finite: below this the row is treated as zero (|x| < 448 * 2^-126 ~ 5e-36).
constexpr float kMinTokenScale = std::numeric_limits<float>::min();

#if defined(__x86_64__)
// The scalar version's arithmetic lane by lane. The running max skips NaN as std::max does
// (vmaxps returns its second operand, the running max, when one is NaN) and is exact in any
// order; s and 1 / s are the same scalar operations; y = x * inv the same IEEE multiply. Then
// e4m3(y) as a float instead of a code: |y| clamped to 448 (float_to_e4m3 saturates there, and
// 448 itself is exact); at or above 2^-6 the 20 dropped mantissa bits rounded half to even with
// the same integer addition as float_to_e4m3 (a carry is the next binade); below it, multiples of
// 2^-9 rounded by vrndscaleps to nearest even, as nearbyint; the sign put back (so -0 stays -0);
// NaN products left NaN. The E4M3 decode table returns exactly these floats.
// scales == nullptr: out = value * s_t (quantize_dequantize_rows_e4m3); else out = value and
// scales[t] = s_t (quantize_rows_e4m3).
__attribute__((target("avx512f,avx512bw,avx512vl"))) void rows_e4m3_avx512(const float* x, int64_t n_tokens,
                                                                             int64_t k, float* out, float* scales) {
  const __m512i abs_mask = _mm512_set1_epi32(0x7FFFFFFF);
  const __m512i round_bias = _mm512_set1_epi32(0x7FFFF);
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i keep_bits = _mm512_set1_epi32(static_cast<int>(0xFFF00000u));
  const __m512 max_value = _mm512_set1_ps(kE4M3Max);
  const __m512 min_normal = _mm512_set1_ps(0x1p-6f);
  const __m512 subnormal_steps = _mm512_set1_ps(512.0f), subnormal_step = _mm512_set1_ps(0x1p-9f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    float* ot = out + t * k;
    __m512 running = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= k; i += 16) running = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(xt + i)), running);
    if (i < k) {
      const __mmask16 m = static_cast<__mmask16>((1u << (k - i)) - 1);
      running = _mm512_max_ps(_mm512_abs_ps(_mm512_maskz_loadu_ps(m, xt + i)), running);
    }
    const float s = _mm512_reduce_max_ps(running) / kE4M3Max;
    if (!(s >= kMinTokenScale)) {
      std::fill(ot, ot + k, 0.0f);
      if (scales) scales[t] = 0.0f;
      continue;
    }
    const float inv = 1.0f / s;
    if (scales) scales[t] = s;
    const __m512 vinv = _mm512_set1_ps(inv), vs = _mm512_set1_ps(scales ? 1.0f : s);
    for (i = 0; i < k; i += 16) {
      const __mmask16 m = k - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (k - i)) - 1);
      const __m512 y = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, xt + i), vinv);
      const __m512i bits = _mm512_castps_si512(y);
      const __m512i sign = _mm512_andnot_si512(abs_mask, bits);
      const __m512 a = _mm512_min_ps(_mm512_castsi512_ps(_mm512_and_si512(bits, abs_mask)), max_value);
      const __m512i a_bits = _mm512_castps_si512(a);
      const __m512i rounded = _mm512_and_si512(
          _mm512_add_epi32(_mm512_add_epi32(a_bits, round_bias), _mm512_and_si512(_mm512_srli_epi32(a_bits, 20), one)),
          keep_bits);
      const __m512 subnormal = _mm512_mul_ps(
          _mm512_roundscale_ps(_mm512_mul_ps(a, subnormal_steps), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC),
          subnormal_step);
      __m512 q = _mm512_mask_mov_ps(_mm512_castsi512_ps(rounded), _mm512_cmp_ps_mask(a, min_normal, _CMP_LT_OQ),
                                    subnormal);
      q = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(q), sign));
      q = _mm512_mask_mov_ps(q, _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q), y);
      _mm512_mask_storeu_ps(ot + i, m, _mm512_mul_ps(q, vs));
    }
  }
}
#endif

void rows_e4m3_scalar(const float* x, int64_t n_tokens, int64_t k, float* out, float* scales) {
  const float* decode = e4m3_decode_table();
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    float* ot = out + t * k;
    float amax = 0.0f;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(xt[i]));
    const float s = amax / kE4M3Max;
    if (!(s >= kMinTokenScale)) {
      std::fill(ot, ot + k, 0.0f);
      if (scales) scales[t] = 0.0f;
      continue;
    }
    const float inv = 1.0f / s;
    if (scales) scales[t] = s;
    const float out_scale = scales ? 1.0f : s;  // x1 is exact: the values themselves
    for (int64_t i = 0; i < k; ++i) ot[i] = decode[float_to_e4m3(xt[i] * inv)] * out_scale;
  }
}

void rows_e4m3(const float* x, int64_t n_tokens, int64_t k, float* out, float* scales) {
#if defined(__x86_64__)
  if (active_isa() >= Isa::Avx512) return rows_e4m3_avx512(x, n_tokens, k, out, scales);
#endif
  rows_e4m3_scalar(x, n_tokens, k, out, scales);
}

}  // namespace

void quantize_dequantize_rows_e4m3(const float* x, int64_t n_tokens, int64_t k, float* out) {
  rows_e4m3(x, n_tokens, k, out, nullptr);
}

void quantize_dequantize_rows_e4m3_scalar(const float* x, int64_t n_tokens, int64_t k, float* out) {
  rows_e4m3_scalar(x, n_tokens, k, out, nullptr);
}

void quantize_rows_e4m3(const float* x, int64_t n_tokens, int64_t k, float* values, float* scales) {
  rows_e4m3(x, n_tokens, k, values, scales);
}

void quantize_rows_e4m3_scalar(const float* x, int64_t n_tokens, int64_t k, float* values, float* scales) {
  rows_e4m3_scalar(x, n_tokens, k, values, scales);
}

}  // namespace anvil
