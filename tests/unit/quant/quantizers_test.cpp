// The scaled-type quantizers (fp8, int8 per channel, int4 RTN) and the per-token activation
// quantizer: their stated round-trip bounds, element by element, on awkward data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "compute/cpu/matmul.h"
#include "quant/fp8.h"
#include "quant/fp8_e4m3.h"
#include "quant/int4_codes.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

// Gaussian rows with an outlier per row, an all-zero row, a constant row and a one-signed row:
// the cases that break scale and zero-point arithmetic.
std::vector<float> awkward_matrix(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 0.02f);
  std::vector<float> w(rows * cols);
  for (float& v : w) v = dist(rng);
  for (int64_t r = 0; r < rows; ++r) w[r * cols + (r * 7) % cols] *= 25.0f;
  std::fill(w.begin() + 1 * cols, w.begin() + 2 * cols, 0.0f);
  std::fill(w.begin() + 2 * cols, w.begin() + 3 * cols, -0.37f);
  for (int64_t c = 0; c < cols; ++c) w[3 * cols + c] = std::fabs(w[3 * cols + c]) + 1e-3f;
  return w;
}

std::vector<float> dequantize(const Tensor& t) {
  std::vector<float> out(t.numel());
  for (int64_t r = 0; r < t.rows(); ++r) weight_row_to_f32(t, r, out.data() + r * t.cols());
  return out;
}

TEST(QuantizeFp8, PerChannelAndPerTensorMeetTheE4M3Bound) {
  ThreadPool pool(2);
  const int64_t rows = 9, cols = 96;
  const std::vector<float> w = awkward_matrix(rows, cols, 1);
  for (Fp8Granularity g : {Fp8Granularity::PerChannel, Fp8Granularity::PerTensor}) {
    Result<QuantizedMatrix> q = quantize_fp8("w", w.data(), rows, cols, g, pool);
    ASSERT_TRUE(q.is_ok()) << q.status().message();
    const Tensor t = q->view("w");
    ASSERT_TRUE(check_quant_scales(t).is_ok());
    EXPECT_EQ(t.quant.group, cols);
    const std::vector<float> back = dequantize(t);
    float global_max = 0;
    for (float v : w) global_max = std::max(global_max, std::fabs(v));
    for (int64_t r = 0; r < rows; ++r) {
      const float scale = q->scale[r];
      float row_max = 0;
      for (int64_t c = 0; c < cols; ++c) row_max = std::max(row_max, std::fabs(w[r * cols + c]));
      EXPECT_FLOAT_EQ(scale, (g == Fp8Granularity::PerTensor ? global_max : row_max) / 448.0f) << r;
      for (int64_t c = 0; c < cols; ++c) {
        const float v = w[r * cols + c];
        if (scale == 0) {
          EXPECT_EQ(back[r * cols + c], 0.0f);
          continue;
        }
        // Relative 2^-4 of the scaled value where it is a normal E4M3 number, else the subnormal
        // step's half (2^-10); plus the float rounding of w/scale and code*scale.
        const double scaled = std::fabs(v / scale);
        const double bound = std::max(scaled / 16.0, std::ldexp(1.0, -10)) * scale + 1e-6 * std::fabs(v);
        EXPECT_LE(std::fabs(back[r * cols + c] - v), bound) << "row " << r << " col " << c;
      }
    }
  }
}

TEST(QuantizeFp8, RowMaximumMapsTo448) {
  ThreadPool pool(1);
  const std::vector<float> w = {0.5f, -2.0f, 1.0f, 0.25f};
  Result<QuantizedMatrix> q = quantize_fp8("w", w.data(), 1, 4, Fp8Granularity::PerChannel, pool);
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(static_cast<uint8_t>(q->codes[1]), 0xFE);  // -448
  EXPECT_EQ(e4m3_to_float(static_cast<uint8_t>(q->codes[0])) * q->scale[0], 0.5f);
}

TEST(QuantizeInt8, ErrorIsAtMostHalfAStep) {
  ThreadPool pool(2);
  const int64_t rows = 9, cols = 200;
  const std::vector<float> w = awkward_matrix(rows, cols, 2);
  Result<QuantizedMatrix> q = quantize_int8_per_channel("w", w.data(), rows, cols, pool);
  ASSERT_TRUE(q.is_ok()) << q.status().message();
  const Tensor t = q->view("w");
  ASSERT_TRUE(check_quant_scales(t).is_ok());
  const std::vector<float> back = dequantize(t);
  const auto* codes = reinterpret_cast<const int8_t*>(q->codes.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float scale = q->scale[r];
    for (int64_t c = 0; c < cols; ++c) {
      EXPECT_GE(codes[r * cols + c], -127);
      const float v = w[r * cols + c];
      EXPECT_LE(std::fabs(back[r * cols + c] - v), scale / 2 * (1 + 1e-6) + 1e-7f * std::fabs(v)) << r << " " << c;
    }
  }
  EXPECT_EQ(q->scale[1], 0.0f);  // the all-zero row
}

