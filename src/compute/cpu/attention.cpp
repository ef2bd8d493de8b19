// Plain attention: scores, softmax, weighted sum (the paged, flash-style kernels come later).
#include "compute/cpu/attention.h"

#include <cstring>

#include "compute/cpu/vector_ops.h"

namespace anvil {

void attend_one_head(const float* q, const float* keys, const float* values, int64_t row_stride,
                     int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out) {
  const int64_t n = last - first + 1;
  for (int64_t j = 0; j < n; ++j) scores[j] = dot_f32(q, keys + (first + j) * row_stride, head_dim) * scale;
  softmax_inplace(scores, n);
  std::memset(out, 0, head_dim * sizeof(float));
  for (int64_t j = 0; j < n; ++j) axpy(scores[j], values + (first + j) * row_stride, out, head_dim);
}

}  // namespace anvil
