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

#include "compute/cpu/arch/x86/gemv_avx2_helpers.inc"  // rows_per_pass, hsum

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
    int64_t i = 0;
    {
      // Hot loop: 32 codes of R rows per step, their NaN test (code | 0x80 == 0xFF) in one
      // compare, reduced once per row after the loop.
      __m256i nan_lanes[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) nan_lanes[r] = _mm256_setzero_si256();
      const __m256i sign32 = _mm256_set1_epi8(static_cast<char>(0x80)), all32 = _mm256_set1_epi8(static_cast<char>(0xFF));
      const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
      for (; i + 32 <= a.k; i += 32) {
        if (i % 64 == 0) prefetch.at(i);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r] + i));
          nan_lanes[r] = _mm256_or_si256(nan_lanes[r], _mm256_cmpeq_epi8(_mm256_or_si256(v, sign32), all32));
          const __m256i h0 = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(v)), 7), mask);
          const __m256i h1 = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(v, 1)), 7), mask);
          const __m256 w[4] = {_mm256_cvtph_ps(_mm256_castsi256_si128(h0)), _mm256_cvtph_ps(_mm256_extracti128_si256(h0, 1)),
                               _mm256_cvtph_ps(_mm256_castsi256_si128(h1)), _mm256_cvtph_ps(_mm256_extracti128_si256(h1, 1))};
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const float* x = a.xf + t * a.k + i;
            ANVIL_UNROLL for (int q = 0; q < 4; ++q) acc[r][t] = _mm256_fmadd_ps(w[q], _mm256_loadu_ps(x + 8 * q), acc[r][t]);
          }
        }
      }
      ANVIL_UNROLL for (int r = 0; r < R; ++r) nan[r] = _mm256_movemask_epi8(nan_lanes[r]);
    }
    // The rest, 16 codes per step.
    for (; i < a.k; i += 16) {
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
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    for (int64_t i = 0; i < a.k; i += 32) {
      if (i % 64 == 0) prefetch.at(i);
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
// I4 against xf_permuted (the AVX-512 kernel's order, see GemvActivations): in a whole 128-element
// block, int32 lane j of the code bytes holds elements 8j..8j+7 in its nibbles n = 0..7, and
// x's vector n holds elements 8j + n. So a 32-byte load is 8 lanes (64 elements), and nibble n of
// every lane, shifted and masked in place, meets 8 consecutive floats of x's vector n: no shuffles.
// Weights are (u - zero) exactly in f32; each half block's products sum apart and take their
// groups' scales once, per lane (a lane's 8 elements never straddle a group: groups are 32, 64
// or 128 elements).
struct I4Kernel {
  // p[0] in lanes 0..3, p[1] in lanes 4..7.
  static inline __m256 two_group_lanes(const float* p) {
    const __m256 pair = _mm256_castps128_ps256(_mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
    return _mm256_permutevar8x32_ps(pair, _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1));
  }

  // Per lane of a half block whose first group is `first`: that group's scale and zero, or for
  // 32-groups, lanes 0..3 group `first` and lanes 4..7 the next.
  static inline void half_lanes(const float* s, const float* z, int64_t first, bool two_groups, __m256& scale,
                                __m256& zero) {
    if (two_groups) {
      scale = two_group_lanes(s + first);
      zero = z ? two_group_lanes(z + first) : _mm256_set1_ps(8.0f);
    } else {
      scale = _mm256_broadcast_ss(s + first);
      zero = z ? _mm256_broadcast_ss(z + first) : _mm256_set1_ps(8.0f);  // kI4ImplicitZero
    }
  }

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const int64_t groups = a.k / a.wgroup, blocked = a.k / 128 * 128;
    __m256 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i low4 = _mm256_set1_epi32(0x0F);
    // Hot loop: one half block (64 elements) of R rows per step.
    const bool two_groups = a.wgroup == 32;
    const int shift = a.wgroup == 32 ? 5 : a.wgroup == 64 ? 6 : 7;  // log2 of the group
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    for (int64_t b = 0; b < blocked; b += 128) {
      prefetch.at(b / 2);  // the block's 64 code bytes, kAheadBytes on
      for (int h = 0; h < 2; ++h) {
        const int64_t first = (b + 64 * h) >> shift;
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const uint8_t* row = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
          const __m256i lanes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + b / 2 + 32 * h));
          __m256 scale, zero;
          half_lanes(a.wscale + (r0 + r) * groups, a.wzero ? a.wzero + (r0 + r) * groups : nullptr, first, two_groups,
                     scale, zero);
          __m256 part[T];
          ANVIL_UNROLL for (int t = 0; t < T; ++t) part[t] = _mm256_setzero_ps();
          ANVIL_UNROLL for (int n = 0; n < 8; ++n) {
            const __m256i u = n == 0 ? _mm256_and_si256(lanes, low4)
                              : n == 7 ? _mm256_srli_epi32(lanes, 28)
                                       : _mm256_and_si256(_mm256_srli_epi32(lanes, 4 * n), low4);
            const __m256 w = _mm256_sub_ps(_mm256_cvtepi32_ps(u), zero);
            ANVIL_UNROLL for (int t = 0; t < T; ++t)
              part[t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(a.xf_permuted + t * a.k + b + 16 * n + 8 * h), part[t]);
          }
          ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(part[t], scale, acc[r][t]);
        }
      }
    }
    // The k % 128 tail (32- and 64-groups): 32-element runs, x as the run's 16 even then 16 odd
    // elements; a run lies in one group.
    for (int64_t e = blocked; e < a.k; e += 32) {
      const int64_t g = e / a.wgroup;
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const uint8_t* row = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
        const __m256 zero = _mm256_set1_ps(a.wzero ? a.wzero[(r0 + r) * groups + g] : 8.0f);
        __m256 part[T];
        ANVIL_UNROLL for (int t = 0; t < T; ++t) part[t] = _mm256_setzero_ps();
        ANVIL_UNROLL for (int q = 0; q < 2; ++q) {  // bytes 8q..8q+7: elements 16q..16q+15
          const __m256i bytes = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + e / 2 + 8 * q)));
          const __m256 even = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_and_si256(bytes, low4)), zero);
          const __m256 odd = _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(bytes, 4)), zero);
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const float* x = a.xf_permuted + t * a.k + e + 8 * q;
            part[t] = _mm256_fmadd_ps(even, _mm256_loadu_ps(x), part[t]);
            part[t] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(x + 16), part[t]);
          }
        }
        const __m256 scale = _mm256_set1_ps(a.wscale[(r0 + r) * groups + g]);
        ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_fmadd_ps(part[t], scale, acc[r][t]);
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
    case DType::I4:
      return [](const GemvArgs& a) {
        if (a.wgroup == 32 || a.wgroup == 64 || a.wgroup == 128) return rows<I4Kernel>(a);
        scalar_kernel(DType::I4)(a);  // not a layout check_quant_scale_layout accepts
      };
    default: return nullptr;
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
