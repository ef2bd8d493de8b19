// Element types of weights and activations, and the traits table every kernel dispatches on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace anvil {

// Block-quantized types store `block_elems` elements in `block_bytes` bytes (GGML layouts).
enum class DType : uint8_t { F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, Count };

using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);        // n % block_elems == 0
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);      // reference quantizer

struct DTypeInfo {
  DType dtype;
  const char* name;        // "F32", "Q4_K" (GGUF spelling)
  int64_t block_elems;     // 1 for plain types, 32 for Q8_0/Q4_0, 256 for K-quants
  size_t block_bytes;      // bytes per block
  uint32_t ggml_type;      // GGUF/ggml type id
  ToFloatFn to_float;      // never null
  FromFloatFn from_float;  // null where anvil has no quantizer for the type yet
};

const DTypeInfo& dtype_info(DType dtype);
inline const char* dtype_name(DType dtype) { return dtype_info(dtype).name; }

// Bytes occupied by n elements (n must be a multiple of the block size; checked by callers).
inline size_t dtype_bytes(DType dtype, int64_t n) {
  const DTypeInfo& info = dtype_info(dtype);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
// Name of any ggml type id, including the ones anvil cannot read ("Q5_1"), or "type 99".
std::string ggml_type_name(uint32_t ggml_type);
// Parses "f32", "F16", "bf16", "q8_0", ... (case-insensitive).
std::optional<DType> dtype_from_name(const std::string& name);

// Scalar conversions used everywhere (IEEE half and bfloat16 with round-to-nearest-even).
float fp16_to_float(uint16_t h);
uint16_t float_to_fp16(float f);
inline float bf16_to_float(uint16_t h) {
  uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}
uint16_t float_to_bf16(float f);

}  // namespace anvil
