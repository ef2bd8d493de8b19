// AVX-512 (F/BW/VL) gemv kernels, with VNNI dpbusd when present, and the activation quantizer.
#if defined(__x86_64__)

// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <immintrin.h>

#include <cstdint>

#include "compute/cpu/gemv_kernels.h"
#include "quant/ggml_blocks.h"

// Everything below is compiled for AVX-512; it is only called after active_isa() said so. The
// region uses intrinsics and local helpers only (no shared inline code from headers).
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")
#pragma GCC diagnostic ignored "-Wpsabi"

namespace anvil::gemv_detail {
namespace {

#define ANVIL_UNROLL _Pragma("GCC unroll 8")

// Rows decoded together per weight pass: enough to amortize the activation loads, few enough
// that R x T float accumulators fit in the 32 vector registers.
template <int T>
constexpr int rows_per_pass() {
  return T <= 3 ? 4 : 2;
}

#include "compute/cpu/arch/x86/dot_u8s8_avx512.inc"

inline uint16_t load_u16(const void* p) {
  uint16_t v;
  __builtin_memcpy(&v, p, 2);
  return v;
}

// Two fp16 values -> [a x 8, b x 8] as floats (the per-lane scales of two 32-element blocks):
// two broadcasts (the second masked to the upper half) and one conversion.
inline __m512 half_pair_lanes(uint16_t a, uint16_t b) {
  const __m256i both = _mm256_mask_set1_epi16(_mm256_set1_epi16(static_cast<short>(a)), 0xFF00, static_cast<short>(b));
  return _mm512_cvtph_ps(both);
}

// ---------------------------------------------------------------------------------------------
// Float weights: 16 columns per step, exact f32 FMAs against the f32 activations.

struct LoadF32 {
  static constexpr const float* kElem = nullptr;
  static __m512 load(const std::byte* row, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i); }
  static __m512 load_tail(const std::byte* row, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(row) + i);
  }
};
struct LoadF16 {
  static constexpr const uint16_t* kElem = nullptr;
  static __m512 load(const std::byte* row, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(row) + i)));
  }
  static __m512 load_tail(const std::byte* row, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i));
  }
};
// bf16 is the top half of an f32: widening and shifting is exact and free at memory speed,
// so BF16 weights keep f32 activations (no avx512_bf16 rounding of x).
struct LoadBF16 {
  static constexpr const uint16_t* kElem = nullptr;
  static __m512 load(const std::byte* row, int64_t i) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(reinterpret_cast<const uint16_t*>(row) + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  static __m512 load_tail(const std::byte* row, int64_t i, __mmask16 m) {
    const __m256i h = _mm256_maskz_loadu_epi16(m, reinterpret_cast<const uint16_t*>(row) + i);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
};

template <class Load>
struct FloatKernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const std::byte* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = a.w + (r0 + r) * a.row_bytes;
    __m512 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    const RowPrefetcher<R> prefetch(rows[0], a.row_bytes);
    constexpr int64_t kElemBytes = sizeof(*Load::kElem);
    int64_t i = 0;
    // Hot loop: 16 columns of R rows, each weight vector used by all T tokens.
    for (; i + 16 <= a.k; i += 16) {
      if (i * kElemBytes % 64 == 0) prefetch.at(i * kElemBytes);
      __m512 w[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) w[r] = Load::load(rows[r], i);
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        const __m512 x = _mm512_loadu_ps(a.xf + t * a.k + i);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
      }
    }
    if (i < a.k) {  // k % 16 columns, masked
      const __mmask16 m = static_cast<__mmask16>((1u << (a.k - i)) - 1);
      __m512 w[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) w[r] = Load::load_tail(rows[r], i, m);
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        const __m512 x = _mm512_maskz_loadu_ps(m, a.xf + t * a.k + i);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) acc[r][t] = _mm512_fmadd_ps(w[r], x, acc[r][t]);
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

// ---------------------------------------------------------------------------------------------
// Quantized weights. Every kernel turns 64 weights into 64 unsigned codes u (one zmm) and 16
// per-lane float scales, then per token: int32 lanes = bias + dot(u, xq) (exact), scaled and
// accumulated in f32: acc += float(lanes) * (weight scale * activation scale).

// Activation vectors of token t for the 64 elements starting at `elem`.
struct TokenChunk {
  __m512i q;
  __m512i bias;
  __m512 scale;
};
inline TokenChunk token_chunk(const GemvArgs& a, int t, int64_t elem) {
  const int64_t lane = elem / kBlock * kLanesPerBlock + t * (a.k / kBlock * kLanesPerBlock);
  return {_mm512_loadu_si512(a.xq + t * a.k + elem), _mm512_loadu_si512(a.xbias + lane), _mm512_loadu_ps(a.xscale + lane)};
}
// The same for the last 32 elements of an odd block count: upper lanes zero.
inline TokenChunk token_half_chunk(const GemvArgs& a, int t, int64_t elem) {
  const int64_t lane = elem / kBlock * kLanesPerBlock + t * (a.k / kBlock * kLanesPerBlock);
  return {_mm512_maskz_loadu_epi8(0xFFFFFFFFull, a.xq + t * a.k + elem), _mm512_maskz_loadu_epi32(0x00FF, a.xbias + lane),
          _mm512_maskz_loadu_ps(0x00FF, a.xscale + lane)};
}

// Q8_0 and Q4_0 take four blocks at a time in GemvActivations' grouped layout instead: the codes
// of elements 0..15 and 16..31 of four blocks as two vectors whose dot products land in the same
// 4 int32 lanes per block, so each 128 weights cost one conversion and one scaling per row and
// token (half of the above), and the four fp16 scales come from one word permute of a vector the
// codes were gathered from (not four scalar loads and broadcasts). ~1.75x the pair loop in cache.

// acc[r][t] += chunk(u[r], token t) for R rows.
template <bool kVnni, int R, int T, bool kHalf = false>
inline void accumulate_chunk(const GemvArgs& a, int64_t elem, const __m512i (&u)[R], const __m512 (&sw)[R],
                             __m512 (&acc)[R][T]) {
  ANVIL_UNROLL for (int t = 0; t < T; ++t) {
    const TokenChunk x = kHalf ? token_half_chunk(a, t, elem) : token_chunk(a, t, elem);
    ANVIL_UNROLL for (int r = 0; r < R; ++r) {
      const __m512 lanes = _mm512_cvtepi32_ps(dot_u8s8<kVnni>(x.bias, u[r], x.q));
      acc[r][t] = _mm512_fmadd_ps(lanes, _mm512_mul_ps(sw[r], x.scale), acc[r][t]);
    }
  }
}

template <int R, int T>
inline void store_sums(const GemvArgs& a, int64_t r0, __m512 (&acc)[R][T]) {
  ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
    a.y[t * a.y_stride + r0 + r] = _mm512_reduce_add_ps(acc[r][t]);
}

template <int R, int T>
inline void zero(__m512 (&acc)[R][T]) {
  ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
}

// Q8_0: codes are the signed bytes flipped to unsigned (offset 128).
struct Q8_0Codes {
  using Block = BlockQ8_0;
  static __m512i pair(const Block* b) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs));
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1), _mm512_set1_epi8(char(0x80)));
  }
  static __m512i single(const Block* b) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs));
    return _mm512_xor_si512(_mm512_zextsi256_si512(lo), _mm512_set1_epi8(char(0x80)));
  }
  // Four blocks (136 bytes; every field 2-byte aligned) as the grouped layout of
  // GemvActivations: lo = elements 0..15 of blocks 0..3, hi = elements 16..31, and the 16 lane
  // scales (4 per block). Word w of the blocks: qs of block j are words 17j+1..17j+16, d word 17j.
  // Loads: A = bytes 0..63 (words 0..31), A8 = 8..71 (4..35), C = 56..119 (28..59),
  // B = 72..135 (36..67): never past the four blocks.
  static void group(const Block* b, __m512i& lo, __m512i& hi, __m512& scales) {
    const std::byte* p = reinterpret_cast<const std::byte*>(b);
    const __m512i A = _mm512_loadu_si512(p), A8 = _mm512_loadu_si512(p + 8), C = _mm512_loadu_si512(p + 56),
                  B = _mm512_loadu_si512(p + 72);
    // lo: j=0 words 1..8, j=1 18..25 from A; j=2 35..42, j=3 52..59 from C (index 32 + w - 28).
    const __m512i lo_idx = _mm512_set_epi16(59 + 4, 58 + 4, 57 + 4, 56 + 4, 55 + 4, 54 + 4, 53 + 4, 52 + 4, 42 + 4, 41 + 4,
                                            40 + 4, 39 + 4, 38 + 4, 37 + 4, 36 + 4, 35 + 4, 25, 24, 23, 22, 21, 20, 19, 18, 8,
                                            7, 6, 5, 4, 3, 2, 1);
    // hi: j=0 words 9..16, j=1 26..33 from A8 (w - 4); j=2 43..50, j=3 60..67 from B (32 + w - 36).
    const __m512i hi_idx = _mm512_set_epi16(67 - 4, 66 - 4, 65 - 4, 64 - 4, 63 - 4, 62 - 4, 61 - 4, 60 - 4, 50 - 4, 49 - 4,
                                            48 - 4, 47 - 4, 46 - 4, 45 - 4, 44 - 4, 43 - 4, 33 - 4, 32 - 4, 31 - 4, 30 - 4,
                                            29 - 4, 28 - 4, 27 - 4, 26 - 4, 16 - 4, 15 - 4, 14 - 4, 13 - 4, 12 - 4, 11 - 4,
                                            10 - 4, 9 - 4);
    const __m512i flip = _mm512_set1_epi8(char(0x80));
    lo = _mm512_xor_si512(_mm512_permutex2var_epi16(A, lo_idx, C), flip);
    hi = _mm512_xor_si512(_mm512_permutex2var_epi16(A8, hi_idx, B), flip);
    // d: words 0, 17 from A; 34, 51 from C (32 + w - 28 = 38, 55).
    const __m512i d_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 55, 55, 55, 55, 38, 38, 38, 38, 17,
                                           17, 17, 17, 0, 0, 0, 0);
    scales = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(A, d_idx, C)));
  }
};

