// AVX2 (+FMA) flash-attention kernel: the width-generic kernel of attention_flash.inc at 8 lanes,
// with a row-dot scorer for decode.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/attention_kernels.h"

// Only called after active_isa() said so; the region holds intrinsics and local code only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::attention_detail {
namespace {

inline void tile_row_from_f16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
  for (; i < n; ++i) dst[i] = _cvtsh_ss(src[i]);
}
// bfloat16 is the top half of a float.
inline void tile_row_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
  for (; i < n; ++i) {
    const uint32_t bits = static_cast<uint32_t>(src[i]) << 16;
    __builtin_memcpy(dst + i, &bits, 4);
  }
}
// E4M3 code c is exactly 2^8 times the fp16 number sign << 15 | (c & 0x7F) << 7, subnormals
// included (the NaN code reads as 480, but the KV quantizer writes it only into a row whose scale
// is NaN). scale x 256 is exact and finite (scale <= FLT_MAX / 448), so each element is the
// code's value x scale rounded once, bit for bit what the reference computes.
inline void tile_row_from_e4m3(const uint8_t* src, float scale, float* dst, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale * 256.0f);
  const __m128i mask = _mm_set1_epi16(static_cast<short>(0xBF80));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i codes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i));
    const __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(codes), 7), mask);
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtph_ps(h), s));
  }
  for (; i < n; ++i) {
    const unsigned short h = static_cast<unsigned short>((src[i] & 0x80) << 8 | (src[i] & 0x7F) << 7);
    dst[i] = _cvtsh_ss(h) * (scale * 256.0f);
  }
}
inline void tile_row_from_i8(const int8_t* src, float scale, float* dst, int64_t n) {
  const __m256 s = _mm256_set1_ps(scale);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i wide = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)));
    _mm256_storeu_ps(dst + i, _mm256_mul_ps(_mm256_cvtepi32_ps(wide), s));
  }
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]) * scale;
}

// Decode scores (see attention_flash.inc's kRowDotScores), compact as on AVX-512: s[j * 4 + r] =
// dot(qn row r, key j) for the keys j < nk and the 4 rows of qn (4 x hd, hd a multiple of 8; rows
// past the real ones zero), and whatever up to the next even key (row_dot_softmax masks it). 2 keys
// x 4 rows accumulate in 8 of the 16 registers over the head dimension, then one tree of
// horizontal adds sums all 8 at once (lane i: accumulator i = key i / 4, row i % 4).
constexpr bool kRowDotScores = true;

// Lane i: the sum of v[i]'s 8 lanes.
inline __m256 sum_lanes_of_8(const __m256 (&v)[8]) {
  // Per 128-bit half: [v0, v1, v2, v3] (and [v4 .. v7]) each summed over that half's 4 lanes.
  const __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  // The two halves added: the low halves of a and b, plus their high halves.
  return _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20), _mm256_permute2f128_ps(a, b, 0x31));
}

inline void row_dot_scores(const float* qn, int64_t hd, const float* const* krow, int64_t nk, float* s) {
  for (int64_t j = 0; j < nk; j += 2) {
    const float* k0 = krow[j];
    const float* k1 = krow[j + 1 < nk ? j + 1 : j];  // past nk: a copy of key j
    __m256 acc[8];
    for (__m256& v : acc) v = _mm256_setzero_ps();
    for (int64_t d = 0; d < hd; d += 8) {
      const __m256 kv0 = _mm256_loadu_ps(k0 + d), kv1 = _mm256_loadu_ps(k1 + d);
      for (int r = 0; r < 4; ++r) {
        const __m256 qv = _mm256_loadu_ps(qn + r * hd + d);
        acc[r] = _mm256_fmadd_ps(qv, kv0, acc[r]);
        acc[4 + r] = _mm256_fmadd_ps(qv, kv1, acc[4 + r]);
      }
    }
    _mm256_storeu_ps(s + j * 4, sum_lanes_of_8(acc));
  }
}

#include "compute/cpu/vector_ops_simd.inc"

// row_dot_softmax's lane groups (attention_flash.inc): each row's value of v (lane i: row i % 4)
// reduced over the 2 keys of the vector (the two 128-bit halves), in both halves; and p[0..3] (no
// alignment assumed) in both halves.
inline __m256 max_over_keys(__m256 v) { return _mm256_max_ps(v, _mm256_permute2f128_ps(v, v, 0x01)); }
inline __m256 sum_over_keys(__m256 v) { return _mm256_add_ps(v, _mm256_permute2f128_ps(v, v, 0x01)); }
inline __m256 rows_in_each_group(const float* p) {
  const __m128 v = _mm_loadu_ps(p);
  return _mm256_set_m128(v, v);
}

#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_avx2() { return flash_kernel<8>; }

}  // namespace anvil::attention_detail

#pragma GCC pop_options

#endif  // __x86_64__
