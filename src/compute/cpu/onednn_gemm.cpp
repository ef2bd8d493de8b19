// oneDNN GEMM providers: per-thread blocks of W dequantized to bf16/f32, single-threaded matmuls.
#include "compute/cpu/onednn_gemm.h"

#include <immintrin.h>
#include <omp.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <oneapi/dnnl/dnnl.hpp>
#include <optional>
#include <tuple>
#include <vector>

#include "compute/cpu/matmul.h"
#include "compute/cpu/matmul_input.h"
#include "compute/cpu/onednn_engine.h"
#include "compute/cpu/onednn_int8_gemm.h"
#include "core/cpu_features.h"
#include "core/stealing_ranges.h"
#include "quant/fp8_e4m3.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_panels.h"

// GCC 12's AVX-512 intrinsic headers trip -Wmaybe-uninitialized on their own _mm512_undefined_*()
// placeholders once inlined into target-attributed functions; the warning is about the header.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;
using dt = dnnl::memory::data_type;

// ---- AMX permission ----------------------------------------------------------------------------

constexpr int kArchGetXcompPerm = 0x1022;
constexpr int kArchReqXcompPerm = 0x1023;
constexpr int kXfeatureXtiledata = 18;

AmxPermission do_request_amx_permission() {
  if (!cpu_features().amx_tile) return AmxPermission::NotPresent;
  // Asking is harmless when already granted; the GET afterwards is the verification.
  syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata);
  unsigned long bitmask = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &bitmask) != 0) return AmxPermission::Denied;
  return (bitmask & (1ul << kXfeatureXtiledata)) ? AmxPermission::Granted : AmxPermission::Denied;
}

bool debug_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("ANVIL_DEBUG");
    return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

// ---- oneDNN engine and per-thread state ---------------------------------------------------------

// Leaked on purpose: pool threads' thread_local streams may outlive static destruction order.
dnnl::engine& cpu_engine() {
  static dnnl::engine* engine = [] {
    request_amx_permission();
    return new dnnl::engine(dnnl::engine::kind::cpu, 0);
  }();
  return *engine;
}

// Grows, never shrinks: scratch is reused call after call without page faults.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }
  void* get(size_t bytes) {
    if (bytes > capacity_) {
      std::free(data_);
      capacity_ = (bytes + 4095) / 4096 * 4096;
      data_ = std::aligned_alloc(64, capacity_);
      if (data_ == nullptr) capacity_ = 0;
    }
    return data_;
  }

 private:
  void* data_ = nullptr;
  size_t capacity_ = 0;
};

struct ThreadState {
  AlignedBuffer weights;   // one block of W in the compute type
  AlignedBuffer row;       // one dequantized f32 row (generic bf16 path)
  AlignedBuffer scratchpad;
  AlignedBuffer dst;       // one (m, block) slice of y, dense
  AlignedBuffer x;         // x in bf16 (used on the calling thread only)
  std::optional<dnnl::stream> stream;
};
thread_local ThreadState t_state;

// ---- weight and activation conversion ------------------------------------------------------------

bool cpu_has_fast_bf16() { return cpu_features().avx512_bf16 || cpu_features().amx_bf16; }
bool cpu_has_avx512_core() {
  const CpuFeatures& f = cpu_features();
  return f.avx512f && f.avx512bw && f.avx512vl;
}

#define ANVIL_TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,f16c,fma")))

ANVIL_TARGET_BF16 inline void store_bf16x32(uint16_t* dst, __m512 lo, __m512 hi) {
  _mm512_storeu_si512(dst, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

ANVIL_TARGET_BF16 void f32_to_bf16_avx512(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) store_bf16x32(dst + i, _mm512_loadu_ps(src + i), _mm512_loadu_ps(src + i + 16));
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
  for (; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

ANVIL_TARGET_BF16 void f16_to_bf16_avx512(const uint16_t* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m512 lo = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
    const __m512 hi = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i + 16)));
    store_bf16x32(dst + i, lo, hi);
  }
  for (; i < n; ++i) dst[i] = float_to_bf16(fp16_to_float(src[i]));
}

ANVIL_TARGET_BF16 void q8_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ8_0*>(src);
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(blocks[b].d));
    const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blocks[b].qs));
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
    store_bf16x32(dst + b * kQK8_0, _mm512_mul_ps(d, lo), _mm512_mul_ps(d, hi));
  }
}

ANVIL_TARGET_BF16 void q4_0_to_bf16_avx512(const void* src, uint16_t* dst, int64_t n) {
  const auto* blocks = static_cast<const BlockQ4_0*>(src);
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m512i eight = _mm512_set1_epi32(8);
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    const __m512 d = _mm512_set1_ps(_cvtsh_ss(blocks[b].d));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blocks[b].qs));
    const __m128i q_lo = _mm_and_si128(q, mask), q_hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
    const __m512 lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q_lo), eight));
    const __m512 hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q_hi), eight));
    store_bf16x32(dst + b * kQK4_0, _mm512_mul_ps(d, lo), _mm512_mul_ps(d, hi));
  }
}

