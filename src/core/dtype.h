// Element types of weights and activations, and the traits table every kernel dispatches on.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace anvil {

// Block-quantized types store `block_elems` elements in `block_bytes` bytes (GGML layouts).
// F8_E4M3, I8 and I4 are the production weight schemes (vLLM / llm-compressor / GPTQ): their
// bytes are codes only, and the scales (and I4 zero points) live beside them in the Tensor's
// QuantScales (core/quant_scales.h). Layouts and GGUF ids: docs/FORMATS.md.
//   F8_E4M3  one OCP E4M3FN byte per element (quant/fp8_e4m3.h); one scale per row
//   I8       one int8 per element, codes in [-127, 127]; one scale per row
//   I4       two unsigned 4-bit codes per byte, low nibble first (quant/int4_codes.h); one
//            scale per group of 32/64/128 elements, plus a zero point per group when asymmetric
// Q8_0_R4, Q4_0_R4 and Q4_K_R4 are Q8_0, Q4_0 and Q4_K weights repacked in memory for the decode
// kernels (4-row panels, quant/ggml_panels.h): the same bytes per weight, never in a file, and not
// row-major, so rows are read through weight_row_to_f32 (compute/cpu/matmul.h), never through
// Tensor::row.
enum class DType : uint8_t {
  F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q6_K, F8_E4M3, I8, I4, Q8_0_R4, Q4_0_R4, Q4_K_R4, Count
};

// GGUF type ids for the scaled types. I8 is ggml's own id; ggml has no FP8 or packed-int4 type
// with external scales, so those take Anvil-private ids ("AN" + n) far above ggml's range:
// llama.cpp rejects such files instead of misreading them.
constexpr uint32_t kGgmlTypeI8 = 24;
constexpr uint32_t kAnvilGgmlTypeF8E4M3 = 0x414E0001;
constexpr uint32_t kAnvilGgmlTypeI4 = 0x414E0002;

// For the scaled types to_float decodes codes only (F8 value, int8, I4 code minus 8): the
// weight's value also needs its scales, which weight_row_to_f32 (compute/cpu/matmul.h) applies.
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);        // n % block_elems == 0
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);      // reference quantizer

struct DTypeInfo {
  DType dtype;
  const char* name;        // "F32", "Q4_K" (GGUF spelling)
  int64_t block_elems;     // 1 for plain types, 32 for Q8_0/Q4_0, 256 for K-quants
  size_t block_bytes;      // bytes per block
  uint32_t ggml_type;      // GGUF/ggml type id
  ToFloatFn to_float;      // never null
  FromFloatFn from_float;  // null where anvil has no quantizer for the type yet (and for the
                           // scaled types, whose quantizers also produce scales: src/quant/)
  bool external_scales;    // values need the Tensor's QuantScales (F8_E4M3, I8, I4)
};

const DTypeInfo& dtype_info(DType dtype);
inline const char* dtype_name(DType dtype) { return dtype_info(dtype).name; }

// Bytes occupied by n elements (n must be a multiple of the block size; checked by callers).
inline size_t dtype_bytes(DType dtype, int64_t n) {
  const DTypeInfo& info = dtype_info(dtype);
  return static_cast<size_t>(n / info.block_elems) * info.block_bytes;
}

inline bool dtype_has_external_scales(DType dtype) { return dtype_info(dtype).external_scales; }
// GGML block formats (Q8_0, Q4_K, ...): scales inside the bytes, llama.cpp-readable (the panel
// layouts Q8_0_R4 / Q4_0_R4 / Q4_K_R4 hold the same blocks and count as GGML types too).
inline bool dtype_is_ggml_block(DType dtype) {
  return dtype_info(dtype).block_elems > 1 && !dtype_info(dtype).external_scales;
}
// Q8_0_R4 / Q4_0_R4 / Q4_K_R4: an in-memory layout of decode-kernel panels, not a storage type.
inline bool dtype_is_panels(DType dtype) {
  return dtype == DType::Q8_0_R4 || dtype == DType::Q4_0_R4 || dtype == DType::Q4_K_R4;
}

// Never returns a panel layout (files hold row-major GGML blocks).
std::optional<DType> dtype_from_ggml(uint32_t ggml_type);
// Name of any ggml type id, including the ones anvil cannot read ("Q5_1"), or "type 99".
std::string ggml_type_name(uint32_t ggml_type);
// Parses "f32", "F16", "bf16", "q8_0", ... (case-insensitive); the panel layouts ("q4_0_r4") only with
// `panels` (the kernel benchmark), since no file or model spec can hold them.
std::optional<DType> dtype_from_name(const std::string& name, bool panels = false);

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