// Q4_0: 16 bytes hold elements 0..15 (low nibbles) and 16..31 (high nibbles). Broadcasting each
// block's bytes to two 128-bit lanes and shifting the second by 4 gives the codes in order.
struct Q4_0Codes {
  using Block = BlockQ4_0;
  static __m512i nibbles(__m512i v) {
    const __m512i shifts = _mm512_setr_epi64(0, 0, 4, 4, 0, 0, 4, 4);
    return _mm512_and_si512(_mm512_srlv_epi64(v, shifts), _mm512_set1_epi8(0x0F));
  }
  static __m512i pair(const Block* b) {
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
    v = _mm512_mask_broadcast_i32x4(v, 0xFF00, _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)));
    return nibbles(v);
  }
  static __m512i single(const Block* b) {
    return nibbles(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs))));
  }
  // Four blocks (72 bytes) as the grouped layout of GemvActivations: the 64 qs bytes gathered
  // (block j's are words 9j+1..9j+8, d word 9j) give elements 0..15 in their low nibbles and
  // 16..31 in their high ones. Loads: A = bytes 0..63 (words 0..31), A8 = bytes 8..71 (4..35).
  static void group(const Block* b, __m512i& lo, __m512i& hi, __m512& scales) {
    const std::byte* p = reinterpret_cast<const std::byte*>(b);
    const __m512i A = _mm512_loadu_si512(p), A8 = _mm512_loadu_si512(p + 8);
    // j=0..2 from A (words 1..8, 10..17, 19..26), j=3 words 28..35 from A8 (32 + w - 4).
    const __m512i idx = _mm512_set_epi16(35 + 28, 34 + 28, 33 + 28, 32 + 28, 31 + 28, 30 + 28, 29 + 28, 28 + 28, 26, 25, 24, 23,
                                         22, 21, 20, 19, 17, 16, 15, 14, 13, 12, 11, 10, 8, 7, 6, 5, 4, 3, 2, 1);
    const __m512i v = _mm512_permutex2var_epi16(A, idx, A8);
    const __m512i mask = _mm512_set1_epi8(0x0F);
    lo = _mm512_and_si512(v, mask);
    hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), mask);
    const __m512i d_idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 27, 27, 27, 27, 18, 18, 18, 18, 9, 9,
                                           9, 9, 0, 0, 0, 0);
    scales = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi16(d_idx, A)));
  }
};

