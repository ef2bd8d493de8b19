// AVX2 decode kernels for the 4-row panel layouts Q8_0_R4 / Q4_0_R4 / Q4_K_R4 (quant/ggml_panels.h):
// the layout the AVX-512 kernels stream, read as two 32-byte halves per 64-byte code vector.
//
// Why panels on AVX2 too: the row kernels (gemv_avx2.cpp) convert, scale and accumulate every
// 32-weight block of every row in floats and read four strided streams per pass; in panels a
// 32-byte half vector holds 4 codes of each of 8 blocks in its int32 lanes, so 8 blocks share one
// conversion and one FMA, and a pass reads one sequential stream.
#if defined(__x86_64__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "compute/cpu/gemv_kernels.h"
#include "core/dtype.h"

// Compiled for AVX2; only called after active_isa() said so. Intrinsics and local helpers only.
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
// GCC 12 flags the intrinsics' own _mm*_undefined_*() placeholders as uninitialized.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace anvil::gemv_detail {
namespace {

#define ANVIL_UNROLL _Pragma("GCC unroll 8")

enum class PanelType { Q8_0, Q4_0, Q4_K };

inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

#include "compute/cpu/arch/x86/gemv_avx2_helpers.inc"  // rows_per_pass, hsum

// One pass reads R rows of a panel, superblock by superblock, each superblock as two halves of 8
// blocks (Q4_K: each half one Q4_K block of 8 sub-blocks): per token an int32 dot per block lane,
// one conversion and one FMA with the 8 blocks' weight x activation scales.
template <PanelType kType>
struct PanelKernel {
  static constexpr bool kQ8 = kType == PanelType::Q8_0;
  static constexpr bool kQ4K = kType == PanelType::Q4_K;
  static constexpr int64_t kCodeBytes = kQ8 ? 32 : 16;  // per block (Q4_K: per sub-block)
  static constexpr int kVectors = kQ8 ? 8 : 4;          // code vectors per row and superblock
  // Bytes fetched ahead of the pass: a panel is one sequential stream, so past its end the
  // prefetches run on into the next panel (the next pass).
  static constexpr int64_t kAheadBytes = 1024;

  // R x T int16/int32 partial sums and R x T accumulators within 16 ymm registers.
  template <int T>
  static constexpr int rows_per_pass() {
    return gemv_detail::rows_per_pass<T>();
  }

