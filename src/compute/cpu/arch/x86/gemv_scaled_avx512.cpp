// AVX-512 gemv kernels for the scaled weight types: F8_E4M3 (W8A16), I8 (W8A8, VNNI), I4 (W4A16);
// the 16-bit activation schemes with AVX512-BF16 dot products where the CPU has them.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/gemv_kernels.h"

// Compiled for AVX-512; only called after active_isa() said so. Intrinsics and local helpers only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::gemv_detail {
namespace {

#define ANVIL_UNROLL _Pragma("GCC unroll 8")

template <int R, int T>
inline void zero(__m512 (&acc)[R][T]) {
  ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
}

// ---------------------------------------------------------------------------------------------
// F8_E4M3 (W8A16), with VBMI. Every E4M3 value is a bf16 number (3 mantissa bits of 7, exponents
// 2^-9..2^8 in range, subnormals included): two vpermi2b lookups of a code's 7 magnitude bits
// give the low and the high byte of its bf16 (the NaN codes' bf16 is NaN), the sign bit goes
// into the high byte, and byte interleaves make bf16 words. A bf16 word is the top half of its
// f32: the low word of each int32 lane shifted up and the high word masked give two f32 vectors
// per word vector, so 64 codes become 4 exact f32 vectors for f32 FMAs against x in
// GemvActivations' F8 order. The k % 64 tail decodes 16 codes at a time through fp16 (a code is
// exactly 2^8 times the fp16 number sign << 15 | (code & 0x7F) << 7) against x as is.

// bf16 bits of E4M3 magnitude m (0..127), at compile time.
constexpr uint16_t e4m3_magnitude_bf16(int m) {
  const int e = m >> 3, mantissa = m & 7;
  if (e == 15 && mantissa == 7) return 0x7FC0;  // NaN
  if (m == 0) return 0;
  // m = mantissa * 2^-9 (e = 0) or (8 + mantissa) * 2^(e - 10): an integer below 16 times 2^p,
  // so the bf16 of that integer with p added to its exponent field.
  const int n = e == 0 ? mantissa : 8 + mantissa;
  const int p = e == 0 ? -9 : e - 10;
  int top = 0;
  while ((n >> (top + 1)) != 0) ++top;
  return static_cast<uint16_t>((127 + top + p) << 7 | ((n - (1 << top)) << (7 - top)));
}

struct E4M3Tables {
  alignas(64) uint8_t low[128];   // low byte of the bf16 of magnitude m
  alignas(64) uint8_t high[128];  // high byte (sign 0)
  constexpr E4M3Tables() : low(), high() {
    for (int m = 0; m < 128; ++m) {
      low[m] = static_cast<uint8_t>(e4m3_magnitude_bf16(m) & 0xFF);
      high[m] = static_cast<uint8_t>(e4m3_magnitude_bf16(m) >> 8);
    }
  }
};
constexpr E4M3Tables kE4M3Tables;

// The vpermi2b instructions go through inline asm: this translation unit is compiled without the
// VBMI target, and the kernel runs only where isa_has_avx512_vbmi() said so.
inline __m512i permute_bytes(__m512i index, __m512i table_low, __m512i table_high) {
  __asm__("vpermi2b %[hi], %[lo], %[idx]" : [idx] "+v"(index) : [lo] "v"(table_low), [hi] "v"(table_high));
  return index;
}

// acc + a.bf16[2i] * b.bf16[2i] + a.bf16[2i + 1] * b.bf16[2i + 1] per f32 lane i (products exact).
// Inline asm: this translation unit is not compiled with the AVX512-BF16 target; the kernels that
// use it run only where isa_has_avx512_bf16() said so.
inline __m512 dpbf16(__m512 acc, __m512i a, __m512i b) {
  __asm__("vdpbf16ps %[b], %[a], %[acc]" : [acc] "+v"(acc) : [a] "v"(a), [b] "v"(b));
  return acc;
}

// kBf16: the bf16 words meet GemvActivations::bf16_pairs in vdpbf16ps (2 per 64 codes instead of
// 4 conversions and 4 FMAs); otherwise their f32 halves meet f32_permuted in FMAs. Same products.
template <bool kBf16>
struct F8Kernel {
  // R x T x 2 accumulators within the 32 registers.
  template <int T>
  static constexpr int rows_per_pass() {
    return T <= 2 ? 4 : 2;
  }

