// Scalar dequantization of F8_E4M3 / I8 / I4 rows: decode each code, then apply its group's scale.
#include "quant/scaled_dequant.h"

#include "quant/fp8_e4m3.h"
#include "quant/int4_codes.h"

namespace anvil {

void dequantize_scaled_row(const Tensor& weight, int64_t row, float* dst) {
  const int64_t cols = weight.cols();
  const std::byte* src = weight.row(row);
  // Decode codes (I4 relative to its implicit zero 8), then scale per group.
  dtype_info(weight.dtype).to_float(src, dst, cols);
  if (!weight.has_scales()) return;
  const int64_t group = weight.quant.group;
  const float* scales = weight.row_scales(row);
  const float* zeros = weight.row_zeros(row);
  for (int64_t g = 0; g < cols / group; ++g) {
    const float scale = scales[g];
    // Stored zero z: (u - z) = (u - 8) + (8 - z).
    const float shift = zeros ? static_cast<float>(kI4ImplicitZero) - zeros[g] : 0.0f;
    float* out = dst + g * group;
    for (int64_t i = 0; i < group; ++i) out[i] = (out[i] + shift) * scale;
  }
}

}  // namespace anvil
