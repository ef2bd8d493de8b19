// FP8 E4M3 encoding (round to nearest even, saturating) and table decoding.
#include "quant/fp8_e4m3.h"

#include <array>
#include <cmath>
#include <cstring>

namespace anvil {
namespace {

float decode(uint8_t code) {
  const float sign = (code & 0x80) ? -1.0f : 1.0f;
  const int exponent = (code >> 3) & 0x0F;
  const int mantissa = code & 0x07;
  if (exponent == 0x0F && mantissa == 0x07) return std::copysign(std::nanf(""), sign);
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -9);
  return sign * std::ldexp(1.0f + static_cast<float>(mantissa) / 8.0f, exponent - 7);
}

const std::array<float, 256> kDecodeTable = [] {
  std::array<float, 256> table{};
  for (int code = 0; code < 256; ++code) table[code] = decode(static_cast<uint8_t>(code));
  return table;
}();

}  // namespace

float e4m3_to_float(uint8_t code) { return kDecodeTable[code]; }

const float* e4m3_decode_table() { return kDecodeTable.data(); }

uint8_t float_to_e4m3(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const uint8_t sign = static_cast<uint8_t>((bits >> 24) & 0x80);
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u) return sign | kE4M3NanCode;
  const float magnitude = std::fabs(value);
  if (magnitude >= kE4M3Max) return sign | kE4M3MaxCode;  // includes infinity
  if (magnitude < 0x1p-6f) {
    // Subnormal range: multiples of 2^-9. Scaling by 2^9 is exact, nearbyint rounds half to even,
    // and m = 8 is exactly the code of 2^-6, the smallest normal.
    return sign | static_cast<uint8_t>(std::nearbyint(magnitude * 512.0f));
  }
  // Normal: keep 3 of float's 23 mantissa bits, rounding the 20 dropped bits half to even; a
  // carry into the exponent is the correct next binade. Rebias the exponent 127 -> 7.
  const uint32_t rounded = (abs_bits + 0x7FFFFu + ((abs_bits >> 20) & 1u)) >> 20;
  const uint32_t code = rounded - ((127u - 7u) << 3);
  // 448 < |value| rounds up to 480, whose code is NaN's: saturate instead.
  return sign | static_cast<uint8_t>(code > kE4M3MaxCode ? kE4M3MaxCode : code);
}

}  // namespace anvil
