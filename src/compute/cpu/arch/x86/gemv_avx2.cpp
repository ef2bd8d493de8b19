// AVX2 (+FMA, F16C) gemv kernels: the path for x86-64 CPUs without AVX-512.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/gemv_kernels.h"
#include "quant/ggml_blocks.h"

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

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, 2);
  return v;
}
inline float half_to_float(const void* p) { return _cvtsh_ss(load_u16(p)); }

// u8 x s8 products summed per 4 bytes into int32 lanes (exact while |u*s + u*s| < 2^15).
inline __m256i dot_u8s8(__m256i acc, __m256i u, __m256i s) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

// ---------------------------------------------------------------------------------------------
// Float weights: 8 columns per step; the k % 8 tail goes through a zero-padded copy.

struct LoadF32 {
  using Elem = float;
  static __m256 load(const Elem* p) { return _mm256_loadu_ps(p); }
};
struct LoadF16 {
  using Elem = uint16_t;
  static __m256 load(const Elem* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
};
struct LoadBF16 {  // bf16 -> f32 is a 16-bit shift: exact
  using Elem = uint16_t;
  static __m256 load(const Elem* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
};

template <class Load>
struct FloatKernel {
  using Elem = typename Load::Elem;
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const Elem* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Elem*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    constexpr int64_t kElemBytes = sizeof(Elem);
    int64_t i = 0;
    // Hot loop: 8 columns of R rows, each weight vector used by all T tokens.
    for (; i + 8 <= a.k; i += 8) {
      if (i * kElemBytes % 64 == 0) prefetch.at(i * kElemBytes);
      __m256 w[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) w[r] = Load::load(rows[r] + i);
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        const __m256 x = _mm256_loadu_ps(a.xf + t * a.k + i);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(w[r], x, acc[r][t]);
      }
    }
    if (i < a.k) {
      const int64_t n = a.k - i;
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        Elem wpad[8] = {};
        for (int64_t j = 0; j < n; ++j) wpad[j] = rows[r][i + j];
        const __m256 w = Load::load(wpad);
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          float xpad[8] = {};
          for (int64_t j = 0; j < n; ++j) xpad[j] = a.xf[t * a.k + i + j];
          acc[r][t] = _mm256_fmadd_ps(w, _mm256_loadu_ps(xpad), acc[r][t]);
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + r0 + r] = hsum(acc[r][t]);
  }
};

// ---------------------------------------------------------------------------------------------
// Quantized weights: 32 weights (one activation block) per step as unsigned codes u and a
// per-lane float scale; per token: lanes = bias + dot(u, xq) exact, then scaled f32 FMA.

struct TokenBlock {
  __m256i q;
  __m256i bias;
  __m256 scale;
};
inline TokenBlock token_block(const GemvArgs& a, int t, int64_t elem) {
  const int64_t lane = elem / kBlock * kLanesPerBlock + t * (a.k / kBlock * kLanesPerBlock);
  return {_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + t * a.k + elem)),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xbias + lane)), _mm256_loadu_ps(a.xscale + lane)};
}

template <int R, int T>
inline void accumulate_block(const GemvArgs& a, int64_t elem, const __m256i (&u)[R], const __m256 (&sw)[R],
                             __m256 (&acc)[R][T]) {
  ANVIL_UNROLL for (int t = 0; t < T; ++t) {
    const TokenBlock x = token_block(a, t, elem);
    ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      const __m256 lanes = _mm256_cvtepi32_ps(dot_u8s8(x.bias, u[r], x.q));
      acc[r][t] = _mm256_fmadd_ps(lanes, _mm256_mul_ps(sw[r], x.scale), acc[r][t]);
    }
  }
}

template <int R, int T>
inline void zero(__m256 (&acc)[R][T]) {
  ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
}

template <int R, int T>
inline void store_sums(const GemvArgs& a, int64_t r0, __m256 (&acc)[R][T]) {
  ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
    a.y[t * a.y_stride + r0 + r] = hsum(acc[r][t]);
}