// Panels (quant/ggml_panels.h): per whole superblock, the row's 4 (Q4_0, Q4_K) or 2 x 4 (Q8_0)
// code vectors are transposed back into the 16 blocks' code runs (lane j of vectors 0..3 is block
// j's 16 bytes) and converted in registers as q4_0/q8_0_to_bf16_avx512 and dequantize_row_q4_k
// convert a block; a last partial superblock is rebuilt as GGML blocks and goes through those.
// out[m]'s 128-bit lane L: block 4L + m's bytes from the four vectors at `vectors`.
ANVIL_TARGET_BF16 inline void transpose_code_lanes(const std::byte* vectors, __m512i (&out)[4]) {
  __m512i c[4];
  for (int v = 0; v < 4; ++v) c[v] = _mm512_loadu_si512(vectors + 64 * v);
  const __m512i t0 = _mm512_unpacklo_epi32(c[0], c[1]), t1 = _mm512_unpackhi_epi32(c[0], c[1]);
  const __m512i t2 = _mm512_unpacklo_epi32(c[2], c[3]), t3 = _mm512_unpackhi_epi32(c[2], c[3]);
  out[0] = _mm512_unpacklo_epi64(t0, t2);
  out[1] = _mm512_unpackhi_epi64(t0, t2);
  out[2] = _mm512_unpacklo_epi64(t1, t3);
  out[3] = _mm512_unpackhi_epi64(t1, t3);
}

// 128-bit lane L of v (L a compile-time constant).
template <int L>
ANVIL_TARGET_BF16 inline __m128i lane128(__m512i v) {
  return _mm512_extracti32x4_epi32(v, L);
}

enum class PanelCodes { Q8_0, Q4_0, Q4_K };

// The 4 blocks 4L + m (m = 0..3) of a whole superblock: codes in lane L of the transposed vectors
// (Q8_0: lo = bytes 0..15, hi = bytes 16..31, unsigned), scales in `d` (16 floats; Q4_K: d x the
// sub-block's scale, with dmin x its min in `mins`).
template <int L, PanelCodes kCodes>
ANVIL_TARGET_BF16 inline void panel_lane_blocks_to_bf16(const __m512i (&lo)[4], const __m512i (&hi)[4], __m512 d,
                                                        __m512 mins, uint16_t* dst) {
  for (int m = 0; m < 4; ++m) {
    const int j = 4 * L + m;
    const __m512 scale = _mm512_permutexvar_ps(_mm512_set1_epi32(j), d);
    __m512 v0, v1;
    if constexpr (kCodes == PanelCodes::Q8_0) {
      const __m128i flip = _mm_set1_epi8(static_cast<char>(0x80));  // back to signed codes
      v0 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_xor_si128(lane128<L>(lo[m]), flip))));
      v1 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_xor_si128(lane128<L>(hi[m]), flip))));
    } else {
      const __m128i q = lane128<L>(lo[m]), mask = _mm_set1_epi8(0x0F);
      const __m512i u0 = _mm512_cvtepu8_epi32(_mm_and_si128(q, mask));
      const __m512i u1 = _mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(q, 4), mask));
      if constexpr (kCodes == PanelCodes::Q4_0) {
        const __m512i eight = _mm512_set1_epi32(8);
        v0 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(u0, eight)));
        v1 = _mm512_mul_ps(scale, _mm512_cvtepi32_ps(_mm512_sub_epi32(u1, eight)));
      } else {  // d * sc * u - dmin * m, rounded as dequantize_row_q4_k rounds it
        const __m512 min = _mm512_permutexvar_ps(_mm512_set1_epi32(j), mins);
        v0 = _mm512_sub_ps(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(u0)), min);
        v1 = _mm512_sub_ps(_mm512_mul_ps(scale, _mm512_cvtepi32_ps(u1)), min);
      }
    }
    store_bf16x32(dst + j * kQK4_0, v0, v1);
  }
}

// A whole superblock's per-block scales (and Q4_K's mins) from the row's scale bytes.
template <PanelCodes kCodes>
ANVIL_TARGET_BF16 inline void panel_superblock_scales(const std::byte* scales, __m512& d, __m512& mins) {
  if constexpr (kCodes == PanelCodes::Q4_K) {
    alignas(64) float ds[16], ms[16];
    for (int c = 0; c < 2; ++c) {  // the heads of Q4_K blocks 2s and 2s+1
      BlockQ4_K head;
      std::memcpy(&head, scales + 16 * c, 16);
      const float block_d = fp16_to_float(head.d), block_dmin = fp16_to_float(head.dmin);
      for (int jj = 0; jj < 8; ++jj) {
        uint8_t sc, m;
        unpack_scale_min_k4(jj, head.scales, &sc, &m);
        ds[8 * c + jj] = block_d * sc;
        ms[8 * c + jj] = block_dmin * m;
      }
    }
    d = _mm512_load_ps(ds);
    mins = _mm512_load_ps(ms);
  } else {
    d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(scales)));
    mins = _mm512_setzero_ps();
  }
}

