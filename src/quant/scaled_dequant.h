// Dequantizing rows of the scaled weight types (F8_E4M3, I8, I4) with their QuantScales: the
// scalar reference every kernel over these types is tested against.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace anvil {

// dst[c] = (code[row][c] - zero) * scale for the row's group of c (core/quant_scales.h). A
// tensor without scales (check_quant_scales rejects those when loading) decodes with scale 1
// and the implicit zero, i.e. as DTypeInfo::to_float.
void dequantize_scaled_row(const Tensor& weight, int64_t row, float* dst);

}  // namespace anvil
