// QuantScales: the scales (and zero points) that F8_E4M3, I8 and I4 weights keep outside their
// code bytes, as compressed-tensors (`weight_scale`, `weight_zero_point`) and GPTQ (`scales`,
// `qzeros`) checkpoints do; and their validation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "anvil/status.h"

namespace anvil {

struct Tensor;

// For a (rows, cols) weight and g = cols / group scale groups per row:
//   w[r][c] = (code[r][c] - zero[r][c / group]) * scale[r][c / group]
//   scale   (rows, g) floats, row-major, finite
//   zero    (rows, g) floats holding integers 0..15; asymmetric I4 only. Null means the dtype's
//           implicit zero: 0 for F8_E4M3 and I8, 8 for I4 (signed codes stored with +8).
//   group   elements per scale along a row. F8_E4M3 and I8 are per channel (group == cols);
//           a per-tensor scale is stored as the same value in every row, so kernels see one
//           layout. I4 groups are 32, 64 or 128.
// The arrays belong to whoever owns the weight bytes (a file mapping, a Checkpoint's storage).
//   activations  what every matmul with this weight does to its input first (F8_E4M3 only):
//           None keeps x as is (W8A16); DynamicPerTokenFp8 rounds each token's row of x to E4M3
//           with scale amax / 448 (quant/fp8_activations.h), vLLM's FP8_DYNAMIC (W8A8).
//           (I8 weights always take per-token int8 activations: that is their kernel's input.)
//   input_order  null, or (cols) int32: stored column j holds input column input_order[j] (a
//           permutation of 0..cols-1; I4 only). GPTQ act-order ("desc_act" without static
//           groups, compressed-tensors actorder "group") assigns columns to groups in a permuted
//           order; the loader sorts the columns by group so that every group is a run of
//           consecutive stored columns, and matmuls gather x into the same order
//           (compute/cpu/matmul_input.h). The formula above holds for stored columns.
enum class ActivationQuant : uint8_t { None, DynamicPerTokenFp8 };

struct QuantScales {
  const float* scale = nullptr;
  const float* zero = nullptr;
  int64_t group = 0;
  ActivationQuant activations = ActivationQuant::None;
  const int32_t* input_order = nullptr;
};

// "none", "dynamic-per-token-fp8" (the spelling of GGUF's anvil.quantization.activations).
const char* activation_quant_name(ActivationQuant activations);
// The inverse; nullopt for an unknown name.
std::optional<ActivationQuant> activation_quant_from_name(const std::string& name);

// I8 dot products accumulate in int32: 127 * 127 * cols must stay below 2^31.
constexpr int64_t kMaxI8Cols = 133000;

// Ok when the tensor's scales fit its dtype: none for the plain and GGML block types; for the
// scaled types a 2-D weight with scales present, a supported group that divides the row, zero
// points only for I4 and activation quantization only for F8_E4M3. Cheap (no pass over the arrays): for per-call argument checks.
Status check_quant_scale_layout(const Tensor& tensor);
// The layout check plus the values: finite scales, zero points integers in 0..15, an input_order
// that is a permutation. One pass over
// the scale arrays: for loading. Messages name the tensor.
Status check_quant_scales(const Tensor& tensor);

}  // namespace anvil