  // 16 codes in element order -> 16 floats, 2^-8 times their values (the tail).
  static __m512 tail16(const uint8_t* p, __mmask16 m, __mmask64& nan) {
    const __m128i v = _mm_maskz_loadu_epi8(m, p);
    nan |= _mm512_cmpeq_epi8_mask(_mm512_zextsi128_si512(_mm_or_si128(v, _mm_set1_epi8(static_cast<char>(0x80)))),
                                  _mm512_set1_epi8(static_cast<char>(0xFF)));
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(v), 7),
                                       _mm256_set1_epi16(static_cast<short>(0xBF80)));
    return _mm512_cvtph_ps(h);
  }

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const uint8_t* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
    __m512 acc[R][T], acc2[R][T];  // two FMA chains per row and token
    zero(acc);
    zero(acc2);
    const __m512i low0 = _mm512_load_si512(kE4M3Tables.low), low1 = _mm512_load_si512(kE4M3Tables.low + 64);
    const __m512i high0 = _mm512_load_si512(kE4M3Tables.high), high1 = _mm512_load_si512(kE4M3Tables.high + 64);
    const __m512i sign = _mm512_set1_epi8(static_cast<char>(0x80));
    const __m512i high_words = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    int64_t i = 0;
    // Hot loop: 64 codes of R rows per step.
    for (; i + 64 <= a.k; i += 64) {
      prefetch.at(i);
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m512i v = _mm512_loadu_si512(rows[r] + i);
        const __m512i low = permute_bytes(v, low0, low1);
        const __m512i high = _mm512_ternarylogic_epi32(permute_bytes(v, high0, high1), v, sign, 0xF8);  // | v & 0x80
        const __m512i words0 = _mm512_unpacklo_epi8(low, high), words1 = _mm512_unpackhi_epi8(low, high);
        if constexpr (kBf16) {
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const uint16_t* xb = a.xbf16_pairs + t * a.k + i;
            acc[r][t] = dpbf16(acc[r][t], words0, _mm512_loadu_si512(xb));
            acc2[r][t] = dpbf16(acc2[r][t], words1, _mm512_loadu_si512(xb + 32));
          }
          continue;
        }
        const __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(words0, 16));
        const __m512 w1 = _mm512_castsi512_ps(_mm512_and_si512(words0, high_words));
        const __m512 w2 = _mm512_castsi512_ps(_mm512_slli_epi32(words1, 16));
        const __m512 w3 = _mm512_castsi512_ps(_mm512_and_si512(words1, high_words));
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          const float* x = a.xf_permuted + t * a.k + i;
          acc[r][t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x), acc[r][t]);
          acc2[r][t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + 16), acc2[r][t]);
          acc[r][t] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(x + 32), acc[r][t]);
          acc2[r][t] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(x + 48), acc2[r][t]);
        }
      }
    }
    // The k % 64 tail through fp16, 2^-8 times the values: summed apart, then scaled by 2^8.
    __mmask64 nan[R];
    __m512 tail[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) nan[r] = 0;
    zero(tail);
    for (; i < a.k; i += 16) {
      const int64_t n = a.k - i < 16 ? a.k - i : 16;
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m512 w = tail16(rows[r] + i, m, nan[r]);
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          tail[r][t] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m, a.xf_permuted + t * a.k + i), tail[r][t]);
      }
    }
    const __m512 rescale = _mm512_set1_ps(256.0f);
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      const __m512 sum = _mm512_fmadd_ps(tail[r][t], rescale, _mm512_add_ps(acc[r][t], acc2[r][t]));
      const float scale = a.xtoken_scale ? a.wscale[r0 + r] * a.xtoken_scale[t] : a.wscale[r0 + r];  // FP8 W8A8
      a.y[t * a.y_stride + r0 + r] = nan[r] ? __builtin_nanf("") : _mm512_reduce_add_ps(sum) * scale;
    }
  }
};