  // Half h of one row's superblock (codes and xq already offset to it): per token, the exact
  // int32 dot of each of its 8 blocks (Q4_0: of the unsigned codes; the bias lanes finish it).
  template <int T>
  static inline void dot_half(const std::byte* codes, int64_t vector_stride, const int8_t* const (&xq)[T],
                              __m256i (&dot)[T]) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (kQ8) {
      // Stored q + 128; maddubs needs an unsigned operand below 2^15 / 254, so llama.cpp's sign
      // trick on the signed code: |q| (-128 reads as 128 unsigned) times x with q's sign.
      ANVIL_UNROLL for (int t = 0; t < T; ++t) dot[t] = _mm256_setzero_si256();
      ANVIL_UNROLL for (int v = 0; v < 8; ++v) {
        const __m256i q = _mm256_xor_si256(load256(codes + v * vector_stride), _mm256_set1_epi8(-128));
        const __m256i magnitude = _mm256_sign_epi8(q, q);
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          const __m256i x = _mm256_sign_epi8(load256(xq[t] + 64 * v), q);
          dot[t] = _mm256_add_epi32(dot[t], _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, x), ones));
        }
      }
    } else {
      // 4-bit codes: a maddubs pair is at most 2 x 15 x 127 = 3810, so the 8 pairs of a lane's
      // element pair sum in int16 (30480) and widen once.
      const __m256i low4 = _mm256_set1_epi8(0x0F);
      __m256i pairs[T];
      ANVIL_UNROLL for (int t = 0; t < T; ++t) pairs[t] = _mm256_setzero_si256();
      ANVIL_UNROLL for (int v = 0; v < 4; ++v) {
        const __m256i b = load256(codes + v * vector_stride);
        const __m256i low = _mm256_and_si256(b, low4);                          // elements 4v..4v+3
        const __m256i high = _mm256_and_si256(_mm256_srli_epi16(b, 4), low4);  // elements 16+4v..
        ANVIL_UNROLL for (int t = 0; t < T; ++t) {
          const __m256i p = _mm256_add_epi16(_mm256_maddubs_epi16(low, load256(xq[t] + 64 * v)),
                                             _mm256_maddubs_epi16(high, load256(xq[t] + 64 * (v + 4))));
          pairs[t] = _mm256_add_epi16(pairs[t], p);
        }
      }
      ANVIL_UNROLL for (int t = 0; t < T; ++t) dot[t] = _mm256_madd_epi16(pairs[t], ones);
    }
  }

  // Q4_K: the two heads of a superblock (blocks 2s and 2s+1, 16 bytes each: fp16 d, fp16 dmin,
  // 12 bytes b0..b11 of 6-bit scales and mins), one per 128-bit lane, unpacked in registers into
  // sc0..7 (bytes 0..7) and m0..7 (bytes 8..15) per lane, as the AVX-512 kernel does:
  //   sc0..3 = b0..3 & 63, m0..3 = b4..7 & 63,
  //   sc4..7 = (b8..11 & 15) | (b0..3 >> 6) << 4, m4..7 = (b8..11 >> 4) | (b4..7 >> 6) << 4.
  static inline __m256i q4k_scales_and_mins(__m256i h) {
    const __m256i low_src = _mm256_shuffle_epi8(
        h, _mm256_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15, 4, 5, 6, 7, 12, 13, 14, 15, 8, 9,
                            10, 11, 12, 13, 14, 15));
    const __m256i high_src = _mm256_shuffle_epi8(
        h, _mm256_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11, -1, -1, -1, -1, 4, 5, 6, 7, -1, -1,
                            -1, -1, 8, 9, 10, 11));
    // Bytes 12..15 of each lane (m4..7's low bits) take the high nibbles of b8..11.
    const __m256i upper = _mm256_setr_epi32(0, 0, 0, -1, 0, 0, 0, -1);
    const __m256i nibbles = _mm256_blendv_epi8(low_src, _mm256_srli_epi16(low_src, 4), upper);
    const __m256i low = _mm256_and_si256(
        nibbles, _mm256_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 15, 15,
                                  15, 15, 63, 63, 63, 63, 15, 15, 15, 15));
    const __m256i high = _mm256_and_si256(_mm256_srli_epi16(high_src, 2), _mm256_set1_epi8(0x30));
    return _mm256_or_si256(low, high);
  }

  // Half h's per-lane weight scales (Q8_0/Q4_0: 8 fp16 d; Q4_K: d x each sub-block's 6-bit
  // scale, from `unpacked`, q4k_scales_and_mins of the heads) and, for Q4_K, mins (dmin x the
  // 6-bit min).
  static inline void half_scales(const std::byte* scales, __m256i unpacked, int h, __m256& wscale, __m256& wmin) {
    if constexpr (kQ4K) {
      const std::byte* head = scales + 16 * h;
      uint16_t d, dmin;
      std::memcpy(&d, head, 2);
      std::memcpy(&dmin, head + 2, 2);
      const __m128i bytes = h == 0 ? _mm256_castsi256_si128(unpacked) : _mm256_extracti128_si256(unpacked, 1);
      wscale = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(bytes)), _mm256_set1_ps(_cvtsh_ss(d)));
      wmin = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(bytes, 8))),
                           _mm256_set1_ps(_cvtsh_ss(dmin)));
    } else {
      (void)unpacked;
      wscale = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(scales + 16 * h)));
      wmin = _mm256_setzero_ps();
    }
  }

  // Rows [i0, i0 + R) of panel `panel` (which holds nr rows), T tokens.
  template <int R, int T>
  static void pass(const GemvArgs& a, int64_t panel, int64_t i0, int64_t nr) {
    const int64_t blocks = a.k / kBlock, superblocks = panel_superblocks(a.k);
    const int64_t q_stride = superblocks * 512, lane_stride = superblocks * 16;
    const std::byte* base = a.w + panel * 4 * blocks * (kCodeBytes + 2);
    __m256 acc[R][T];
    ANVIL_UNROLL for (int r = 0; r < R; ++r) ANVIL_UNROLL for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    for (int64_t s = 0; s < superblocks; ++s) {
      const int64_t nb = blocks - 16 * s < 16 ? blocks - 16 * s : 16;
      const std::byte* step = base + s * nr * 16 * (kCodeBytes + 2);
      const int64_t step_bytes = nr * nb * (kCodeBytes + 2);
      for (int64_t line = 0; line < step_bytes; line += 64) __builtin_prefetch(step + kAheadBytes + line, 0, 3);
      const int halves = nb > 8 ? 2 : 1;
      ANVIL_UNROLL for (int r = 0; r < R; ++r) {
        const std::byte* codes = step + (i0 + r) * nb * kCodeBytes;
        const std::byte* scales = step + nr * nb * kCodeBytes + (i0 + r) * nb * 2;
        int64_t vector_stride = 4 * nb;
        // The last superblock of a row whose blocks are not a multiple of 16: its codes and scales
        // copied into a zero-padded full-size superblock (zero codes and zero scales add nothing).
        alignas(32) std::byte padded_codes[kVectors * 64];
        alignas(32) std::byte padded_scales[32];
        if (nb < 16) {
          std::memset(padded_codes, kQ8 ? 0x80 : 0, sizeof padded_codes);  // Q8_0 stores q + 128
          std::memset(padded_scales, 0, sizeof padded_scales);
          for (int v = 0; v < kVectors; ++v) std::memcpy(padded_codes + 64 * v, codes + v * vector_stride, 4 * nb);
          std::memcpy(padded_scales, scales, 2 * nb);
          codes = padded_codes;
          scales = padded_scales;
          vector_stride = 64;
        }
        // Both Q4_K heads (padded_scales holds 32 bytes where the superblock has one block).
        const __m256i unpacked =
            kQ4K ? q4k_scales_and_mins(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales))) : __m256i{};
        for (int h = 0; h < halves; ++h) {
          const int8_t* xq[T];
          ANVIL_UNROLL for (int t = 0; t < T; ++t) xq[t] = a.xq_panel + t * q_stride + s * 512 + 32 * h;
          __m256i dot[T];
          dot_half<T>(codes + 32 * h, vector_stride, xq, dot);
          __m256 wscale, wmin;
          half_scales(scales, unpacked, h, wscale, wmin);
          ANVIL_UNROLL for (int t = 0; t < T; ++t) {
            const int64_t lane = t * lane_stride + s * 16 + 8 * h;
            __m256i sum = dot[t];
            if constexpr (kType == PanelType::Q4_0)
              sum = _mm256_add_epi32(sum, load256(a.xbias_panel + lane));  // the offset 8
            const __m256 scale = _mm256_mul_ps(wscale, _mm256_loadu_ps(a.xscale_panel + lane));
            acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale, acc[r][t]);
            if constexpr (kQ4K) acc[r][t] = _mm256_fmadd_ps(wmin, _mm256_loadu_ps(a.xmin_panel + lane), acc[r][t]);
          }
        }
      }
    }
    ANVIL_UNROLL for (int t = 0; t < T; ++t) ANVIL_UNROLL for (int r = 0; r < R; ++r)
      a.y[t * a.y_stride + panel * 4 + i0 + r] = hsum(acc[r][t]);
  }
};

