// FP8 E4M3 quantization: absmax scaling onto ±448, then round-to-nearest-even encoding.
#include "quant/fp8.h"

#include <algorithm>
#include <cmath>

#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

float absmax(const float* x, int64_t n) {
  float m = 0.0f;
  for (int64_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

}  // namespace

Result<QuantizedMatrix> quantize_fp8(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                     Fp8Granularity granularity, ThreadPool& pool) {
  ANVIL_RETURN_IF_ERROR(check_quantizer_input(what, w, rows, cols));
  QuantizedMatrix q;
  q.dtype = DType::F8_E4M3;
  q.rows = rows;
  q.cols = cols;
  q.group = cols;
  q.codes.resize(static_cast<size_t>(rows * cols));
  q.scale.resize(static_cast<size_t>(rows));
  const float tensor_scale = granularity == Fp8Granularity::PerTensor ? absmax(w, rows * cols) / kE4M3Max : 0.0f;
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const float* row = w + r * cols;
      const float scale = granularity == Fp8Granularity::PerTensor ? tensor_scale : absmax(row, cols) / kE4M3Max;
      q.scale[r] = scale;
      auto* codes = reinterpret_cast<uint8_t*>(q.codes.data()) + r * cols;
      // Division, not a reciprocal multiply: offline, and one rounding closer to w / scale.
      for (int64_t c = 0; c < cols; ++c) codes[c] = scale > 0.0f ? float_to_e4m3(row[c] / scale) : 0;
    }
  });
  return q;
}

}  // namespace anvil