// ---------------------------------------------------------------------------------------------
// I8 (W8A8) with VNNI: vpdpbusd multiplies unsigned by signed bytes, so the weight codes are
// flipped to unsigned (w + 128, an xor) and each token's -128 * sum(x codes) (GemvActivations'
// bias) restores dot(w, x) exactly. The flipped sums may pass 2^31 on the way for the longest
// rows (int32 adds wrap); the result is still the exact dot modulo 2^32, and the dot fits.

inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) {
  // Inline asm: this translation unit is not compiled with the VNNI target (see gemv_avx512.cpp).
  __asm__("vpdpbusd %[s], %[u], %[acc]" : [acc] "+v"(acc) : [u] "v"(u), [s] "v"(s));
  return acc;
}

// Sum of the 16 lanes modulo 2^32. Vector adds wrap; _mm512_reduce_add_epi32 adds them as C ints,
// which is undefined behaviour on the long rows whose integer sums are meant to wrap.
inline int32_t wrapping_sum_epi32(__m512i v) {
  const __m256i h = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

struct I8VnniKernel {
  template <int T>
  static constexpr int rows_per_pass() {
    return T <= 3 ? 4 : 2;
  }

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const int8_t* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const int8_t*>(a.w + (r0 + r) * a.row_bytes);
    __m512i acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_si512();
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    int64_t i = 0;
    // Hot loop: 64 codes of R rows per step, each flipped vector used by all T tokens.
    for (; i + 64 <= a.k; i += 64) {
      prefetch.at(i);
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m512i w = _mm512_xor_si512(_mm512_loadu_si512(rows[r] + i), flip);
        ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = dpbusd(acc[r][t], w, _mm512_loadu_si512(a.xq + t * a.k + i));
      }
    }
    if (i < a.k) {  // k % 64 codes; the zeroed activations cancel whatever the weights hold
      const __mmask64 m = (~0ull) >> (64 - (a.k - i));
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m512i w = _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, rows[r] + i), flip);
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          acc[r][t] = dpbusd(acc[r][t], w, _mm512_maskz_loadu_epi8(m, a.xq + t * a.k + i));
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      const uint32_t wrapped = static_cast<uint32_t>(wrapping_sum_epi32(acc[r][t])) + static_cast<uint32_t>(a.xbias[t]);
      const int32_t dot = static_cast<int32_t>(wrapped);
      a.y[t * a.y_stride + r0 + r] = static_cast<float>(dot) * (a.wscale[r0 + r] * a.xtoken_scale[t]);
    }
  }
};

// ---------------------------------------------------------------------------------------------
// I4 (W4A16). 64 bytes hold 128 codes, element 2j in the low nibble of byte j, so 16-bit word j
// holds elements 4j..4j+3 in its nibbles m = 0..3. vpermw looks each word up by its low 5 bits
// in a table of 32 bf16 numbers: with the word shifted right by 4m, nibble m is the index, and
// the table gives u - zero, an exact small integer. Symmetric weights (zero 8) use the raw
// shifted word (the stray fifth bit meets a table that repeats its 16 entries), and so do
// asymmetric groups of 128, with their block's table built by one lookup of 15 - zero + (i & 15)
// in the table of the 31 values -15..15. Smaller asymmetric groups, whose words need different
// tables, mask the nibble and add 15 - zero (per word) to index that table directly. A bf16 word is the top half of its f32: the low word of each int32
// lane shifted up (element 8i + m) and the high word masked (element 8i + 4 + m) give two f32
// vectors per lookup, and x, in GemvActivations' transposed order (element 8i + n at lane i of
// vector n), meets them lane for lane in exact f32 FMAs. (The zero point comes off before any
// product: multiplying unsigned codes and subtracting zero * sum(x) afterwards cancels badly in
// groups whose codes sit near their zero.) A lane's 8 elements never cross a group (G >= 32), so
// groups smaller than 128 are lane ranges (G / 8 lanes, G / 4 words) with per-lane scales and
// zeros: per 128 elements sum((u - zero) * x) in f32, times the lane's scale. A trailing k % 128
// (groups of 32 or 64) runs 32 elements at a time against x's pairs order: a zero-extended byte
// per lane, its nibbles the even and the odd element, turned into floats as
// (0x4B000000 | u) = 2^23 + u minus 2^23 + zero.