template <class Codes, bool kVnni>
struct Q32Kernel {
  using Block = typename Codes::Block;
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const Block* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const Block*>(a.w + (r0 + r) * a.row_bytes);
    __m512 acc[R][T];
    zero(acc);
    const int64_t blocks = a.k / kBlock;
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    int64_t b = 0;
    // Hot loop: four blocks (128 weights) of R rows per step in the grouped activation layout:
    // two dot products into the same int32 lanes (4 per block), one conversion and scaling.
    constexpr int64_t kStepBytes = 4 * sizeof(Block);
    const int64_t groups = blocks / 4;
    const int64_t lane_stride = groups * 16;
    for (int64_t g = 0; g < groups; ++g, b += 4) {
      ANVIL_UNROLL for (int64_t line = 0; line < kStepBytes; line += 64) prefetch.at(b * sizeof(Block) + line);
      __m512i lo[R], hi[R];
      __m512 sw[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) Codes::group(rows[r] + b, lo[r], hi[r], sw[r]);
      ANVIL_UNROLL for (int t = 0; t < T; ++t) {
        const int8_t* xq = a.xq_grouped + t * a.k + g * 128;
        const __m512i xlo = _mm512_loadu_si512(xq), xhi = _mm512_loadu_si512(xq + 64);
        const __m512i bias = _mm512_loadu_si512(a.xbias_grouped + t * lane_stride + g * 16);
        const __m512 xs = _mm512_loadu_ps(a.xscale_grouped + t * lane_stride + g * 16);
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const __m512i lanes = dot_u8s8<kVnni>(dot_u8s8<kVnni>(bias, lo[r], xlo), hi[r], xhi);
          acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(lanes), _mm512_mul_ps(sw[r], xs), acc[r][t]);
        }
      }
    }
    // Two blocks (64 weights) of R rows per step.
    for (; b + 2 <= blocks; b += 2) {
      prefetch.at(b * sizeof(Block));
      __m512i u[R];
      __m512 sw[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        u[r] = Codes::pair(rows[r] + b);
        sw[r] = half_pair_lanes(load_u16(&rows[r][b].d), load_u16(&rows[r][b + 1].d));
      }
      accumulate_chunk<kVnni, R, T>(a, b * kBlock, u, sw, acc);
    }
    if (b < blocks) {  // odd block count: one block in the low half, zeros above
      __m512i u[R];
      __m512 sw[R];
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        u[r] = Codes::single(rows[r] + b);
        sw[r] = half_pair_lanes(load_u16(&rows[r][b].d), 0);
      }
      accumulate_chunk<kVnni, R, T, true>(a, b * kBlock, u, sw, acc);
    }
    store_sums(a, r0, acc);
  }
};