// Q8_0 needs signed x signed: llama.cpp's sign trick (|w| as unsigned, x with w's sign) keeps
// maddubs exact (127*127*2 < 2^15), so the offset-128 bias is not used here.
struct Q8_0Kernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ8_0* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ8_0*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    zero(acc);
    const int64_t blocks = a.k / kBlock;
    const int64_t lane_stride = a.k / kBlock * kLanesPerBlock;
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one block of R rows per step.
    for (int64_t b = 0; b < blocks; ++b) {
      prefetch.at(b * int64_t{sizeof(BlockQ8_0)});
      __m256i w[R], u[R];
      __m256 sw[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        w[r] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][b].qs));
        u[r] = _mm256_sign_epi8(w[r], w[r]);
        sw[r] = _mm256_set1_ps(half_to_float(&rows[r][b].d));
      }
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        const __m256i xq = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + t * a.k + b * kBlock));
        const __m256 sx = _mm256_loadu_ps(a.xscale + t * lane_stride + b * kLanesPerBlock);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const __m256 lanes = _mm256_cvtepi32_ps(dot_u8s8(_mm256_setzero_si256(), u[r], _mm256_sign_epi8(xq, w[r])));
          acc[r][t] = _mm256_fmadd_ps(lanes, _mm256_mul_ps(sw[r], sx), acc[r][t]);
        }
      }
    }
    store_sums(a, r0, acc);
  }
};

// Q4_0: the 16 bytes broadcast to both 128-bit halves, the upper shifted by 4: codes in order.
struct Q4_0Kernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ4_0* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ4_0*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    zero(acc);
    const __m256i shifts = _mm256_setr_epi64x(0, 0, 4, 4);
    const int64_t blocks = a.k / kBlock;
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one block of R rows per step.
    for (int64_t b = 0; b < blocks; ++b) {
      if (b % 4 == 0) {  // both lines a 72-byte step of 4 blocks can touch
        prefetch.at(b * int64_t{sizeof(BlockQ4_0)});
        prefetch.at(b * int64_t{sizeof(BlockQ4_0)} + 64);
      }
      __m256i u[R];
      __m256 sw[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r][b].qs)));
        u[r] = _mm256_and_si256(_mm256_srlv_epi64(v, shifts), _mm256_set1_epi8(0x0F));
        sw[r] = _mm256_set1_ps(half_to_float(&rows[r][b].d));
      }
      accumulate_block(a, b * kBlock, u, sw, acc);
    }
    store_sums(a, r0, acc);
  }
};

// Q4_K: each 32-byte run of qs holds sub-blocks 2c (low nibbles) and 2c+1 (high nibbles).
struct Q4KKernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ4_K* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ4_K*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    zero(acc);
    const int64_t supers = a.k / kQK_K;
    const int64_t min_stride = a.k / kQK_K * 16;
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one super-block of R rows per step, 32 weights at a time.
    for (int64_t s = 0; s < supers; ++s) {
      for (int64_t line = 0; line < int64_t{sizeof(BlockQ4_K)}; line += 64) prefetch.at(s * sizeof(BlockQ4_K) + line);
      float scales[R][8];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const BlockQ4_K& blk = rows[r][s];
        uint32_t packed[4];
        unpack_q4k_scales(blk.scales, packed);
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(packed));
        const __m256 sc = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), _mm256_set1_ps(half_to_float(&blk.d)));
        _mm256_storeu_ps(scales[r], sc);
        const __m256 mins = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                                          _mm256_set1_ps(half_to_float(&blk.dmin)));
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          acc[r][t] = _mm256_fmadd_ps(mins, _mm256_loadu_ps(a.xmin + t * min_stride + s * 16 + 8), acc[r][t]);
      }
      for (int j = 0; j < 8; ++j) {
        __m256i u[R];
        __m256 sw[R];
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][s].qs + 32 * (j / 2)));
          if (j % 2) v = _mm256_srli_epi16(v, 4);
          u[r] = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
          sw[r] = _mm256_set1_ps(scales[r][j]);
        }
        accumulate_block(a, s * kQK_K + 32 * j, u, sw, acc);
      }
    }
    store_sums(a, r0, acc);
  }
};