// bf16 bits of a small integer (|n| < 256), at compile time.
constexpr uint16_t bf16_of_int(int n) {
  if (n == 0) return 0;
  const uint16_t sign = n < 0 ? 0x8000 : 0;
  const int m = n < 0 ? -n : n;
  int e = 0;
  while ((m >> (e + 1)) != 0) ++e;
  return static_cast<uint16_t>(sign | (127 + e) << 7 | ((m - (1 << e)) << (7 - e)));
}

struct I4Tables {
  alignas(64) uint16_t symmetric[32];  // bf16((i & 15) - 8)
  alignas(64) uint16_t shifted[32];    // bf16(i - 15): index u + 15 - zero
  alignas(64) uint16_t low4[32];       // i & 15
  constexpr I4Tables() : symmetric(), shifted(), low4() {
    for (int i = 0; i < 32; ++i) {
      symmetric[i] = bf16_of_int((i & 15) - 8);  // int4_codes.h's kI4ImplicitZero
      shifted[i] = bf16_of_int(i < 31 ? i - 15 : 0);
      low4[i] = static_cast<uint16_t>(i & 15);
    }
  }
};
constexpr I4Tables kI4Tables;

// kBf16: each lookup's 32 bf16 words meet GemvActivations::bf16_pairs in one vdpbf16ps (lane i:
// elements 8i + m and 8i + 4 + m, as the two f32 halves below) instead of 2 conversions and 2 FMAs.
template <int G, bool kZeros, bool kBf16>
struct I4Kernel {
  static constexpr int kGroupsPerBlock = 128 / G;
  static constexpr float kMagic = 8388608.0f;  // 2^23, the float of bits 0x4B000000
  static constexpr float kImplicitZero = 8.0f;
  // Asymmetric groups smaller than a block index the shifted table per word.
  static constexpr bool kWordZeros = kZeros && G < 128;

  // R x T x 3 accumulators in the 32 registers (gemv_rows gives this kernel at most 4 tokens).
  template <int T>
  static constexpr int rows_per_pass() {
    return T == 1 ? 4 : T == 2 ? 2 : 1;
  }

