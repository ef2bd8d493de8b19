// QuantizedMatrix: the codes and scales a scaled-type quantizer (fp8, int8, int4) produces.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/tensor.h"

namespace anvil {

struct QuantizedMatrix {
  DType dtype = DType::F32;  // F8_E4M3, I8 or I4
  int64_t rows = 0, cols = 0;
  int64_t group = 0;              // QuantScales::group
  std::vector<std::byte> codes;   // rows * dtype_bytes(dtype, cols)
  std::vector<float> scale;       // rows * (cols / group)
  std::vector<float> zero;        // same size for asymmetric I4, else empty
  ActivationQuant activations = ActivationQuant::None;  // QuantScales::activations (F8_E4M3 only)
  std::vector<int32_t> input_order;  // QuantScales::input_order (I4 by GPTQ with dynamic act-order groups), or empty

  // A (rows, cols) Tensor over these buffers, scales attached; valid while this object lives.
  Tensor view(std::string name) const;
};

// Shared input checks of the quantizers: a non-empty matrix of finite values (the message
// names `what` and the first bad element's position).
Status check_quantizer_input(const std::string& what, const float* w, int64_t rows, int64_t cols);

}  // namespace anvil
