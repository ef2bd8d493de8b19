// AVX2 (+FMA, F16C) gemv kernels for the scaled weight types: F8_E4M3, I8 and I4.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/gemv_kernels.h"

// Compiled for AVX2; only called after active_isa() said so. Intrinsics and local helpers only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace anvil::gemv_detail {
namespace {

#define ANVIL_UNROLL _Pragma("GCC unroll 8")

// R x T accumulators plus the weights and temporaries must fit in 16 ymm registers.
template <int T>
constexpr int rows_per_pass() {
  return T == 1 ? 4 : T == 2 ? 2 : 1;
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline int32_t hsum_epi32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// ---------------------------------------------------------------------------------------------
// F8_E4M3: as the AVX-512 kernel, each code is 2^8 times the fp16 number
// sign << 15 | (code & 0x7F) << 7 (sign-extended to 16 bits, shifted by 7, bit 14 cleared);
// 16 codes per step in element order against xf (bf16-rounded). NaN codes make their row NaN.
struct F8Kernel {
  static constexpr float kRescale = 256.0f;

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const uint8_t* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    int nan[R] = {};
    const __m128i sign = _mm_set1_epi8(static_cast<char>(0x80)), all = _mm_set1_epi8(static_cast<char>(0xFF));
    const __m256i mask = _mm256_set1_epi16(static_cast<short>(0xBF80));
    for (int64_t i = 0; i < a.k; i += 16) {
      const int64_t n = a.k - i < 16 ? a.k - i : 16;
      float xpad[kMaxTokens][16];
      if (n < 16)  // the k % 16 tail through zero-padded copies
        for (int t = 0; t < T; ++t)
          for (int j = 0; j < 16; ++j) xpad[t][j] = j < n ? a.xf[t * a.k + i + j] : 0.0f;
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        __m128i v;
        if (n == 16) {
          v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + i));
        } else {
          uint8_t pad[16] = {};
          for (int64_t j = 0; j < n; ++j) pad[j] = rows[r][i + j];
          v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(pad));
        }
        nan[r] |= _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_or_si128(v, sign), all));
        const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(v), 7), mask);
        const __m256 w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
        const __m256 w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          const float* x = n == 16 ? a.xf + t * a.k + i : xpad[t];
          acc[r][t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[r][t]);
          acc[r][t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc[r][t]);
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      const float sum = hsum(acc[r][t]) * kRescale;
      const float scale = a.xtoken_scale ? a.wscale[r0 + r] * a.xtoken_scale[t] : a.wscale[r0 + r];  // FP8 W8A8
      a.y[t * a.y_stride + r0 + r] = nan[r] ? __builtin_nanf("") : sum * scale;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// I8 (W8A8): maddubs of |w| (unsigned, <= 128) and x with w's sign (|x| <= 127): pairs stay
// below 2^15, so the int32 dot is exact without any correction.
struct I8Kernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const int8_t* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const int8_t*>(a.w + (r0 + r) * a.row_bytes);
    __m256i acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < a.k; i += 32) {
      const int64_t n = a.k - i < 32 ? a.k - i : 32;
      alignas(32) int8_t xpad[kMaxTokens][32];
      if (n < 32)
        for (int t = 0; t < T; ++t)
          for (int j = 0; j < 32; ++j) xpad[t][j] = j < n ? a.xq[t * a.k + i + j] : 0;
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        __m256i w;
        if (n == 32) {
          w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + i));
        } else {
          alignas(32) int8_t pad[32] = {};
          for (int64_t j = 0; j < n; ++j) pad[j] = rows[r][i + j];
          w = _mm256_load_si256(reinterpret_cast<const __m256i*>(pad));
        }
        const __m256i w_abs = _mm256_abs_epi8(w);
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          const int8_t* xq = n == 32 ? a.xq + t * a.k + i : xpad[t];
          const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq)), w);
          acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(_mm256_maddubs_epi16(w_abs, x), ones));
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + r0 + r] =
          static_cast<float>(hsum_epi32(acc[r][t])) * (a.wscale[r0 + r] * a.xtoken_scale[t]);
  }
};

// ---------------------------------------------------------------------------------------------
// I4: per 16 elements (8 bytes), the low and high nibbles interleaved back into element order,
// each code dequantized as (u - zero) * scale, against xf.
struct I4Kernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const int64_t groups = a.k / a.wgroup;
    __m256 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m128i low4 = _mm_set1_epi8(0x0F);
    for (int64_t g = 0; g < groups; ++g) {
      __m256 scale[R], zero[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        scale[r] = _mm256_set1_ps(a.wscale[(r0 + r) * groups + g]);
        zero[r] = _mm256_set1_ps(a.wzero ? a.wzero[(r0 + r) * groups + g] : 8.0f);  // kI4ImplicitZero
      }
      for (int64_t e = g * a.wgroup; e < (g + 1) * a.wgroup; e += 16) {
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const uint8_t* row = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
          const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + e / 2));
          const __m128i codes = _mm_unpacklo_epi8(_mm_and_si128(b, low4), _mm_and_si128(_mm_srli_epi16(b, 4), low4));
          const __m256 u0 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(codes));
          const __m256 u1 = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(codes, 8)));
          const __m256 w0 = _mm256_mul_ps(_mm256_sub_ps(u0, zero[r]), scale[r]);
          const __m256 w1 = _mm256_mul_ps(_mm256_sub_ps(u1, zero[r]), scale[r]);
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const float* x = a.xf + t * a.k + e;
            acc[r][t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x), acc[r][t]);
            acc[r][t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + 8), acc[r][t]);
          }
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + r0 + r] = hsum(acc[r][t]);
  }
};

#include "compute/cpu/gemv_rows.inc"

}  // namespace

GemvKernel avx2_scaled_kernel(DType dtype) {
  switch (dtype) {
    case DType::F8_E4M3: return rows<F8Kernel>;
    case DType::I8: return rows<I8Kernel>;
    case DType::I4: return rows<I4Kernel>;
    default: return nullptr;
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
