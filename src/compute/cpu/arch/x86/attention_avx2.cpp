// AVX2 (+FMA) flash-attention kernel: the width-generic kernel of attention_flash.inc at 8 lanes.
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

// No decode row-dot scorer at this width (attention_flash.inc's kRowDotScores).
constexpr bool kRowDotScores = false;
inline void row_dot_scores(const float*, int64_t, const float* const*, int64_t, float*) {}
inline void row_dot_softmax(float*, int64_t, int64_t, bool, const float*, const float*, float*, float*, float*) {}

#include "compute/cpu/vector_ops_simd.inc"
#include "compute/cpu/attention_flash.inc"

}  // namespace

FlashKernel flash_kernel_avx2() { return flash_kernel<8>; }

}  // namespace anvil::attention_detail

#pragma GCC pop_options

#endif  // __x86_64__
