// GGML block-quantized layouts (Q8_0, Q4_0, Q4_K, Q6_K): structs, reference dequantize/quantize.
#pragma once

#include <cstdint>

namespace anvil {

constexpr int64_t kQK8_0 = 32;
constexpr int64_t kQK4_0 = 32;
constexpr int64_t kQK_K = 256;      // super-block size of the K-quants
constexpr int64_t kKScaleBytes = 12;

struct BlockQ8_0 {
  uint16_t d;          // fp16 scale
  int8_t qs[kQK8_0];   // x = d * q
};
static_assert(sizeof(BlockQ8_0) == 34);

struct BlockQ4_0 {
  uint16_t d;               // fp16 scale
  uint8_t qs[kQK4_0 / 2];   // low nibbles: elements 0..15, high nibbles: 16..31; x = d * (q - 8)
};
static_assert(sizeof(BlockQ4_0) == 18);

struct BlockQ4_K {
  uint16_t d;                    // fp16 super-block scale of the 6-bit scales
  uint16_t dmin;                 // fp16 super-block scale of the 6-bit mins
  uint8_t scales[kKScaleBytes];  // 8 (scale, min) pairs, 6 bits each, packed
  uint8_t qs[kQK_K / 2];         // 4-bit quants
};
static_assert(sizeof(BlockQ4_K) == 144);

struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];      // low 4 bits
  uint8_t qh[kQK_K / 4];      // high 2 bits
  int8_t scales[kQK_K / 16];  // 8-bit scales of 16-element groups
  uint16_t d;                 // fp16 super-block scale
};
static_assert(sizeof(BlockQ6_K) == 210);

// Q4_K packs 8 (scale, min) pairs of 6 bits into 12 bytes: pairs 0..3 use the low 6 bits of
// bytes 0..3 (scales) and 4..7 (mins); pairs 4..7 keep their low 4 bits in bytes 8..11 and their
// top 2 bits in the spare top bits of bytes 0..7.
inline void unpack_scale_min_k4(int j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// n must be a multiple of the block size.
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k(const void* src, float* dst, int64_t n);

// Reference quantizers (round to nearest, as ggml's *_ref functions).
void quantize_row_q8_0(const float* src, void* dst, int64_t n);
void quantize_row_q4_0(const float* src, void* dst, int64_t n);
void quantize_row_q4_k(const float* src, void* dst, int64_t n);
void quantize_row_q6_k(const float* src, void* dst, int64_t n);

}  // namespace anvil
