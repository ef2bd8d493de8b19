// AVX-512 (F/BW/VL) flash-attention kernel: the width-generic kernel of attention_flash.inc at 16 lanes.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/attention_kernels.h"

// Only called after active_isa() said so; the region holds intrinsics and local code only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::attention_detail {
namespace {

// Tails (head_dim not a multiple of 16) through masked loads and stores.
inline void tile_row_from_f16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    _mm512_mask_storeu_ps(dst + i, k, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, src + i)));
  }
}
// bfloat16 is the top half of a float.
inline void tile_row_from_bf16(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, src + i));
    _mm512_mask_storeu_ps(dst + i, k, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
}
// E4M3 code c is exactly 2^8 times the fp16 number sign << 15 | (c & 0x7F) << 7, subnormals
// included (the NaN code reads as 480, but the KV quantizer writes it only into a row whose scale
// is NaN). scale x 256 is exact and finite (scale <= FLT_MAX / 448), so each element is the
// code's value x scale rounded once, bit for bit what the reference computes.
inline void tile_row_from_e4m3(const uint8_t* src, float scale, float* dst, int64_t n) {
  const __m512 s = _mm512_set1_ps(scale * 256.0f);
  const __m256i mask = _mm256_set1_epi16(static_cast<short>(0xBF80));
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm_maskz_loadu_epi8(k, src + i)), 7), mask);
    _mm512_mask_storeu_ps(dst + i, k, _mm512_mul_ps(_mm512_cvtph_ps(h), s));
  }
}
inline void tile_row_from_i8(const int8_t* src, float scale, float* dst, int64_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 k = n - i >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512i wide = _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, src + i));
    _mm512_mask_storeu_ps(dst + i, k, _mm512_mul_ps(_mm512_cvtepi32_ps(wide), s));
  }
}

// Decode scores (see attention_flash.inc's kRowDotScores), compact: s[j * 4 + r] = dot(qn row r,
// key j) for the keys j < nk and the 4 rows of qn (4 x hd, hd a multiple of 16; rows past the real
// ones zero), and whatever up to the next multiple of 4 keys (row_dot_softmax masks those). 4 keys
// x 4 rows accumulate in 16 registers over the head dimension, then one transposing tree of
// shuffles and adds sums all 16 at once (lane i: accumulator i = key i / 4, row i % 4).
constexpr bool kRowDotScores = true;

inline __m512 sum_lanes_of_16(const __m512 (&v)[16]) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i)  // per 128-bit lane: [x0+x2, y0+y2, x1+x3, y1+y3]
    a[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {  // per 128-bit lane L: the lane-L sums of v[4i..4i+3]
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);  // pairs of floats
    b[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)  // pairs of 128-bit lanes added
    c[i] = _mm512_add_ps(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0x88), _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], 0xDD));
  return _mm512_add_ps(_mm512_shuffle_f32x4(c[0], c[1], 0x88), _mm512_shuffle_f32x4(c[0], c[1], 0xDD));
}

inline void row_dot_scores(const float* qn, int64_t hd, const float* const* krow, int64_t nk, float* s) {
  for (int64_t j = 0; j < nk; j += 4) {
    const float* k[4];
    for (int kj = 0; kj < 4; ++kj) k[kj] = krow[j + kj < nk ? j + kj : j];  // past nk: a copy of key j
    __m512 acc[16];
    for (__m512& v : acc) v = _mm512_setzero_ps();
    for (int64_t d = 0; d < hd; d += 16) {
      __m512 qv[4];
      for (int r = 0; r < 4; ++r) qv[r] = _mm512_loadu_ps(qn + r * hd + d);
      for (int kj = 0; kj < 4; ++kj) {
        const __m512 kv = _mm512_loadu_ps(k[kj] + d);
        for (int r = 0; r < 4; ++r) acc[4 * kj + r] = _mm512_fmadd_ps(qv[r], kv, acc[4 * kj + r]);
      }
    }
    _mm512_storeu_ps(s + j * 4, sum_lanes_of_16(acc));
  }
}

#include "compute/cpu/vector_ops_simd.inc"

// row_dot_softmax's lane groups (attention_flash.inc): each row's value of v (lane i: row i % 4)
// reduced over the 4 keys of the vector (the four 128-bit lanes), in every 128-bit lane; and p[0..3]
// in every 128-bit lane.
inline __m512 max_over_keys(__m512 v) {
  v = _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  return _mm512_max_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
}
inline __m512 sum_over_keys(__m512 v) {
  v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));
  return _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));
}
inline __m512 rows_in_each_group(const float* p) { return _mm512_broadcast_f32x4(_mm_loadu_ps(p)); }

#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_avx512() { return flash_kernel<16>; }

}  // namespace anvil::attention_detail

#pragma GCC pop_options

#endif  // __x86_64__
