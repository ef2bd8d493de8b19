// Plain matmul over dequantized weight rows, parallel over output rows.
#include "compute/cpu/matmul.h"

#include <cstring>
#include <vector>

#include "compute/cpu/vector_ops.h"

namespace anvil {

void weight_row_to_f32(const Tensor& weight, int64_t row, float* dst) {
  const std::byte* src = weight.row(row);
  const int64_t cols = weight.cols();
  switch (weight.dtype) {
    case DType::F32: std::memcpy(dst, src, cols * sizeof(float)); break;
    case DType::BF16: bf16_row_to_f32(reinterpret_cast<const uint16_t*>(src), dst, cols); break;
    case DType::F16: f16_row_to_f32(reinterpret_cast<const uint16_t*>(src), dst, cols); break;
    default: dtype_info(weight.dtype).to_float(src, dst, cols); break;
  }
}

void matmul(ThreadPool& pool, const Tensor& weight, const float* x, int64_t n_tokens, float* y) {
  const int64_t out = weight.rows(), in = weight.cols();
  pool.parallel_for(out, [&](int64_t begin, int64_t end) {
    std::vector<float> row_buffer(weight.dtype == DType::F32 ? 0 : in);
    for (int64_t r = begin; r < end; ++r) {
      const float* row;
      if (weight.dtype == DType::F32) {
        row = reinterpret_cast<const float*>(weight.row(r));
      } else {
        weight_row_to_f32(weight, r, row_buffer.data());
        row = row_buffer.data();
      }
      for (int64_t t = 0; t < n_tokens; ++t) y[t * out + r] = dot_f32(row, x + t * in, in);
    }
  });
}

}  // namespace anvil
