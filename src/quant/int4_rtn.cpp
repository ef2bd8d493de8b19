// INT4 round-to-nearest quantization per group, symmetric or with a zero point.
#include "quant/int4_rtn.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "quant/int4_codes.h"

namespace anvil {
namespace {

uint8_t clamp_code(float v, float lo, float hi) { return static_cast<uint8_t>(std::clamp(v, lo, hi)); }

// One group: writes `n` unsigned codes, returns (scale, zero).
std::pair<float, float> quantize_group(const float* w, int64_t n, bool symmetric, uint8_t* codes) {
  float lo = 0.0f, hi = 0.0f;  // the range always includes 0
  for (int64_t i = 0; i < n; ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
  if (symmetric) {
    const float scale = std::max(-lo, hi) / 7.5f;
    for (int64_t i = 0; i < n; ++i)
      codes[i] = scale > 0.0f ? clamp_code(std::nearbyint(w[i] / scale) + kI4ImplicitZero, 0.0f, 15.0f)
                              : kI4ImplicitZero;  // clamp(q, -8, 7) + 8
    return {scale, static_cast<float>(kI4ImplicitZero)};
  }
  const float scale = (hi - lo) / 15.0f;
  if (!(scale > 0.0f)) {
    std::fill(codes, codes + n, 0);
    return {0.0f, 0.0f};
  }
  const float zero = std::clamp(std::nearbyint(-lo / scale), 0.0f, 15.0f);
  for (int64_t i = 0; i < n; ++i) codes[i] = clamp_code(std::nearbyint(w[i] / scale) + zero, 0.0f, 15.0f);
  return {scale, zero};
}

}  // namespace

Result<QuantizedMatrix> quantize_int4_rtn(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                          const Int4Options& options, ThreadPool& pool) {
  const int64_t group = options.group;
  if (group != 32 && group != 64 && group != 128)
    return Status::error(what + ": int4 group size " + std::to_string(group) + " is not supported (32, 64 or 128)");
  if (cols % group != 0)
    return Status::error(what + " has rows of " + std::to_string(cols) + " elements, not a multiple of the int4 " +
                         "group size " + std::to_string(group));
  ANVIL_RETURN_IF_ERROR(check_quantizer_input(what, w, rows, cols));
  QuantizedMatrix q;
  q.dtype = DType::I4;
  q.rows = rows;
  q.cols = cols;
  q.group = group;
  const int64_t groups = cols / group;
  q.codes.resize(static_cast<size_t>(rows * cols / 2));
  q.scale.resize(static_cast<size_t>(rows * groups));
  if (!options.symmetric) q.zero.resize(q.scale.size());
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> codes(static_cast<size_t>(cols));
    for (int64_t r = begin; r < end; ++r) {
      for (int64_t g = 0; g < groups; ++g) {
        const auto [scale, zero] = quantize_group(w + r * cols + g * group, group, options.symmetric,
                                                  codes.data() + g * group);
        q.scale[r * groups + g] = scale;
        if (!options.symmetric) q.zero[r * groups + g] = zero;
      }
      i4_pack(codes.data(), cols, reinterpret_cast<uint8_t*>(q.codes.data()) + r * cols / 2);
    }
  });
  return q;
}

}  // namespace anvil
