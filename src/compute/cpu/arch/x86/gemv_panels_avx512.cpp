// AVX-512 decode kernels for the 4-row panel layouts Q8_0_R4 / Q4_0_R4 / Q4_K_R4 (quant/ggml_panels.h).
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

#include "compute/cpu/arch/x86/dot_u8s8_avx512.inc"  // exact for Q4_0 codes <= 15 without VNNI

enum class PanelType { Q8_0, Q4_0, Q4_K };

// One pass reads R rows of a panel, superblock by superblock: per row the 8 code vectors of x's
// panel order (see GemvActivations), then per token 8 dot products into one int32 lane per block,
// one conversion, and one FMA with the 16 blocks' weight x activation scales (Q4_K: one more FMA
// for its sub-blocks' mins).
template <PanelType kType, bool kVnni>
struct PanelKernel {
  static constexpr bool kQ8 = kType == PanelType::Q8_0;
  static constexpr bool kQ4K = kType == PanelType::Q4_K;
  static constexpr int64_t kCodeBytes = kQ8 ? 32 : 16;  // per block (Q4_K: per sub-block)
  // Per block: codes and fp16 scale (Q4_K: a 144-byte block is 8 sub-blocks of 18).
  static constexpr int64_t kBlockBytes = kCodeBytes + 2;
  // Bytes fetched ahead of the pass: a panel is one sequential stream, so past its end the
  // prefetches run on into the next panel (the next pass).
  static constexpr int64_t kAheadBytes = 1024;

  // 8 code vectors + R x T accumulators within 32 registers.
  template <int T>
  static constexpr int rows_per_pass() {
    return T <= 3 ? 4 : 2;
  }

  // Row i's codes of one superblock as the 8 vectors that meet x vectors 0..7.
  static inline void load_codes(const std::byte* codes, int64_t vector_stride, __mmask16 lanes, bool full,
                                __m512i (&u)[8]) {
    if constexpr (kQ8) {
      ANVIL_UNROLL for (int w = 0; w < 8; ++w) u[w] = full ? _mm512_loadu_si512(codes + w * vector_stride)
                                                           : _mm512_maskz_loadu_epi32(lanes, codes + w * vector_stride);
    } else {
      const __m512i low4 = _mm512_set1_epi8(0x0F);
      ANVIL_UNROLL for (int v = 0; v < 4; ++v) {
        const __m512i b = full ? _mm512_loadu_si512(codes + v * vector_stride)
                               : _mm512_maskz_loadu_epi32(lanes, codes + v * vector_stride);
        u[v] = _mm512_and_si512(b, low4);                          // elements 4v..4v+3
        u[v + 4] = _mm512_and_si512(_mm512_srli_epi16(b, 4), low4);  // elements 16+4v..
      }
    }
  }

