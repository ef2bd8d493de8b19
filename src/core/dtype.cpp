// The dtype traits table and scalar fp16/bf16 conversions.
#include "core/dtype.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstring>

#include "quant/fp8_e4m3.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_panels.h"
#include "quant/int4_codes.h"

namespace anvil {
namespace {

void f32_to_float(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void f32_from_float(const float* src, void* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void f16_to_float(const void* src, float* dst, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_float(h[i]);
}
void f16_from_float(const float* src, void* dst, int64_t n) {
  auto* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = float_to_fp16(src[i]);
}
void bf16_to_float_row(const void* src, float* dst, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_float(h[i]);
}
void bf16_from_float(const float* src, void* dst, int64_t n) {
  auto* h = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) h[i] = float_to_bf16(src[i]);
}

// Scaled types: codes only (see ToFloatFn).
void f8_e4m3_codes_to_float(const void* src, float* dst, int64_t n) {
  const auto* codes = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = e4m3_to_float(codes[i]);
}
void i8_codes_to_float(const void* src, float* dst, int64_t n) {
  const auto* codes = static_cast<const int8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(codes[i]);
}
void i4_codes_to_float(const void* src, float* dst, int64_t n) {
  const auto* row = static_cast<const uint8_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(static_cast<int32_t>(i4_code(row, i)) - kI4ImplicitZero);
}

// One row per DType, in enum order.
const std::array<DTypeInfo, static_cast<size_t>(DType::Count)> kDTypeTable = {{
    {DType::F32, "F32", 1, 4, 0, f32_to_float, f32_from_float, false},
    {DType::F16, "F16", 1, 2, 1, f16_to_float, f16_from_float, false},
    {DType::BF16, "BF16", 1, 2, 30, bf16_to_float_row, bf16_from_float, false},
    {DType::Q8_0, "Q8_0", kQK8_0, sizeof(BlockQ8_0), 8, dequantize_row_q8_0, quantize_row_q8_0, false},
    {DType::Q4_0, "Q4_0", kQK4_0, sizeof(BlockQ4_0), 2, dequantize_row_q4_0, quantize_row_q4_0, false},
    {DType::Q4_K, "Q4_K", kQK_K, sizeof(BlockQ4_K), 12, dequantize_row_q4_k, quantize_row_q4_k, false},
    {DType::Q6_K, "Q6_K", kQK_K, sizeof(BlockQ6_K), 14, dequantize_row_q6_k, quantize_row_q6_k, false},
    {DType::F8_E4M3, "F8_E4M3", 1, 1, kAnvilGgmlTypeF8E4M3, f8_e4m3_codes_to_float, nullptr, true},
    {DType::I8, "I8", 1, 1, kGgmlTypeI8, i8_codes_to_float, nullptr, true},
    {DType::I4, "I4", 2, 1, kAnvilGgmlTypeI4, i4_codes_to_float, nullptr, true},
    // to_float of a panel layout decodes a one-row tensor (a panel of one row is that row's
    // blocks reordered); there is no quantizer: repack_to_panels makes them from GGML blocks.
    {DType::Q8_0_R4, "Q8_0_R4", kQK8_0, sizeof(BlockQ8_0), 8, dequantize_row_q8_0_r4, nullptr, false},
    {DType::Q4_0_R4, "Q4_0_R4", kQK4_0, sizeof(BlockQ4_0), 2, dequantize_row_q4_0_r4, nullptr, false},
    {DType::Q4_K_R4, "Q4_K_R4", kQK_K, sizeof(BlockQ4_K), 12, dequantize_row_q4_k_r4, nullptr, false},
}};

// ggml's type ids and names, including types anvil cannot read, for error messages.
const char* const kGgmlTypeNames[] = {
    "F32",  "F16",  "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0",    "Q8_1",
    "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S",
    "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M",
    "BF16", "Q4_0_4_4", "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8",
    "IQ4_NL_8_8", "MXFP4"};

}  // namespace

const DTypeInfo& dtype_info(DType dtype) { return kDTypeTable[static_cast<size_t>(dtype)]; }

std::optional<DType> dtype_from_ggml(uint32_t ggml_type) {
  for (const DTypeInfo& info : kDTypeTable)
    if (info.ggml_type == ggml_type && !dtype_is_panels(info.dtype)) return info.dtype;
  return std::nullopt;
}

std::string ggml_type_name(uint32_t ggml_type) {
  if (std::optional<DType> dtype = dtype_from_ggml(ggml_type)) return dtype_info(*dtype).name;
  if (ggml_type < std::size(kGgmlTypeNames)) return kGgmlTypeNames[ggml_type];
  return "type " + std::to_string(ggml_type);
}

std::optional<DType> dtype_from_name(const std::string& name, bool panels) {
  std::string upper = name;
  std::transform(upper.begin(), upper.end(), upper.begin(), [](unsigned char c) { return std::toupper(c); });
  for (const DTypeInfo& info : kDTypeTable)
    if (upper == info.name && (panels || !dtype_is_panels(info.dtype))) return info.dtype;
  return std::nullopt;
}

float fp16_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ff;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal half: normalize
      int e = -1;
      do {
        ++e;
        mantissa <<= 1;
      } while ((mantissa & 0x400) == 0);
      bits = sign | static_cast<uint32_t>(127 - 15 - e) << 23 | (mantissa & 0x3ff) << 13;
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | mantissa << 13;
  } else {
    bits = sign | (exponent + 127 - 15) << 23 | mantissa << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_fp16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000);
  const uint32_t abs_bits = bits & 0x7fffffff;
  if (abs_bits >= 0x7f800000u)  // inf or nan
    return sign | 0x7c00 | (abs_bits > 0x7f800000u ? 0x200 : 0);
  if (abs_bits >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (abs_bits < 0x38800000u) {                       // below the smallest normal half
    if (abs_bits < 0x33000000u) return sign;          // rounds to zero
    const uint32_t exponent = abs_bits >> 23;
    const uint32_t mantissa = (abs_bits & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - exponent;  // 14 + (113 - exponent) - 1 ... aligns to half subnormal
    const uint32_t half_mantissa = mantissa >> (shift - 0);
    // Round to nearest even on the bits shifted out.
    const uint32_t remainder = mantissa & ((1u << shift) - 1);
    const uint32_t halfway = 1u << (shift - 1);
    uint32_t rounded = half_mantissa;
    if (remainder > halfway || (remainder == halfway && (half_mantissa & 1))) ++rounded;
    return sign | static_cast<uint16_t>(rounded);
  }
  // Normal: rebias exponent, round mantissa 23 -> 10 bits to nearest even.
  uint32_t value = abs_bits - 0x38000000u;  // exponent rebias (127-15) << 23
  const uint32_t remainder = value & 0x1fff;
  value >>= 13;
  if (remainder > 0x1000 || (remainder == 0x1000 && (value & 1))) ++value;
  return sign | static_cast<uint16_t>(value);
}

uint16_t float_to_bf16(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  if ((bits & 0x7fffffff) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // quiet nan
  bits += 0x7fff + ((bits >> 16) & 1);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace anvil