// Q4_K: per super-block, 8 sub-blocks of 32 with 6-bit scales and mins. Each 32-byte run of qs
// holds two sub-blocks (low then high nibbles): broadcast it to both halves, shift the upper.
template <bool kVnni>
struct Q4KKernel {
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ4_K* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ4_K*>(a.w + (r0 + r) * a.row_bytes);
    __m512 acc[R][T];
    zero(acc);
    const int64_t supers = a.k / kQK_K;
    const int64_t min_stride = a.k / kQK_K * 16;
    const __m512i shifts = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one super-block (256 weights) of R rows per step.
    for (int64_t s = 0; s < supers; ++s) {
      for (int64_t line = 0; line < int64_t{sizeof(BlockQ4_K)}; line += 64) prefetch.at(s * sizeof(BlockQ4_K) + line);
      __m512 sm[R];  // lanes 0..7: d * scale_j, lanes 8..15: dmin * min_j
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const BlockQ4_K& blk = rows[r][s];
        uint32_t packed[4];
        unpack_q4k_scales(blk.scales, packed);
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(packed))));
        sm[r] = _mm512_mul_ps(sc, half_pair_lanes(blk.d, blk.dmin));
        // The mins times each sub-block's activation sum, in one FMA (xmin lanes 0..7 are 0).
        ANVIL_UNROLL for (int t = 0; t < T; ++t)
          acc[r][t] = _mm512_fmadd_ps(sm[r], _mm512_loadu_ps(a.xmin + t * min_stride + s * 16), acc[r][t]);
      }
      ANVIL_UNROLL for (int c = 0; c < 4; ++c) {
        const __m512i pick = _mm512_setr_epi32(2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c, 2 * c + 1, 2 * c + 1,
                                               2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1, 2 * c + 1);
        __m512i u[R];
        __m512 sw[R];
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(rows[r][s].qs + 32 * c)));
          u[r] = _mm512_and_si512(_mm512_srlv_epi64(v, shifts), _mm512_set1_epi8(0x0F));
          sw[r] = _mm512_permutexvar_ps(pick, sm[r]);
        }
        accumulate_chunk<kVnni, R, T>(a, s * kQK_K + 64 * c, u, sw, acc);
      }
    }
    store_sums(a, r0, acc);
  }
};