template <PanelCodes kCodes>
ANVIL_TARGET_BF16 void panel_superblock_to_bf16(const std::byte* codes, const std::byte* scales, uint16_t* dst) {
  __m512i lo[4], hi[4];
  transpose_code_lanes(codes, lo);
  if constexpr (kCodes == PanelCodes::Q8_0) transpose_code_lanes(codes + 256, hi);  // vectors 4..7: bytes 16..31
  __m512 d, mins;
  panel_superblock_scales<kCodes>(scales, d, mins);
  panel_lane_blocks_to_bf16<0, kCodes>(lo, hi, d, mins, dst);
  panel_lane_blocks_to_bf16<1, kCodes>(lo, hi, d, mins, dst);
  panel_lane_blocks_to_bf16<2, kCodes>(lo, hi, d, mins, dst);
  panel_lane_blocks_to_bf16<3, kCodes>(lo, hi, d, mins, dst);
}

ANVIL_TARGET_BF16 void panels_to_bf16_avx512(const Tensor& weight, int64_t r, uint16_t* dst) {
  const PanelCodes codes_of = weight.dtype == DType::Q8_0_R4   ? PanelCodes::Q8_0
                              : weight.dtype == DType::Q4_0_R4 ? PanelCodes::Q4_0
                                                               : PanelCodes::Q4_K;
  const bool q8 = codes_of == PanelCodes::Q8_0;
  // In 32-element blocks (Q4_K: sub-blocks, 18 of its 144 bytes each; see ggml_panels.h).
  const int64_t k = weight.cols(), blocks = k / kQK4_0, rows = weight.rows();
  const size_t code_bytes = q8 ? sizeof(BlockQ8_0::qs) : sizeof(BlockQ4_0::qs), block_bytes = code_bytes + 2;
  const int64_t panel = r / kPanelRows, i = r % kPanelRows, nr = std::min(kPanelRows, rows - panel * kPanelRows);
  const std::byte* base = weight.data + static_cast<size_t>(panel * kPanelRows * blocks) * block_bytes;
  const int64_t whole = blocks / kPanelBlocks;
  for (int64_t s = 0; s < whole; ++s) {
    const std::byte* step = base + static_cast<size_t>(s * nr * kPanelBlocks) * block_bytes;
    const std::byte* codes = step + static_cast<size_t>(i * kPanelBlocks) * code_bytes;
    const std::byte* scales = step + static_cast<size_t>(nr * kPanelBlocks) * code_bytes + i * kPanelBlocks * 2;
    uint16_t* out = dst + s * kPanelBlocks * kQK4_0;
    switch (codes_of) {
      case PanelCodes::Q8_0: panel_superblock_to_bf16<PanelCodes::Q8_0>(codes, scales, out); break;
      case PanelCodes::Q4_0: panel_superblock_to_bf16<PanelCodes::Q4_0>(codes, scales, out); break;
      case PanelCodes::Q4_K: panel_superblock_to_bf16<PanelCodes::Q4_K>(codes, scales, out); break;
    }
  }
  const int64_t tail = blocks - whole * kPanelBlocks;
  if (tail == 0) return;
  alignas(64) std::byte rebuilt[kPanelBlocks * sizeof(BlockQ8_0)];
  uint16_t* out = dst + whole * kPanelBlocks * kQK4_0;
  const int64_t ggml_block = dtype_info(weight.dtype).block_elems;  // 32, or 256 for Q4_K
  panel_row_range_to_blocks(weight.dtype, weight.data, rows, k, r, whole * kPanelBlocks * kQK4_0 / ggml_block,
                            k / ggml_block, rebuilt);
  switch (codes_of) {
    case PanelCodes::Q8_0: q8_0_to_bf16_avx512(rebuilt, out, tail * kQK8_0); break;
    case PanelCodes::Q4_0: q4_0_to_bf16_avx512(rebuilt, out, tail * kQK4_0); break;
    case PanelCodes::Q4_K: {  // one Q4_K block
      alignas(64) float values[kQK_K];
      dequantize_row_q4_k(rebuilt, values, kQK_K);
      f32_to_bf16_avx512(values, out, kQK_K);
      break;
    }
  }
}

// The scaled types straight to bf16, each value rounded once from the f32 that
// dequantize_scaled_row computes (code value times scale, one f32 rounding), so the result is
// the f32 path's bit for bit (but for the sign of zero: that path adds a zero shift, -0 + 0 = +0).

// F8_E4M3: as in the GEMV kernels, a code is 2^8 times the fp16 number
// sign << 15 | (code & 0x7F) << 7 (exact); 2^8 joins the row scale (exact). NaN codes (S.1111.111)
// are restored as NaN.
ANVIL_TARGET_BF16 inline __m512 f8_e4m3_times_scale(const uint8_t* p, __mmask16 m, __m512 scale_256) {
  const __m128i codes = _mm_maskz_loadu_epi8(m, p);
  const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(codes), 7),
                                     _mm256_set1_epi16(static_cast<short>(0xBF80)));
  const __mmask16 is_nan = _mm_cmpeq_epi8_mask(_mm_or_si128(codes, _mm_set1_epi8(static_cast<char>(0x80))),
                                               _mm_set1_epi8(static_cast<char>(0xFF)));
  return _mm512_mask_mov_ps(_mm512_mul_ps(_mm512_cvtph_ps(h), scale_256), is_nan, _mm512_set1_ps(__builtin_nanf("")));
}

