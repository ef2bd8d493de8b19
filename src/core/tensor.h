// Tensor: a typed, shaped view of bytes owned elsewhere (an mmap or a buffer kept by the owner).
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/quant_scales.h"

namespace anvil {

// Shapes are row-major in numpy order: the LAST dimension is contiguous. A weight matrix
// of a linear layer y = W x has shape (out_features, in_features), as in PyTorch/HF.
// (GGUF's ne[] lists dimensions innermost first; readers reverse it.)
struct Tensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  QuantScales quant;  // F8_E4M3 / I8 / I4 only (core/quant_scales.h); empty for every other dtype

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
  }
  int64_t cols() const { return shape.empty() ? 1 : shape.back(); }
  int64_t rows() const { return shape.empty() ? 1 : numel() / cols(); }
  size_t row_bytes() const { return dtype_bytes(dtype, cols()); }
  // Row-major dtypes only: a panel layout's rows are interleaved (read them with weight_row_to_f32).
  const std::byte* row(int64_t r) const {
    assert(!dtype_is_panels(dtype) || rows() == 1);
    return data + static_cast<size_t>(r) * row_bytes();
  }
  std::string shape_string() const;  // "(4096, 11008)"

  bool has_scales() const { return quant.scale != nullptr; }
  int64_t scale_groups() const { return quant.group > 0 ? cols() / quant.group : 0; }  // per row
  const float* row_scales(int64_t r) const { return quant.scale + r * scale_groups(); }
  const float* row_zeros(int64_t r) const { return quant.zero ? quant.zero + r * scale_groups() : nullptr; }
  // Bytes of the scale, zero and input-order arrays (0 without scales); nbytes counts the codes only.
  size_t scale_bytes() const {
    if (!has_scales()) return 0;
    const size_t one = static_cast<size_t>(rows() * scale_groups()) * sizeof(float);
    const size_t order = quant.input_order ? static_cast<size_t>(cols()) * sizeof(int32_t) : 0;
    return (quant.zero ? 2 * one : one) + order;
  }
};

}  // namespace anvil