// Q6_K: per half (128 weights), ql[0..63] holds the low nibbles of elements 0..63 and (high
// nibbles) 64..127; qh[0..31] two bits per element for 0..31, 32..63, 64..95, 96..127.
template <bool kVnni>
struct Q6KKernel {
  static __m512i codes(const BlockQ6_K& blk, int c) {
    const int h = c / 2;
    const __m512i ql = _mm512_loadu_si512(blk.ql + 64 * h);
    const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * h)));
    if (c % 2 == 0) {  // elements 0..63: qh bits 0-1 then 2-3, moved to bits 4-5
      const __m512i high = _mm512_sllv_epi64(qh, _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2));
      return _mm512_or_si512(_mm512_and_si512(ql, _mm512_set1_epi8(0x0F)), _mm512_and_si512(high, _mm512_set1_epi8(0x30)));
    }
    // elements 64..127: qh bits 4-5 then 6-7
    const __m512i high = _mm512_srlv_epi64(qh, _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2));
    return _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), _mm512_set1_epi8(0x0F)),
                           _mm512_and_si512(high, _mm512_set1_epi8(0x30)));
  }

  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t r0) {
    const BlockQ6_K* rows[R];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) rows[r] = reinterpret_cast<const BlockQ6_K*>(a.w + (r0 + r) * a.row_bytes);
    __m512 acc[R][T];
    zero(acc);
    const int64_t supers = a.k / kQK_K;
    const RowPrefetcher<R> prefetch(a.w + r0 * a.row_bytes, a.row_bytes);
    // Hot loop: one super-block (256 weights) of R rows per step, 64 weights at a time.
    for (int64_t s = 0; s < supers; ++s) {
      for (int64_t line = 0; line < int64_t{sizeof(BlockQ6_K)}; line += 64) prefetch.at(s * sizeof(BlockQ6_K) + line);
      __m512 scales[R];  // d * scale_g for the 16 groups of 16
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const BlockQ6_K& blk = rows[r][s];
        const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk.scales))));
        scales[r] = _mm512_mul_ps(sc, _mm512_set1_ps(_cvtsh_ss(load_u16(&blk.d))));
      }
      ANVIL_UNROLL for (int c = 0; c < 4; ++c) {
        // Lane j covers elements 4j..4j+3 of the chunk, i.e. group 4c + j/4.
        const __m512i pick = _mm512_add_epi32(_mm512_set1_epi32(4 * c),
                                              _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3));
        __m512i u[R];
        __m512 sw[R];
        ANVIL_UNROLL for (int r = 0; r < R; ++r) {
          u[r] = codes(rows[r][s], c);
          sw[r] = _mm512_permutexvar_ps(pick, scales[r]);
        }
        accumulate_chunk<kVnni, R, T>(a, s * kQK_K + 64 * c, u, sw, acc);
      }
    }
    store_sums(a, r0, acc);
  }
};