ANVIL_TARGET_BF16 void f8_e4m3_to_bf16_avx512(const uint8_t* src, float scale, uint16_t* dst, int64_t n) {
  const __m512 s = _mm512_set1_ps(scale * 256.0f);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    store_bf16x32(dst + i, f8_e4m3_times_scale(src + i, 0xFFFF, s), f8_e4m3_times_scale(src + i + 16, 0xFFFF, s));
  for (; i < n; i += 16) {
    const int64_t left = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << left) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(f8_e4m3_times_scale(src + i, m, s)));
  }
}

ANVIL_TARGET_BF16 inline __m512 i8_times_scale(const int8_t* p, __mmask16 m, __m512 scale) {
  return _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(m, p))), scale);
}

ANVIL_TARGET_BF16 void i8_to_bf16_avx512(const int8_t* src, float scale, uint16_t* dst, int64_t n) {
  const __m512 s = _mm512_set1_ps(scale);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    store_bf16x32(dst + i, i8_times_scale(src + i, 0xFFFF, s), i8_times_scale(src + i + 16, 0xFFFF, s));
  for (; i < n; i += 16) {
    const int64_t left = n - i < 16 ? n - i : 16;
    const __mmask16 m = static_cast<__mmask16>((1u << left) - 1);
    _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(i8_times_scale(src + i, m, s)));
  }
}

// I4: per 32 elements (16 bytes, a group holds whole such runs), the nibbles interleaved back into
// element order, then (u - zero) * scale (u - zero is exact).
ANVIL_TARGET_BF16 void i4_to_bf16_avx512(const uint8_t* src, const float* scales, const float* zeros, int64_t group,
                                         uint16_t* dst, int64_t n) {
  const __m128i low4 = _mm_set1_epi8(0x0F);
  for (int64_t g = 0; g < n / group; ++g) {
    const __m512 s = _mm512_set1_ps(scales[g]);
    const __m512 z = _mm512_set1_ps(zeros ? zeros[g] : 8.0f);  // kI4ImplicitZero
    for (int64_t i = g * group; i < (g + 1) * group; i += 32) {
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i / 2));
      const __m128i lo = _mm_and_si128(b, low4), hi = _mm_and_si128(_mm_srli_epi16(b, 4), low4);
      const __m512 u0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi)));
      const __m512 u1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_unpackhi_epi8(lo, hi)));
      store_bf16x32(dst + i, _mm512_mul_ps(_mm512_sub_ps(u0, z), s), _mm512_mul_ps(_mm512_sub_ps(u1, z), s));
    }
  }
}

void f32_to_bf16(const float* src, uint16_t* dst, int64_t n) {
  if (cpu_features().avx512_bf16) return f32_to_bf16_avx512(src, dst, n);
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(src[i]);
}

// An F8_E4M3 row's code values, unscaled: exact in bf16 (4 significant bits of its 8).
void f8_e4m3_values_to_bf16(const uint8_t* src, uint16_t* dst, int64_t n) {
  if (cpu_features().avx512_bf16) return f8_e4m3_to_bf16_avx512(src, 1.0f, dst, n);
  const float* value = e4m3_decode_table();
  for (int64_t i = 0; i < n; ++i) dst[i] = float_to_bf16(value[src[i]]);
}

}  // namespace

// One weight row to bf16. `row` is k floats of scratch for dtypes without a direct kernel.
void onednn_weight_row_to_bf16(const Tensor& weight, int64_t r, uint16_t* dst, float* row) {
  const int64_t k = weight.cols();
  const std::byte* src = dtype_is_panels(weight.dtype) ? nullptr : weight.row(r);
  if (cpu_features().avx512_bf16) {
    switch (weight.dtype) {
      case DType::Q8_0_R4:
      case DType::Q4_0_R4:
      case DType::Q4_K_R4: panels_to_bf16_avx512(weight, r, dst); return;
      case DType::BF16: std::memcpy(dst, src, k * sizeof(uint16_t)); return;
      case DType::F32: f32_to_bf16_avx512(reinterpret_cast<const float*>(src), dst, k); return;
      case DType::F16: f16_to_bf16_avx512(reinterpret_cast<const uint16_t*>(src), dst, k); return;
      case DType::Q8_0: q8_0_to_bf16_avx512(src, dst, k); return;
      case DType::Q4_0: q4_0_to_bf16_avx512(src, dst, k); return;
      case DType::F8_E4M3:
        if (!weight.has_scales()) break;
        f8_e4m3_to_bf16_avx512(reinterpret_cast<const uint8_t*>(src), weight.row_scales(r)[0], dst, k);
        return;
      case DType::I8:
        if (!weight.has_scales()) break;
        i8_to_bf16_avx512(reinterpret_cast<const int8_t*>(src), weight.row_scales(r)[0], dst, k);
        return;
      case DType::I4:
        if (!weight.has_scales() || weight.quant.group % 32 != 0) break;
        i4_to_bf16_avx512(reinterpret_cast<const uint8_t*>(src), weight.row_scales(r), weight.row_zeros(r),
                          weight.quant.group, dst, k);
        return;
      default: break;
    }
  }
  // Everything else (Q4_K, Q6_K, and any CPU without AVX-512 BF16).
  weight_row_to_f32_as_stored(weight, r, row);  // x comes in stored order (matmul_input)
  f32_to_bf16(row, dst, k);
}