  // The 16 lanes of a 128-element block: lane i takes v[i / (G / 8)] (v: that block's groups).
  static __m512 per_lane(const float* v) {
    if constexpr (G == 128) {
      return _mm512_set1_ps(v[0]);
    } else {
      const __m512 groups = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << kGroupsPerBlock) - 1), v);
      const __m512i pick = G == 64 ? _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)
                                   : _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
      return _mm512_permutexvar_ps(pick, groups);
    }
  }

  // 15 - zero for the 32 words of a block (word j takes group 4j / G).
  static __m512i index_offsets(const float* zeros) {
    if constexpr (G == 128) {
      // In vector registers throughout (a scalar word broadcast goes through memory).
      const __m512i z = _mm512_cvttps_epi32(_mm512_set1_ps(zeros[0]));
      return _mm512_sub_epi16(_mm512_set1_epi16(15), _mm512_packs_epi32(z, z));
    } else {
      const __m512i z = _mm512_cvttps_epi32(
          _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << kGroupsPerBlock) - 1), zeros));
      // Word j of the result: the low word of int32 lane (group of j), i.e. word 2 * group.
      const __m512i pick = G == 64 ? _mm512_set_epi16(2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0,
                                                       0, 0, 0, 0, 0, 0, 0, 0, 0)
                                   : _mm512_set_epi16(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2, 2, 2, 2, 2, 2,
                                                       2, 0, 0, 0, 0, 0, 0, 0, 0);
      return _mm512_sub_epi16(_mm512_set1_epi16(15), _mm512_permutexvar_epi16(pick, z));
    }
  }

  // Lookup m (0..3) of a block: the f32 vectors of elements {8i + m} and {8i + 4 + m}.
  template <int m, int R, int T>
  static void lookup_step(const float* x, const uint16_t* xb, int64_t k, const __m512i (&v)[R],
                          const __m512i (&table)[R], __m512 (&part)[2][R][T]) {
    // Few tokens: each x vector loaded once for all R rows; many (R = 1): folded into the FMAs.
    constexpr bool kPreload = T <= 2 && !kBf16;
    __m512i x_pairs[kBf16 ? T : 1];
    if constexpr (kBf16) ANVIL_UNROLL for (int t = 0; t < T; ++t) x_pairs[t] = _mm512_loadu_si512(xb + t * k + 32 * m);
    __m512 x_low[kPreload ? T : 1], x_high[kPreload ? T : 1];
    if constexpr (kPreload)
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        x_low[t] = _mm512_loadu_ps(x + t * k + 16 * m);
        x_high[t] = _mm512_loadu_ps(x + t * k + 16 * (4 + m));
      }
    const __m512i high_words = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      __m512i index = m == 0 ? v[r] : _mm512_srli_epi16(v[r], 4 * m);
      __m512i words;
      if constexpr (kWordZeros) {  // table[r]: 15 - zero per word
        if (m < 3) index = _mm512_and_si512(index, _mm512_set1_epi16(0x0F));
        words = _mm512_permutexvar_epi16(_mm512_add_epi16(index, table[r]), _mm512_load_si512(kI4Tables.shifted));
      } else {
        words = _mm512_permutexvar_epi16(index, table[r]);
      }
      if constexpr (kBf16) {  // lookups 0, 2 and 1, 3 in two chains per row and token
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          part[m % 2][r][t] = dpbf16(m < 2 ? _mm512_setzero_ps() : part[m % 2][r][t], words, x_pairs[t]);
        continue;
      }
      const __m512 w_low = _mm512_castsi512_ps(_mm512_slli_epi32(words, 16));
      const __m512 w_high = _mm512_castsi512_ps(_mm512_and_si512(words, high_words));
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {  // two FMA chains per row and token
        const __m512 xl = kPreload ? x_low[t] : _mm512_loadu_ps(x + t * k + 16 * m);
        const __m512 xh = kPreload ? x_high[t] : _mm512_loadu_ps(x + t * k + 16 * (4 + m));
        part[0][r][t] = m == 0 ? _mm512_mul_ps(w_low, xl) : _mm512_fmadd_ps(w_low, xl, part[0][r][t]);
        part[1][r][t] = m == 0 ? _mm512_mul_ps(w_high, xh) : _mm512_fmadd_ps(w_high, xh, part[1][r][t]);
      }
    }
  }

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const uint8_t* rows[R];
    const float* scales[R];
    const float* zeros[R];
    const int64_t groups = a.k / G;
    ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      rows[r] = reinterpret_cast<const uint8_t*>(a.w + (r0 + r) * a.row_bytes);
      scales[r] = a.wscale + (r0 + r) * groups;
      zeros[r] = kZeros ? a.wzero + (r0 + r) * groups : nullptr;
    }
    __m512 acc[R][T];
    zero(acc);
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    const int64_t blocks = a.k / 128;
    // Hot loop: 128 elements (64 bytes) of R rows per step.
    for (int64_t b = 0; b < blocks; ++b) {
      prefetch.at(b * 64);
      __m512i v[R], table[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        v[r] = _mm512_loadu_si512(rows[r] + b * 64);
        if constexpr (kWordZeros) {
          table[r] = index_offsets(zeros[r] + b * kGroupsPerBlock);
        } else if constexpr (kZeros) {
          table[r] = _mm512_permutexvar_epi16(
              _mm512_add_epi16(_mm512_load_si512(kI4Tables.low4), index_offsets(zeros[r] + b)),
              _mm512_load_si512(kI4Tables.shifted));
        } else {
          table[r] = _mm512_load_si512(kI4Tables.symmetric);
        }
      }
      __m512 part[2][R][T];
      const float* x = a.xf_permuted + b * 128;
      const uint16_t* xb = kBf16 ? a.xbf16_pairs + b * 128 : nullptr;
      lookup_step<0>(x, xb, a.k, v, table, part);
      lookup_step<1>(x, xb, a.k, v, table, part);
      lookup_step<2>(x, xb, a.k, v, table, part);
      lookup_step<3>(x, xb, a.k, v, table, part);
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const __m512 s = per_lane(scales[r] + b * kGroupsPerBlock);
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(_mm512_add_ps(part[0][r][t], part[1][r][t]), s, acc[r][t]);
      }
    }
    if constexpr (G < 128) {
      // The k % 128 tail: whole groups of 32 or 64, 32 elements at a time in the pairs order.
      const __m512i low4 = _mm512_set1_epi32(0x0F), magic = _mm512_set1_epi32(0x4B000000);
      for (int64_t g = blocks * 128 / G; g < groups; ++g) {
        __m512 offset[R], even_sum[R][T], odd_sum[R][T];
        ANVIL_UNROLL for (int r = 0; r < R; ++r) offset[r] = _mm512_set1_ps(kMagic + (kZeros ? zeros[r][g] : kImplicitZero));
        ANVIL_UNROLL for (int c = 0; c < G / 32; ++c) {
          const int64_t elem = g * G + c * 32;
          ANVIL_UNROLL for (int r = 0; r < R; ++r) {
            const __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(rows[r] + elem / 2)));
            const __m512 even = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_ternarylogic_epi32(d, low4, magic, 0xEA)), offset[r]);
            const __m512 odd = _mm512_sub_ps(_mm512_castsi512_ps(_mm512_or_si512(_mm512_srli_epi32(d, 4), magic)), offset[r]);
            ANVIL_UNROLL for (int t = 0; t < T; ++t) {
              const float* x = a.xf_permuted + t * a.k + elem;
              if (c == 0) {
                even_sum[r][t] = _mm512_mul_ps(even, _mm512_loadu_ps(x));
                odd_sum[r][t] = _mm512_mul_ps(odd, _mm512_loadu_ps(x + 16));
              } else {
                even_sum[r][t] = _mm512_fmadd_ps(even, _mm512_loadu_ps(x), even_sum[r][t]);
                odd_sum[r][t] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(x + 16), odd_sum[r][t]);
              }
            }
          }
        }
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const __m512 s = _mm512_set1_ps(scales[r][g]);
          ANVIL_UNROLL for (int t = 0; t < T; ++t)
            acc[r][t] = _mm512_fmadd_ps(_mm512_add_ps(even_sum[r][t], odd_sum[r][t]), s, acc[r][t]);
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// Each kernel here has its own K::rows_per_pass; gemv_rows.inc's file-wide default is never used.
template <int T>
constexpr int rows_per_pass();
#include "compute/cpu/gemv_rows.inc"

