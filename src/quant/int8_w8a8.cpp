// INT8 W8A8 quantizers: symmetric per-channel weights and per-token dynamic activations.
#include "quant/int8_w8a8.h"

#include <algorithm>
#include <cmath>

namespace anvil {
namespace {

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

// Round half to even into [-127, 127]; NaN (a corrupt activation) becomes 0, not undefined behaviour.
int8_t clamp_code(float v) {
  const float r = std::nearbyint(v);
  if (r >= 127.0f) return 127;
  if (r <= -127.0f) return -127;
  return r == r ? static_cast<int8_t>(r) : 0;
}

}  // namespace

Result<QuantizedMatrix> quantize_int8_per_channel(const std::string& what, const float* w, int64_t rows,
                                                  int64_t cols, ThreadPool& pool) {
  ANVIL_RETURN_IF_ERROR(check_quantizer_input(what, w, rows, cols));
  if (cols > kMaxI8Cols)
    return Status::error(what + ": rows of " + std::to_string(cols) + " elements are too long for int32 dot products");
  QuantizedMatrix q;
  q.dtype = DType::I8;
  q.rows = rows;
  q.cols = cols;
  q.group = cols;
  q.codes.resize(static_cast<size_t>(rows * cols));
  q.scale.resize(static_cast<size_t>(rows));
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = w + r * cols;
      const float scale = absmax(row, cols) / 127.0f;
      q.scale[r] = scale;
      auto* codes = reinterpret_cast<int8_t*>(q.codes.data()) + r * cols;
      for (int64_t c = 0; c < cols; ++c) codes[c] = scale > 0.0f ? clamp_code(row[c] / scale) : 0;
    }
  });
  return q;
}

void quantize_int8_per_token(const float* x, int64_t n_tokens, int64_t k, int8_t* codes, float* scales) {
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = x + t * k;
    const float d = absmax(xt, k) / 127.0f;
    const float inv = d != 0.0f ? 1.0f / d : 0.0f;
    scales[t] = d;
    for (int64_t i = 0; i < k; ++i) codes[t * k + i] = clamp_code(xt[i] * inv);
  }
}

}  // namespace anvil