namespace {

// ---- primitive cache ------------------------------------------------------------------------------

struct MatmulKey {
  int64_t m, n, k;
  GemmCompute compute;
  bool operator<(const MatmulKey& o) const {
    return std::tie(m, n, k, compute) < std::tie(o.m, o.n, o.k, o.compute);
  }
};

struct CachedMatmul {
  dnnl::matmul primitive;
  dnnl::memory::desc src, weights, dst, scratchpad;
  size_t scratchpad_bytes = 0;
};

// Creating a primitive descriptor costs ~0.1-1 ms (brgemm kernel generation): cache by shape.
std::shared_ptr<const CachedMatmul> get_matmul(const MatmulKey& key) {
  static std::mutex mutex;
  static std::map<MatmulKey, std::shared_ptr<const CachedMatmul>> cache;
  static bool logged[2] = {false, false};
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(key);
  if (it != cache.end()) return it->second;
  if (cache.size() >= 512) cache.clear();  // bounded: shapes come from a handful of layers x m values

  const dt type = key.compute == GemmCompute::F32 ? dt::f32 : dt::bf16;
  auto entry = std::make_shared<CachedMatmul>();
  // x (m, k) row-major; W block (n rows of k) read as B = Wᵀ (k, n), i.e. format "ba";
  // the (m, n) result dense. oneDNN 2.6 only takes its brgemm kernels (AMX, AVX512-BF16) for a
  // dense dst: with y's row stride it falls back to gemm:jit, ~25% slower, so blocks are copied out.
  entry->src = dnnl::memory::desc({key.m, key.k}, type, dnnl::memory::format_tag::ab);
  entry->weights = dnnl::memory::desc({key.k, key.n}, type, dnnl::memory::format_tag::ba);
  entry->dst = dnnl::memory::desc({key.m, key.n}, dt::f32, dnnl::memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);  // per-thread scratch, no shared state
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(entry->src, entry->weights, entry->dst), attr, cpu_engine());
  entry->scratchpad = pd.scratchpad_desc();
  entry->scratchpad_bytes = entry->scratchpad.get_size();
  entry->primitive = dnnl::matmul(pd);
  bool& was_logged = logged[key.compute != GemmCompute::F32];
  if (debug_enabled() && !was_logged) {
    was_logged = true;
    std::fprintf(stderr, "anvil: debug: onednn %s matmul m=%lld n=%lld k=%lld uses %s\n",
                 key.compute == GemmCompute::F32 ? "f32" : "bf16", static_cast<long long>(key.m),
                 static_cast<long long>(key.n), static_cast<long long>(key.k), pd.impl_info_str());
  }
  cache.emplace(key, entry);
  return entry;
}

// ---- profiling -------------------------------------------------------------------------------------

std::atomic<bool> g_profiling{false};
std::atomic<int64_t> g_block_rows{256};
std::mutex g_profile_mutex;
OneDnnGemmProfile g_profile;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// ---- the providers ---------------------------------------------------------------------------------

enum class ComputeChoice { Auto, BF16, F32 };

class OneDnnGemm final : public GemmProvider {
 public:
  OneDnnGemm(const char* name, ComputeChoice choice) : name_(name), choice_(choice) {}

  const char* name() const override { return name_; }

  bool supports(DType, int64_t m_tokens, int64_t n_out, int64_t k_in) const override {
    if (m_tokens <= 0 || n_out <= 0 || k_in <= 0) return false;
    // bf16 without AVX-512 falls to oneDNN's reference kernels (minutes for a prefill).
    if (choice_ == ComputeChoice::BF16 && !cpu_has_avx512_core()) return false;
    return cpu_features().avx2 || cpu_has_avx512_core();
  }

  GemmCompute compute(DType weight_dtype) const override {
    // In bf16, F8_E4M3 weights keep their values exact (run() scales the results per row).
    const GemmCompute bf16 = weight_dtype == DType::F8_E4M3 ? GemmCompute::Bf16Activations : GemmCompute::BF16;
    switch (choice_) {
      case ComputeChoice::BF16: return bf16;
      case ComputeChoice::F32: return GemmCompute::F32;
      case ComputeChoice::Auto: break;
    }
    // F32 and F16 weights would lose mantissa bits in bf16 (F16 has 10, bf16 7): keep them f32.
    if (weight_dtype == DType::F32 || weight_dtype == DType::F16) return GemmCompute::F32;
    return cpu_has_fast_bf16() ? bf16 : GemmCompute::F32;
  }

  Status run(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m_tokens, float* y) override {
    ANVIL_RETURN_IF_ERROR(check_gemm_args(*this, weight, x, m_tokens, y));
    try {
      return run_unchecked(pool, weight, x, m_tokens, y);
    } catch (const dnnl::error& e) {
      return Status::error(std::string("gemm provider ") + name_ + ", weight " + weight.name + ": oneDNN: " +
                           e.what());
    } catch (const std::exception& e) {
      return Status::error(std::string("gemm provider ") + name_ + ", weight " + weight.name + ": " + e.what());
    }
  }