template <bool kZeros, bool kBf16>
void i4_rows_for_zeros(const GemvArgs& a) {
  switch (a.wgroup) {
    case 32: rows<I4Kernel<32, kZeros, kBf16>>(a); break;
    case 64: rows<I4Kernel<64, kZeros, kBf16>>(a); break;
    case 128: rows<I4Kernel<128, kZeros, kBf16>>(a); break;
    default: scalar_kernel(DType::I4)(a); break;  // not a layout check_quant_scale_layout accepts
  }
}

template <bool kBf16>
void i4_rows(const GemvArgs& a) {
  if (a.wzero != nullptr) {
    i4_rows_for_zeros<true, kBf16>(a);
  } else {
    i4_rows_for_zeros<false, kBf16>(a);
  }
}

}  // namespace

GemvKernel avx512_scaled_kernel(DType dtype, bool vnni, bool vbmi, bool bf16) {
  switch (dtype) {
    // Without VBMI the AVX2 kernel runs (GemvActivations' F8 order is for this kernel only).
    case DType::F8_E4M3:
      if (!vbmi) return nullptr;
      return bf16 ? rows<F8Kernel<true>> : rows<F8Kernel<false>>;
    // Without VNNI the flipped codes (up to 255) would saturate maddubs: the AVX2 kernel runs.
    case DType::I8: return vnni ? rows<I8VnniKernel> : nullptr;
    case DType::I4: return bf16 ? i4_rows<true> : i4_rows<false>;
    default: return nullptr;
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