  // A row's per-lane weight scales of one superblock (Q8_0/Q4_0: its 16 fp16 d; Q4_K: d x the
  // 6-bit scale of each sub-block) and, for Q4_K, its mins (dmin x the 6-bit min).
  static inline void load_scales(const std::byte* scales, __mmask16 lanes, bool full, __m512& wscale,
                                 __m512& wmin) {
    if constexpr (kQ4K) {
      // The heads of Q4_K blocks 2s and 2s+1 (the second absent, read as zeros, in a half
      // superblock), one per 128-bit lane: fp16 d, fp16 dmin, 12 bytes b0..b11 of 6-bit scales
      // and mins (bytes 4..15). Unpacked in registers into sc0..7, m0..7 per lane:
      //   sc0..3 = b0..3 & 63, m0..3 = b4..7 & 63,
      //   sc4..7 = (b8..11 & 15) | (b0..3 >> 6) << 4, m4..7 = (b8..11 >> 4) | (b4..7 >> 6) << 4.
      const __m256i h = full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales))
                             : _mm256_zextsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales)));
      const __m256i low_src = _mm256_shuffle_epi8(
          h, _mm256_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7, 12, 13, 14, 15, 8, 9,
                              10, 11, 12, 13, 14, 15));
      const __m256i high_src = _mm256_shuffle_epi8(
          h, _mm256_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11, -1, -1, -1, -1, 4, 5, 6, 7, -1, -1,
                              -1, -1, 8, 9, 10, 11));
      const __m256i nibbles = _mm256_mask_blend_epi8(0xF000F000u, low_src, _mm256_srli_epi16(low_src, 4));
      const __m256i low = _mm256_and_si256(
          nibbles, _mm256_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15,
                                    15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
      const __m256i high = _mm256_and_si256(_mm256_srli_epi16(high_src, 2), _mm256_set1_epi8(0x30));
      // Both blocks' scales in the low 16 bytes, their mins in the high 16.
      const __m256i sm = _mm256_permute4x64_epi64(_mm256_or_si256(low, high), 0xD8);
      const __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(sm)));
      const __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(sm, 1)));
      // d (words 0, 8) and dmin (words 1, 9) of the two blocks, each over its 8 sub-block lanes.
      const __m256i d_words = _mm256_setr_epi16(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8);
      wscale = _mm512_mul_ps(sc, _mm512_cvtph_ps(_mm256_permutexvar_epi16(d_words, h)));
      wmin = _mm512_mul_ps(mn, _mm512_cvtph_ps(_mm256_permutexvar_epi16(_mm256_add_epi16(d_words, _mm256_set1_epi16(1)), h)));
    } else {
      const auto* d = reinterpret_cast<const uint16_t*>(scales);
      wscale = _mm512_cvtph_ps(full ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(d))
                                    : _mm256_maskz_loadu_epi16(lanes, d));
      wmin = _mm512_setzero_ps();
    }
  }

  // Rows [i0, i0 + R) of panel `panel` (which holds nr rows), T tokens.
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t panel, int64_t i0, int64_t nr) {
    const int64_t blocks = a.k / kBlock, superblocks = panel_superblocks(a.k);
    const int64_t q_stride = superblocks * 512, lane_stride = superblocks * 16;
    const std::byte* base = a.w + panel * 4 * blocks * kBlockBytes;
    __m512 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm512_setzero_ps();
    for (int64_t s = 0; s < superblocks; ++s) {
      const int64_t nb = blocks - 16 * s < 16 ? blocks - 16 * s : 16;
      const bool full = nb == 16;
      const __mmask16 lanes = static_cast<__mmask16>((1u << nb) - 1);
      const std::byte* step = base + s * nr * 16 * kBlockBytes;
      const int64_t step_bytes = nr * nb * kBlockBytes, vector_stride = 4 * nb;
      for (int64_t line = 0; line < step_bytes; line += 64) __builtin_prefetch(step + kAheadBytes + line, 0, 3);
      // One token: its 8 activation vectors stay in registers for all R rows.
      __m512i x1[8], bias1;
      __m512 xscale1, xmin1;
      if constexpr (T == 1) {
        ANVIL_UNROLL for (int w = 0; w < 8; ++w) x1[w] = _mm512_loadu_si512(a.xq_panel + s * 512 + 64 * w);
        bias1 = kQ4K ? _mm512_setzero_si512() : _mm512_loadu_si512(a.xbias_panel + s * 16);
        xscale1 = _mm512_loadu_ps(a.xscale_panel + s * 16);
        if constexpr (kQ4K) xmin1 = _mm512_loadu_ps(a.xmin_panel + s * 16);
      }
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        __m512i u[8];
        load_codes(step + (i0 + r) * nb * kCodeBytes, vector_stride, lanes, full, u);
        __m512 wscale, wmin;
        load_scales(step + nr * nb * kCodeBytes + (i0 + r) * nb * 2, lanes, full, wscale, wmin);
        if constexpr (T == 1) {
          __m512i even = bias1, odd = _mm512_setzero_si512();
          ANVIL_UNROLL for (int w = 0; w < 8; w += 2) {
            even = dot_u8s8<kVnni>(even, u[w], x1[w]);
            odd = dot_u8s8<kVnni>(odd, u[w + 1], x1[w + 1]);
          }
          acc[r][0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), _mm512_mul_ps(wscale, xscale1),
                                      acc[r][0]);
          if constexpr (kQ4K) acc[r][0] = _mm512_fmadd_ps(wmin, xmin1, acc[r][0]);
        } else {
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const int8_t* xq = a.xq_panel + t * q_stride + s * 512;
            const int64_t lane = t * lane_stride + s * 16;
            __m512i even = kQ4K ? _mm512_setzero_si512() : _mm512_loadu_si512(a.xbias_panel + lane);
            __m512i odd = _mm512_setzero_si512();
            ANVIL_UNROLL for (int w = 0; w < 8; w += 2) {
              even = dot_u8s8<kVnni>(even, u[w], _mm512_loadu_si512(xq + 64 * w));
              odd = dot_u8s8<kVnni>(odd, u[w + 1], _mm512_loadu_si512(xq + 64 * (w + 1)));
            }
            const __m512 scale = _mm512_mul_ps(wscale, _mm512_loadu_ps(a.xscale_panel + lane));
            acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(even, odd)), scale, acc[r][t]);
            if constexpr (kQ4K) acc[r][t] = _mm512_fmadd_ps(wmin, _mm512_loadu_ps(a.xmin_panel + lane), acc[r][t]);
          }
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + panel * 4 + i0 + r] = _mm512_reduce_add_ps(acc[r][t]);
  }
};

#include "compute/cpu/gemv_panel_rows.inc"

}  // namespace

GemvKernel avx512_panel_kernel(DType dtype, bool vnni) {
  switch (dtype) {
    case DType::Q8_0_R4: return vnni ? panel_rows<PanelKernel<PanelType::Q8_0, true>> : nullptr;
    case DType::Q4_0_R4:
      return vnni ? panel_rows<PanelKernel<PanelType::Q4_0, true>> : panel_rows<PanelKernel<PanelType::Q4_0, false>>;
    case DType::Q4_K_R4:
      return vnni ? panel_rows<PanelKernel<PanelType::Q4_K, true>> : panel_rows<PanelKernel<PanelType::Q4_K, false>>;
    default: return nullptr;
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