 private:
  Status run_unchecked(ThreadPool& pool, const Tensor& weight, const float* x, int64_t m, float* y) {
    // One bf16 primitive serves BF16 and Bf16Activations (F8_E4M3's exact values, below).
    const GemmCompute compute_type = compute(weight.dtype) == GemmCompute::F32 ? GemmCompute::F32 : GemmCompute::BF16;
    const bool bf16 = compute_type == GemmCompute::BF16;
    const int64_t n = weight.rows(), k = weight.cols();
    const int threads = pool.thread_count();
    const bool profiling = g_profiling.load(std::memory_order_relaxed);
    cpu_engine();  // AMX permission and engine before any thread touches oneDNN

    // x in the compute type, once per call (shared read-only by all threads); FP8 W8A8 weights
    // first round it to E4M3 per token, as every matmul path does. In bf16, F8_E4M3 weights
    // multiply their E4M3 values as they are (exact in bf16) and each result is scaled by its
    // row's scale afterwards: W8A16 then computes what its GEMV kernels do (bf16 x, exact weight
    // values). FP8 W8A8 also takes x's E4M3 values unscaled (exact products, f32 sums, an fp8
    // GEMM's arithmetic) and applies the token's scale too. Rounding x' = value * s_t and W's
    // value * scale to bf16 instead would perturb each layer's output, and the next layer's E4M3
    // rounding amplifies that (codes flip): ~10x W8A16's bf16 error in a model's logits.
    const Clock::time_point t_x = Clock::now();
    const bool fp8_values = bf16 && weight.dtype == DType::F8_E4M3 && weight.has_scales();
    const float* token_scales = nullptr;
    if (fp8_values && weight.quant.activations == ActivationQuant::DynamicPerTokenFp8) {
      const E4M3Rows rows = matmul_input_e4m3_rows(pool, x, m, k);
      x = rows.values;
      token_scales = rows.token_scales;
    } else {
      x = matmul_input(pool, weight, x, m);
    }
    const void* xa = x;
    if (bf16) {
      auto* xb = static_cast<uint16_t*>(t_state.x.get(static_cast<size_t>(m * k) * sizeof(uint16_t)));
      if (xb == nullptr) return Status::error("out of memory for x in bf16");
      pool.parallel_for(m * k, [&](int64_t begin, int64_t end) { f32_to_bf16(x + begin, xb + begin, end - begin); });
      xa = xb;
    }
    const double x_seconds = profiling ? seconds_since(t_x) : 0.0;

    // Blocks of output rows; small n shrinks the block so every thread gets work.
    const int64_t block = onednn_block_rows(n, threads, g_block_rows.load(std::memory_order_relaxed));
    const int64_t n_blocks = (n + block - 1) / block;
    const bool zero_copy = (bf16 && weight.dtype == DType::BF16) || (!bf16 && weight.dtype == DType::F32);

    std::vector<OneDnnGemmProfile> profiles(threads);
    const Status blocks_ok = onednn_run_blocks(pool, n_blocks, [&](int t, int64_t b) {
      ThreadState& state = t_state;
      if (!state.stream) state.stream.emplace(cpu_engine());
      const int64_t r0 = b * block, rows = std::min(block, n - r0);
      Clock::time_point t0;
      if (profiling) t0 = Clock::now();
      void* w = zero_copy ? const_cast<std::byte*>(weight.row(r0)) : nullptr;
      if (!zero_copy) {
        w = state.weights.get(static_cast<size_t>(rows * k) * (bf16 ? 2 : 4));
        if (w == nullptr) throw std::runtime_error("out of memory for a weight block");
        if (bf16) {
          auto* row_f32 = static_cast<float*>(state.row.get(static_cast<size_t>(k) * sizeof(float)));
          for (int64_t r = 0; r < rows; ++r) {
            uint16_t* dst_row = static_cast<uint16_t*>(w) + r * k;
            if (fp8_values) {
              f8_e4m3_values_to_bf16(reinterpret_cast<const uint8_t*>(weight.row(r0 + r)), dst_row, k);
            } else {
              onednn_weight_row_to_bf16(weight, r0 + r, dst_row, row_f32);
            }
          }
        } else {
          for (int64_t r = 0; r < rows; ++r) weight_row_to_f32_as_stored(weight, r0 + r, static_cast<float*>(w) + r * k);
        }
      }
      Clock::time_point t1;
      if (profiling) t1 = Clock::now();
      std::shared_ptr<const CachedMatmul> mm = get_matmul({m, rows, k, compute_type});
      void* scratch = state.scratchpad.get(std::max<size_t>(mm->scratchpad_bytes, 64));
      auto* dst = static_cast<float*>(state.dst.get(static_cast<size_t>(m * rows) * sizeof(float)));
      if (scratch == nullptr || dst == nullptr) throw std::runtime_error("out of memory for matmul scratch");
      dnnl::engine& engine = cpu_engine();
      mm->primitive.execute(*state.stream, {{DNNL_ARG_SRC, dnnl::memory(mm->src, engine, const_cast<void*>(xa))},
                                            {DNNL_ARG_WEIGHTS, dnnl::memory(mm->weights, engine, w)},
                                            {DNNL_ARG_DST, dnnl::memory(mm->dst, engine, dst)},
                                            {DNNL_ARG_SCRATCHPAD, dnnl::memory(mm->scratchpad, engine, scratch)}});
      state.stream->wait();
      for (int64_t t_row = 0; t_row < m; ++t_row) {
        if (fp8_values && token_scales != nullptr) {  // F8_E4M3 scales are per row (QuantScales::group == cols)
          for (int64_t j = 0; j < rows; ++j)
            y[t_row * n + r0 + j] = dst[t_row * rows + j] * (token_scales[t_row] * weight.quant.scale[r0 + j]);
        } else if (fp8_values) {
          for (int64_t j = 0; j < rows; ++j) y[t_row * n + r0 + j] = dst[t_row * rows + j] * weight.quant.scale[r0 + j];
        } else {
          std::memcpy(y + t_row * n + r0, dst + t_row * rows, static_cast<size_t>(rows) * sizeof(float));
        }
      }
      if (profiling) {
        const Clock::time_point t2 = Clock::now();
        profiles[t].convert_seconds += std::chrono::duration<double>(t1 - t0).count();
        profiles[t].gemm_seconds += std::chrono::duration<double>(t2 - t1).count();
        ++profiles[t].blocks;
      }
    });
    if (profiling) {
      std::lock_guard<std::mutex> lock(g_profile_mutex);
      g_profile.convert_seconds += x_seconds;
      for (const OneDnnGemmProfile& p : profiles) {
        g_profile.convert_seconds += p.convert_seconds;
        g_profile.gemm_seconds += p.gemm_seconds;
        g_profile.blocks += p.blocks;
      }
    }
    return blocks_ok.with_context(std::string("gemm provider ") + name_ + ", weight " + weight.name);
  }