#include "compute/cpu/gemv_rows.inc"

}  // namespace

GemvKernel avx512_kernel(DType dtype, bool vnni, bool vbmi, bool bf16) {
  switch (dtype) {
    case DType::F32: return rows<FloatKernel<LoadF32>>;
    case DType::F16: return rows<FloatKernel<LoadF16>>;
    case DType::BF16: return rows<FloatKernel<LoadBF16>>;
    // Q8_0's unsigned codes reach 255: maddubs would saturate, so no non-VNNI kernel (AVX2 has one).
    case DType::Q8_0: return vnni ? rows<Q32Kernel<Q8_0Codes, true>> : nullptr;
    case DType::Q4_0: return vnni ? rows<Q32Kernel<Q4_0Codes, true>> : rows<Q32Kernel<Q4_0Codes, false>>;
    case DType::Q4_K: return vnni ? rows<Q4KKernel<true>> : rows<Q4KKernel<false>>;
    case DType::Q6_K: return vnni ? rows<Q6KKernel<true>> : rows<Q6KKernel<false>>;
    case DType::Q8_0_R4:
    case DType::Q4_0_R4:
    case DType::Q4_K_R4: return avx512_panel_kernel(dtype, vnni);
    default: return avx512_scaled_kernel(dtype, vnni, vbmi, bf16);
  }
}

// Same arithmetic as quantize_activations_scalar (IEEE mul/div, round to nearest even), so the
// codes are bit-identical.
void quantize_activations_avx512(const float* x, int64_t n_blocks, int32_t offset, int8_t* q, float* scale,
                                 int32_t* bias, float* min_term) {
  const __m256i ones8 = _mm256_set1_epi8(1);
  const __m256i ones16 = _mm256_set1_epi16(1);
  for (int64_t b = 0; b < n_blocks; ++b) {
    const __m512 v0 = _mm512_loadu_ps(x + b * kBlock);
    const __m512 v1 = _mm512_loadu_ps(x + b * kBlock + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float d = amax / 127.0f;
    const __m512 inv = _mm512_set1_ps(d != 0 ? 1.0f / d : 0.0f);
    const __m128i q0 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v0, inv)));
    const __m128i q1 = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(v1, inv)));
    const __m256i codes = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + b * kBlock), codes);
    // Sums of 4 consecutive codes per lane: 1*q pairs (maddubs, no saturation), then pairs of pairs.
    const __m256i sum4 = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, codes), ones16);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(bias + b * kLanesPerBlock),
                        _mm256_mullo_epi32(sum4, _mm256_set1_epi32(-offset)));
    _mm256_storeu_ps(scale + b * kLanesPerBlock, _mm256_set1_ps(d));
    if (min_term != nullptr) {
      float* mt = min_term + b / 8 * 16;
      if (b % 8 == 0) _mm256_storeu_ps(mt, _mm256_setzero_ps());
      const int32_t block_sum = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(sum4));
      mt[8 + b % 8] = -d * static_cast<float>(block_sum);
    }
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