#include "compute/cpu/gemv_panel_rows.inc"

}  // namespace

GemvKernel avx2_panel_kernel(DType dtype) {
  switch (dtype) {
    case DType::Q8_0_R4: return panel_rows<PanelKernel<PanelType::Q8_0>>;
    case DType::Q4_0_R4: return panel_rows<PanelKernel<PanelType::Q4_0>>;
    case DType::Q4_K_R4: return panel_rows<PanelKernel<PanelType::Q4_K>>;
    default: return nullptr;
  }
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options


// ---------------------------------------------------------------------------------------------
// Panel row -> f32 for prefill on CPUs without AVX-512 BF16 (onednn_weight_row_to_bf16's
// fallback): the generic panel_row_to_f32 takes ~3x the time of the GGML rows' dequantizers for
// Q8_0 and Q4_K (PERFORMANCE.md, "AVX2-only CPUs"). Two
// 4-byte lanes (two blocks' codes) per step; the values are panel_row_to_f32's bit for bit.
#pragma GCC push_options
#pragma GCC target("avx2,f16c")  // no FMA: a multiply then a subtract, as the scalar code rounds

namespace anvil::gemv_detail {
namespace {

inline __m256 two_lane_splat(float a, float b) { return _mm256_setr_m128(_mm_set1_ps(a), _mm_set1_ps(b)); }

// Lane 0 of v to dst0, lane 1 to dst1 (4 floats each).
inline void store_lanes(__m256 v, float* dst0, float* dst1) {
  _mm_storeu_ps(dst0, _mm256_castps256_ps128(v));
  _mm_storeu_ps(dst1, _mm256_extractf128_ps(v, 1));
}

// 8 code bytes (lane j, lane j + 1) as int32: Q8_0 signed (stored q + 128), Q4_0/Q4_K nibbles.
inline __m256i q8_lanes(const uint8_t* p) {
  return _mm256_cvtepi8_epi32(_mm_xor_si128(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), _mm_set1_epi8(-128)));
}

void q80_q40_row(bool q8, const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst) {
  const int64_t code_bytes = q8 ? 32 : 16, block_bytes = code_bytes + 2, blocks = k / kBlock;
  const int64_t panel = row / 4, i = row % 4, nr = rows - panel * 4 < 4 ? rows - panel * 4 : 4;
  const std::byte* base = data + panel * 4 * blocks * block_bytes;
  for (int64_t s = 0; s * 16 < blocks; ++s) {
    const int64_t nb = blocks - 16 * s < 16 ? blocks - 16 * s : 16;
    const std::byte* step = base + s * nr * 16 * block_bytes;
    const auto* codes = reinterpret_cast<const uint8_t*>(step + i * nb * code_bytes);
    const std::byte* scales = step + nr * nb * code_bytes + i * nb * 2;
    float d[16];
    for (int64_t j = 0; j < nb; ++j) {
      uint16_t h;
      std::memcpy(&h, scales + 2 * j, 2);
      d[j] = fp16_to_float(h);
    }
    float* y = dst + s * 16 * kBlock;
    for (int64_t j = 0; j < nb; j += 2) {
      const bool pair = j + 1 < nb;
      const __m256 dd = two_lane_splat(d[j], pair ? d[j + 1] : 0.0f);
      float* y0 = y + kBlock * j;
      alignas(16) float spill[kBlock];  // lane 1 of a lone last block: written, never read
      float* y1 = pair ? y0 + kBlock : spill;
      for (int64_t v = 0; v < code_bytes / 4; ++v) {
        const uint8_t* lanes = codes + v * 4 * nb + 4 * j;
        uint8_t tail[8] = {};
        if (!pair) std::memcpy(tail, lanes, 4), lanes = tail;
        if (q8) {
          store_lanes(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(q8_lanes(lanes))), y0 + 4 * v, y1 + 4 * v);
        } else {
          const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(lanes));
          const __m256i eight = _mm256_set1_epi32(8);
          const __m256i low = _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_and_si128(b, _mm_set1_epi8(0x0F))), eight);
          const __m256i high =
              _mm256_sub_epi32(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F))), eight);
          store_lanes(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(low)), y0 + 4 * v, y1 + 4 * v);
          store_lanes(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(high)), y0 + 16 + 4 * v, y1 + 16 + 4 * v);
        }
      }
    }
  }
}