  const char* name_;
  ComputeChoice choice_;
};

}  // namespace

AmxPermission request_amx_permission() {
  static const AmxPermission permission = do_request_amx_permission();
  return permission;
}

bool amx_permission_granted() { return request_amx_permission() == AmxPermission::Granted; }

const char* amx_permission_name(AmxPermission permission) {
  switch (permission) {
    case AmxPermission::NotPresent: return "not present";
    case AmxPermission::Granted: return "granted";
    case AmxPermission::Denied: return "denied";
  }
  return "?";
}

const std::vector<GemmProvider*>& onednn_gemm_providers() {
  static OneDnnGemm auto_provider("onednn", ComputeChoice::Auto);
  static OneDnnGemm bf16_provider("onednn_bf16", ComputeChoice::BF16);
  static OneDnnGemm f32_provider("onednn_f32", ComputeChoice::F32);
  static const std::vector<GemmProvider*> providers{&auto_provider, &bf16_provider, &f32_provider,
                                                    onednn_int8_gemm_provider()};
  return providers;
}

dnnl::engine& onednn_cpu_engine() { return cpu_engine(); }

bool onednn_debug_enabled() { return debug_enabled(); }

int64_t onednn_block_rows(int64_t n, int threads, int64_t preferred) {
  const int64_t per_thread = (n + threads - 1) / threads;
  return per_thread < preferred ? std::max<int64_t>(16, (per_thread + 15) / 16 * 16) : preferred;
}

Status onednn_run_blocks(ThreadPool& pool, int64_t n_blocks, const std::function<void(int thread, int64_t block)>& run) {
  std::vector<Status> statuses(pool.thread_count());
  // Blocks shared out by stealing, as decode's rows are (core/stealing_ranges.h): a thread that
  // finishes its share early takes blocks from the back of the other's.
  StealingRanges blocks(n_blocks, pool.thread_count(), 1);
  pool.run([&](int t, int) {
    const int saved_omp_threads = omp_get_max_threads();
    omp_set_num_threads(1);
    try {
      int64_t begin, end;
      while (blocks.next(t, begin, end))
        for (int64_t b = begin; b < end; ++b) run(t, b);
    } catch (const dnnl::error& e) {
      statuses[t] = Status::error(std::string("oneDNN: ") + e.what());
    } catch (const std::exception& e) {
      statuses[t] = Status::error(e.what());
    }
    omp_set_num_threads(saved_omp_threads);
  });
  for (Status& s : statuses)
    if (!s.is_ok()) return s;
  return Status::ok();
}

void set_onednn_gemm_block_rows(int64_t rows) { g_block_rows.store(std::max<int64_t>(16, rows)); }

void set_onednn_gemm_profiling(bool enabled) { g_profiling.store(enabled); }

OneDnnGemmProfile take_onednn_gemm_profile() {
  std::lock_guard<std::mutex> lock(g_profile_mutex);
  OneDnnGemmProfile out = g_profile;
  g_profile = {};
  return out;
}

const char* matmul_data_type_name(MatmulDataType type) {
  switch (type) {
    case MatmulDataType::F32: return "f32";
    case MatmulDataType::BF16: return "bf16";
    case MatmulDataType::INT8: return "int8";
  }
  return "?";
}

