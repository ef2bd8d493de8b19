// DType::I4 packing: two unsigned 4-bit codes per byte, element 2j in the low nibble of byte j.
// (Helpers are `static` so ISA-specific translation units may include this under their own
// target flags without sharing one inline definition.)
#pragma once

#include <cstddef>
#include <cstdint>

namespace anvil {

// Codes are unsigned u in [0, 15]; the weight is (u - zero) * scale. Symmetric tensors have no
// stored zero: their implicit zero is 8, i.e. signed codes [-8, 7] stored with a +8 offset, as
// GPTQ's qweight and compressed-tensors' pack-quantized int4 store them. Asymmetric tensors keep
// one zero point (an integer 0..15) per group beside the scale.
constexpr int32_t kI4ImplicitZero = 8;

static inline uint8_t i4_code(const uint8_t* row, int64_t i) {
  const uint8_t byte = row[i >> 1];
  return (i & 1) ? static_cast<uint8_t>(byte >> 4) : static_cast<uint8_t>(byte & 0x0F);
}

// Packs n (even) codes in [0, 15].
static inline void i4_pack(const uint8_t* codes, int64_t n, uint8_t* row) {
  for (int64_t j = 0; j < n / 2; ++j) row[j] = static_cast<uint8_t>((codes[2 * j] & 0x0F) | (codes[2 * j + 1] << 4));
}

}  // namespace anvil