// Q6_K: 32 weights j*32.. of a half come from ql[0..31] or ql[32..63] (low nibbles for j < 2,
// high for j >= 2) and bits 2j..2j+1 of qh[0..31]; groups of 16 share an int8 scale. The scale
// is applied in integers: (u - 32) . x per element pair in int16 (u x x minus 32 x x, |.| <=
// 8128), then madd with the pair's int16 scale into one int32 per 4
// elements, so a block takes one conversion and one FMA instead of a float scale vector.
struct Q6KKernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ6_K* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ6_K*>(a.w + (r0 + r) * a.row_bytes);
    __m256 acc[R][T];
    zero(acc);
    const int64_t supers = a.k / kQK_K;
    const int64_t lane_stride = a.k / kBlock * kLanesPerBlock;
    const __m256i offset = _mm256_set1_epi8(32);
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one super-block of R rows per step, 32 weights at a time.
    for (int64_t s = 0; s < supers; ++s) {
      for (int64_t line = 0; line < int64_t{sizeof(BlockQ6_K)}; line += 64) prefetch.at(s * sizeof(BlockQ6_K) + line);
      float d[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) d[r] = half_to_float(&rows[r][s].d);
      for (int c = 0; c < 8; ++c) {
        const int h = c / 4, j = c % 4;
        // Per token: x and its block scale (loaded in the row loop; the compiler keeps them
        // across the unrolled rows where registers allow).
        const auto token_x = [&](int t) {
          return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.xq + t * a.k + s * kQK_K + 32 * c));
        };
        const auto token_scale = [&](int t) {
          return _mm256_loadu_ps(a.xscale + t * lane_stride + (s * 8 + c) * kLanesPerBlock);
        };
        // Scales 2c (elements 0..15: int16 lanes 0..7) and 2c + 1 (lanes 8..15).
        const __m128i pick = _mm_setr_epi8(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1, 2 * c + 1,
                                           2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const BlockQ6_K& blk = rows[r][s];
          __m256i low = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * h + 32 * (j % 2)));
          if (j >= 2) low = _mm256_srli_epi16(low, 4);
          const __m256i qh = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h));
          const __m256i high = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), _mm256_set1_epi8(3));
          const __m256i u = _mm256_or_si256(_mm256_and_si256(low, _mm256_set1_epi8(0x0F)), _mm256_slli_epi16(high, 4));
          const __m256i scale16 = _mm256_cvtepi8_epi16(
              _mm_shuffle_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales)), pick));
          const __m256 row_scale = _mm256_set1_ps(d[r]);
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const __m256i x = token_x(t);
            const __m256i pairs = _mm256_sub_epi16(_mm256_maddubs_epi16(u, x), _mm256_maddubs_epi16(offset, x));
            const __m256 lanes = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, scale16));
            acc[r][t] = _mm256_fmadd_ps(lanes, _mm256_mul_ps(row_scale, token_scale(t)), acc[r][t]);
          }
        }
      }
    }
    store_sums(a, r0, acc);
  }
};

#include "compute/cpu/gemv_rows.inc"

}  // namespace

GemvKernel avx2_kernel(DType dtype) {
  switch (dtype) {
    case DType::F32: return rows<FloatKernel<LoadF32>>;
    case DType::F16: return rows<FloatKernel<LoadF16>>;
    case DType::BF16: return rows<FloatKernel<LoadBF16>>;
    case DType::Q8_0: return rows<Q8_0Kernel>;
    case DType::Q4_0: return rows<Q4_0Kernel>;
    case DType::Q4_K: return rows<Q4KKernel>;
    case DType::Q6_K: return rows<Q6KKernel>;
    case DType::Q8_0_R4:
    case DType::Q4_0_R4:
    case DType::Q4_K_R4: return avx2_panel_kernel(dtype);
    default: return avx2_scaled_kernel(dtype);
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