Result<MatmulTiming> time_onednn_matmul(ThreadPool& pool, MatmulDataType type, int64_t m, int64_t n, int64_t k,
                                        int runs) {
  const std::string what = std::string("oneDNN ") + matmul_data_type_name(type) + " matmul " + std::to_string(m) +
                           "x" + std::to_string(k) + " @ " + std::to_string(k) + "x" + std::to_string(n);
  if (m <= 0 || n <= 0 || k <= 0 || runs <= 0) return Status::error(what + ": shape and runs must be positive");
  const int saved_threads = omp_get_max_threads();
  try {
    dnnl::engine& engine = cpu_engine();
    // Anvil's pool is idle between run() calls, so an OpenMP team of the same size uses the same cores.
    omp_set_num_threads(pool.thread_count());
    dt a_type = dt::f32, b_type = dt::f32, c_type = dt::f32;
    if (type == MatmulDataType::BF16) a_type = b_type = dt::bf16;
    if (type == MatmulDataType::INT8) a_type = dt::u8, b_type = dt::s8, c_type = dt::s32;
    const dnnl::memory::desc a_md({m, k}, a_type, dnnl::memory::format_tag::ab);
    const dnnl::memory::desc b_any({k, n}, b_type, dnnl::memory::format_tag::any);  // pre-reordered: peak
    const dnnl::memory::desc c_md({m, n}, c_type, dnnl::memory::format_tag::ab);
    dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a_md, b_any, c_md), engine);
    MatmulTiming timing;
    timing.impl = pd.impl_info_str();
    if (timing.impl.find("ref") != std::string::npos) {
      omp_set_num_threads(saved_threads);
      return Status::error(what + ": oneDNN has only its reference implementation (" + timing.impl +
                           ") on this CPU");
    }
    dnnl::matmul primitive(pd);
    dnnl::memory a(a_md, engine), b(pd.weights_desc(), engine), c(c_md, engine);
    // Zeros: the speed of these kernels does not depend on values, and zeros are never denormal.
    std::memset(a.get_data_handle(), 0, a_md.get_size());
    std::memset(b.get_data_handle(), 0, pd.weights_desc().get_size());
    dnnl::stream stream(engine);
    double best = 1e30;
    for (int run = 0; run <= runs; ++run) {  // run 0 warms up caches, pages and the thread team
      const Clock::time_point t0 = Clock::now();
      primitive.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
      stream.wait();
      if (run > 0) best = std::min(best, seconds_since(t0));
    }
    // The same work split the way the providers run it (each pool thread a single-threaded matmul
    // on its share of N) is often a little faster than oneDNN's own OpenMP split; a peak is the best.
    const int threads = pool.thread_count();
    if (threads > 1 && n >= threads) {
      const int64_t n_part = (n + threads - 1) / threads;
      omp_set_num_threads(1);  // primitive creation plans for the thread count it sees
      const dnnl::memory::desc b_part_any({k, n_part}, b_type, dnnl::memory::format_tag::any);
      const dnnl::memory::desc c_part_md({m, n_part}, c_type, dnnl::memory::format_tag::ab);
      dnnl::matmul::primitive_desc part_pd(dnnl::matmul::desc(a_md, b_part_any, c_part_md), engine);
      dnnl::matmul part(part_pd);
      std::vector<dnnl::memory> b_parts, c_parts;
      for (int t = 0; t < threads; ++t) {
        b_parts.emplace_back(part_pd.weights_desc(), engine);
        std::memset(b_parts.back().get_data_handle(), 0, part_pd.weights_desc().get_size());
        c_parts.emplace_back(c_part_md, engine);
      }
      std::vector<std::string> errors(threads);
      for (int run = 0; run <= runs; ++run) {
        const Clock::time_point t0 = Clock::now();
        pool.run([&](int t, int) {
          const int saved = omp_get_max_threads();
          omp_set_num_threads(1);
          try {
            dnnl::stream part_stream(engine);
            part.execute(part_stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b_parts[t]}, {DNNL_ARG_DST, c_parts[t]}});
            part_stream.wait();
          } catch (const dnnl::error& e) {
            errors[t] = e.what();
          }
          omp_set_num_threads(saved);
        });
        for (const std::string& e : errors)
          if (!e.empty()) throw dnnl::error(dnnl_runtime_error, e.c_str());
        if (run > 0) best = std::min(best, seconds_since(t0) * static_cast<double>(n) / (n_part * threads));
      }
    }
    omp_set_num_threads(saved_threads);
    timing.best_seconds = best;
    timing.gflops = 2.0 * m * n * k / best / 1e9;
    if (debug_enabled())
      std::fprintf(stderr, "anvil: debug: %s uses %s: %.1f GFLOP/s\n", what.c_str(), timing.impl.c_str(),
                   timing.gflops);
    return timing;
  } catch (const dnnl::error& e) {
    omp_set_num_threads(saved_threads);
    return Status::error(what + ": " + e.what());
  }
}

std::string onednn_version() {
  const dnnl_version_t* v = dnnl_version();
  return std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
}

}  // namespace anvil