TEST(QuantizeInt4, SymmetricAndAsymmetricErrorsAreAtMostHalfAStepPerGroup) {
  ThreadPool pool(2);
  const int64_t rows = 9, cols = 256;
  const std::vector<float> w = awkward_matrix(rows, cols, 3);
  for (int64_t group : {32, 64, 128})
    for (bool symmetric : {true, false}) {
      SCOPED_TRACE("group " + std::to_string(group) + (symmetric ? " symmetric" : " asymmetric"));
      Result<QuantizedMatrix> q = quantize_int4_rtn("w", w.data(), rows, cols, {group, symmetric}, pool);
      ASSERT_TRUE(q.is_ok()) << q.status().message();
      const Tensor t = q->view("w");
      ASSERT_TRUE(check_quant_scales(t).is_ok()) << check_quant_scales(t).message();
      EXPECT_EQ(t.quant.zero == nullptr, symmetric);
      const std::vector<float> back = dequantize(t);
      const int64_t groups = cols / group;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < cols; ++c) {
          const float scale = q->scale[r * groups + c / group];
          const float v = w[r * cols + c];
          EXPECT_LE(std::fabs(back[r * cols + c] - v), scale / 2 * (1 + 1e-5) + 1e-7f * std::fabs(v))
              << "row " << r << " col " << c;
        }
      // Asymmetric: the constant negative row's value is the range's end, code 0: exact. (Symmetric
      // maps it to -7.5 steps, a tie rounded to -8: off by exactly half a step, within the bound.)
      if (!symmetric) {
        for (int64_t c = 0; c < cols; ++c) EXPECT_NEAR(back[2 * cols + c], -0.37f, 1e-6f);
      }
    }
}

TEST(QuantizeInt4, CodesAndLayoutMatchTheConvention) {
  ThreadPool pool(1);
  // One group of 32: absmax 7.5 gives scale 1, so codes are the rounded values themselves.
  std::vector<float> w(32, 0.0f);
  w[0] = 7.5f;   // 7.5 -> rne 8 -> clamped to 7 -> stored 15
  w[1] = -7.5f;  // -> -8 -> stored 0
  w[2] = 2.5f;   // tie -> 2 -> stored 10
  w[3] = -1.0f;  // -> stored 7
  Result<QuantizedMatrix> q = quantize_int4_rtn("w", w.data(), 1, 32, {32, true}, pool);
  ASSERT_TRUE(q.is_ok());
  EXPECT_EQ(q->scale[0], 1.0f);
  const auto* row = reinterpret_cast<const uint8_t*>(q->codes.data());
  EXPECT_EQ(row[0], 15 | (0 << 4));  // element 0 in the low nibble
  EXPECT_EQ(i4_code(row, 2), 10);
  EXPECT_EQ(i4_code(row, 3), 7);
  EXPECT_EQ(i4_code(row, 4), 8);  // zeros are the implicit zero point

  // Asymmetric: range [-1, 2] -> scale 0.2, zero rne(5) = 5.
  std::vector<float> a(32, 0.0f);
  a[0] = -1.0f;
  a[1] = 2.0f;
  Result<QuantizedMatrix> qa = quantize_int4_rtn("w", a.data(), 1, 32, {32, false}, pool);
  ASSERT_TRUE(qa.is_ok());
  EXPECT_FLOAT_EQ(qa->scale[0], 0.2f);
  EXPECT_EQ(qa->zero[0], 5.0f);
  const auto* arow = reinterpret_cast<const uint8_t*>(qa->codes.data());
  EXPECT_EQ(i4_code(arow, 0), 0);
  EXPECT_EQ(i4_code(arow, 1), 15);
  EXPECT_EQ(i4_code(arow, 2), 5);
}

TEST(Quantizers, RejectBadInputWithClearErrors) {
  ThreadPool pool(1);
  std::vector<float> w(2 * 96, 0.1f);
  Result<QuantizedMatrix> q = quantize_int4_rtn("t", w.data(), 2, 96, {64, true}, pool);
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("not a multiple of the int4 group size 64"), std::string::npos)
      << q.status().message();
  q = quantize_int4_rtn("t", w.data(), 2, 96, {48, true}, pool);
  EXPECT_FALSE(q.is_ok());
  w[5] = std::nanf("");
  q = quantize_fp8("t", w.data(), 2, 96, Fp8Granularity::PerChannel, pool);
  ASSERT_FALSE(q.is_ok());
  EXPECT_NE(q.status().message().find("(0, 5) is not finite"), std::string::npos) << q.status().message();
  EXPECT_FALSE(quantize_int8_per_channel("t", w.data(), 2, 96, pool).is_ok());
}

TEST(QuantizeInt8PerToken, OneScalePerTokenAndHalfStepError) {
  std::mt19937 rng(4);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const int64_t tokens = 3, k = 67;
  std::vector<float> x(tokens * k);
  for (float& v : x) v = dist(rng);
  std::fill(x.begin() + k, x.begin() + 2 * k, 0.0f);  // an all-zero token
  std::vector<int8_t> q(tokens * k);
  std::vector<float> scale(tokens);
  quantize_int8_per_token(x.data(), tokens, k, q.data(), scale.data());
  EXPECT_EQ(scale[1], 0.0f);
  for (int64_t t = 0; t < tokens; ++t) {
    float amax = 0;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[t * k + i]));
    EXPECT_EQ(scale[t], amax / 127.0f);
    for (int64_t i = 0; i < k; ++i) {
      EXPECT_LE(std::abs(q[t * k + i]), 127);
      EXPECT_LE(std::fabs(q[t * k + i] * scale[t] - x[t * k + i]), scale[t] / 2 * (1 + 1e-5));
    }
  }
}

}  // namespace
}  // namespace anvil