void q4k_row(const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst) {
  constexpr int64_t kQ4KBlockBytes = 144, kQ4KElems = 256;
  const int64_t blocks = k / kQ4KElems;
  const int64_t panel = row / 4, i = row % 4, nr = rows - panel * 4 < 4 ? rows - panel * 4 : 4;
  const std::byte* base = data + panel * 4 * blocks * kQ4KBlockBytes;
  for (int64_t s = 0; s * 2 < blocks; ++s) {
    const int64_t nk = blocks - 2 * s < 2 ? blocks - 2 * s : 2, nb = 8 * nk;
    const std::byte* step = base + s * nr * 2 * kQ4KBlockBytes;
    const auto* codes = reinterpret_cast<const uint8_t*>(step + i * nb * 16);
    for (int64_t c = 0; c < nk; ++c) {
      const std::byte* head = step + nr * nb * 16 + (i * nk + c) * 16;
      uint16_t h[2];
      std::memcpy(h, head, 4);
      const float d = fp16_to_float(h[0]), dmin = fp16_to_float(h[1]);
      uint32_t packed[4];
      unpack_q4k_scales(reinterpret_cast<const uint8_t*>(head + 4), packed);
      uint8_t sc[16];
      std::memcpy(sc, packed, 16);  // 8 scales, then 8 mins
      float* y = dst + (2 * s + c) * kQ4KElems;
      for (int jj = 0; jj < 8; jj += 2) {
        // Products as dequantize_row_q4_k: (d x scale) x code - dmin x min.
        const __m256 dd = two_lane_splat(d * sc[jj], d * sc[jj + 1]);
        const __m256 mm = two_lane_splat(dmin * sc[8 + jj], dmin * sc[8 + jj + 1]);
        float* y0 = y + 32 * jj;
        for (int v = 0; v < 4; ++v) {
          const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + 4 * (8 * c + jj) + v * 4 * nb));
          const __m256i low = _mm256_cvtepu8_epi32(_mm_and_si128(b, _mm_set1_epi8(0x0F)));
          const __m256i high = _mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(b, 4), _mm_set1_epi8(0x0F)));
          store_lanes(_mm256_sub_ps(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(low)), mm), y0 + 4 * v, y0 + 32 + 4 * v);
          store_lanes(_mm256_sub_ps(_mm256_mul_ps(dd, _mm256_cvtepi32_ps(high)), mm), y0 + 16 + 4 * v, y0 + 48 + 4 * v);
        }
      }
    }
  }
}

}  // namespace

void avx2_panel_row_to_f32(DType dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst) {
  if (dtype == DType::Q4_K_R4) return q4k_row(data, rows, k, row, dst);
  q80_q40_row(dtype == DType::Q8_0_R4, data, rows, k, row, dst);
}

}  // namespace anvil::gemv_detail

#pragma GCC pop_options

#endif  // __x86_64__
