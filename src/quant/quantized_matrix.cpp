// QuantizedMatrix views and the quantizers' shared input checks.
#include "quant/quantized_matrix.h"

#include <cmath>

namespace anvil {

Tensor QuantizedMatrix::view(std::string name) const {
  Tensor t;
  t.name = std::move(name);
  t.dtype = dtype;
  t.shape = {rows, cols};
  t.data = codes.data();
  t.nbytes = codes.size();
  t.quant.scale = scale.data();
  t.quant.zero = zero.empty() ? nullptr : zero.data();
  t.quant.group = group;
  t.quant.activations = activations;
  t.quant.input_order = input_order.empty() ? nullptr : input_order.data();
  return t;
}

Status check_quantizer_input(const std::string& what, const float* w, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0 || w == nullptr)
    return Status::error(what + ": nothing to quantize (" + std::to_string(rows) + " x " + std::to_string(cols) + ")");
  for (int64_t i = 0; i < rows * cols; ++i)
    if (!std::isfinite(w[i]))
      return Status::error(what + ": element (" + std::to_string(i / cols) + ", " + std::to_string(i % cols) +
                           ") is not finite; cannot quantize");
  return Status::ok();
}

}  // namespace anvil
