// Per-token E4M3 activation rounding (quant/fp8_activations.h): known values, ties, zero rows,
// saturation, and the AVX-512 version bit for bit against the scalar reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "compute/cpu/isa.h"
#include "quant/fp8_activations.h"
#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

uint32_t bits_of(float v) {
  uint32_t b;
  std::memcpy(&b, &v, 4);
  return b;
}

float float_of(uint32_t b) {
  float v;
  std::memcpy(&v, &b, 4);
  return v;
}

// Both versions on the same rows; equal bits everywhere (NaN payloads aside).
void expect_simd_equals_scalar(const std::vector<float>& x, int64_t n_tokens, int64_t k, const char* what) {
  std::vector<float> simd(x.size(), -1.0f), scalar(x.size(), -2.0f);
  quantize_dequantize_rows_e4m3(x.data(), n_tokens, k, simd.data());
  quantize_dequantize_rows_e4m3_scalar(x.data(), n_tokens, k, scalar.data());
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(scalar[i]) && std::isnan(simd[i])) continue;
    ASSERT_EQ(bits_of(simd[i]), bits_of(scalar[i]))
        << what << " k=" << k << " element " << i << " x=" << x[i] << " simd " << simd[i] << " scalar " << scalar[i];
  }
}

bool has_avx512() { return active_isa() >= Isa::Avx512; }

TEST(Fp8Activations, KnownValuesWithUnitScale) {
  // 448 pins the token's scale to exactly 1, so each output is the E4M3 rounding of its input.
  const std::vector<float> x = {448.0f,  1.0625f, 1.1875f, -3e-4f,  0.0f,   -0.0f,   0x1p-9f, 0x1.8p-10f,
                                0x1p-10f, 300.0f, 17.0f,   -240.0f, 0.33f, 0x1p-6f, 0x1.1p-6f, 5.5f};
  const std::vector<float> expected = {448.0f, 1.0f,   1.25f,   -0.0f,  0.0f,    -0.0f,    0x1p-9f, 0x1p-9f,
                                       0.0f,   288.0f, 16.0f,   -240.0f, 0.34375f, 0x1p-6f, 0x1p-6f, 5.5f};
  std::vector<float> y(x.size());
  quantize_dequantize_rows_e4m3_scalar(x.data(), 1, static_cast<int64_t>(x.size()), y.data());
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_EQ(bits_of(y[i]), bits_of(expected[i])) << "x=" << x[i] << " got " << y[i] << " expected " << expected[i];
  expect_simd_equals_scalar(x, 1, static_cast<int64_t>(x.size()), "known values");
}

TEST(Fp8Activations, ScaleIsAmaxOver448AndTheLargestElementSaturates) {
  const std::vector<float> x = {3.0f, -1.5f, 0.001f, -3.0f, 2.9f};
  std::vector<float> y(x.size());
  quantize_dequantize_rows_e4m3_scalar(x.data(), 1, 5, y.data());
  const float s = 3.0f / 448.0f;
  EXPECT_EQ(y[0], 448.0f * s);
  EXPECT_EQ(y[3], -448.0f * s);
  EXPECT_EQ(y[1], e4m3_to_float(float_to_e4m3(-1.5f * (1.0f / s))) * s);
  // Every output is an E4M3 value times s (rounding it again changes nothing), within the
  // format's half-step of its input.
  for (size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(e4m3_to_float(float_to_e4m3(y[i] * (1.0f / s))) * s, y[i]) << i;
    EXPECT_LE(std::fabs(y[i] - x[i]), std::max(std::fabs(x[i]) * 0x1p-4f, 0x1p-10f * s) * 1.0001f) << i;
  }
  expect_simd_equals_scalar(x, 1, 5, "saturation");
}

TEST(Fp8Activations, ZeroAndTinyRowsStayZeroAndRowsAreIndependent) {
  const int64_t k = 37;
  std::vector<float> x(4 * k, 0.0f);
  for (int64_t i = 0; i < k; ++i) {
    x[i] = 0.25f * static_cast<float>(i - 18);                 // token 0: ordinary
    x[2 * k + i] = (i % 2 ? -1.0f : 1.0f) * 1e-38f;             // token 2: amax / 448 is subnormal
    x[3 * k + i] = 1000.0f * static_cast<float>(i) - 5000.0f;   // token 3: large
  }
  x[k + 5] = -0.0f;  // token 1: all zeros (one negative)
  std::vector<float> y(x.size(), 7.0f);
  quantize_dequantize_rows_e4m3(x.data(), 4, k, y.data());
  for (int64_t i = 0; i < k; ++i) {
    EXPECT_EQ(bits_of(y[k + i]), 0u) << i;
    EXPECT_EQ(bits_of(y[2 * k + i]), 0u) << i;
  }
  // Token 0 alone gives the same as within the batch.
  std::vector<float> alone(k);
  quantize_dequantize_rows_e4m3(x.data(), 1, k, alone.data());
  for (int64_t i = 0; i < k; ++i) EXPECT_EQ(bits_of(alone[i]), bits_of(y[i])) << i;
  expect_simd_equals_scalar(x, 4, k, "zero rows");
}

// The split form: unscaled E4M3 values and the token scales, whose product is the one-step output.
TEST(Fp8Activations, ValuesTimesScalesEqualTheDequantizedRows) {
  std::mt19937 rng(9);
  std::normal_distribution<float> dist(0.0f, 3.0f);
  const int64_t n_tokens = 5, k = 77;
  std::vector<float> x(n_tokens * k);
  for (float& v : x) v = dist(rng);
  std::fill(x.begin() + 2 * k, x.begin() + 3 * k, 0.0f);  // a zero token
  std::vector<float> dequantized(x.size()), values(x.size()), scales(n_tokens, -1.0f);
  std::vector<float> scalar_values(x.size()), scalar_scales(n_tokens, -1.0f);
  quantize_dequantize_rows_e4m3(x.data(), n_tokens, k, dequantized.data());
  quantize_rows_e4m3(x.data(), n_tokens, k, values.data(), scales.data());
  quantize_rows_e4m3_scalar(x.data(), n_tokens, k, scalar_values.data(), scalar_scales.data());
  EXPECT_EQ(scales[2], 0.0f);
  for (int64_t t = 0; t < n_tokens; ++t) {
    EXPECT_EQ(bits_of(scales[t]), bits_of(scalar_scales[t])) << t;
    float amax = 0;
    for (int64_t i = 0; i < k; ++i) amax = std::max(amax, std::fabs(x[t * k + i]));
    EXPECT_EQ(scales[t], amax / 448.0f) << t;
    for (int64_t i = 0; i < k; ++i) {
      const float v = values[t * k + i];
      ASSERT_EQ(bits_of(v), bits_of(scalar_values[t * k + i])) << t << "," << i;
      ASSERT_EQ(v, e4m3_to_float(float_to_e4m3(v))) << "not an E4M3 value: " << v;
      ASSERT_EQ(bits_of(v * scales[t]), bits_of(dequantized[t * k + i])) << t << "," << i;
    }
  }
}

TEST(Fp8Activations, InPlace) {
  std::mt19937 rng(5);
  std::normal_distribution<float> dist(0.0f, 2.0f);
  std::vector<float> x(3 * 100);
  for (float& v : x) v = dist(rng);
  std::vector<float> out(x.size());
  quantize_dequantize_rows_e4m3(x.data(), 3, 100, out.data());
  quantize_dequantize_rows_e4m3(x.data(), 3, 100, x.data());
  EXPECT_EQ(x, out);
}

// Every 1021st float bit pattern from 0 to 448 (and the negatives), plus every tie between
// neighbouring E4M3 values, one nudge either side of it, with the scale pinned to 1.
TEST(Fp8Activations, SimdEqualsScalarOverTheE4M3Range) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: only the scalar version runs";
  std::vector<float> x;
  for (uint32_t b = 0; b <= bits_of(448.0f); b += 1021) {
    x.push_back(float_of(b));
    x.push_back(-float_of(b));
  }
  for (int code = 0; code < 0x7E; ++code) {
    const float lo = e4m3_to_float(static_cast<uint8_t>(code)), hi = e4m3_to_float(static_cast<uint8_t>(code + 1));
    const float tie = 0.5f * (lo + hi);  // exact: neighbours differ in one low bit
    for (float v : {tie, std::nextafter(tie, 0.0f), std::nextafter(tie, 1000.0f)}) {
      x.push_back(v);
      x.push_back(-v);
    }
  }
  // Rows of 4099 with a 448 at each row's start: scale 1 everywhere, plus a masked tail.
  const int64_t k = 4099;
  const int64_t rows = static_cast<int64_t>(x.size()) / (k - 1) + 1;
  std::vector<float> padded(rows * k, 0.0f);
  for (int64_t r = 0, at = 0; r < rows; ++r) {
    padded[r * k] = 448.0f;
    for (int64_t i = 1; i < k && at < static_cast<int64_t>(x.size()); ++i) padded[r * k + i] = x[at++];
  }
  expect_simd_equals_scalar(padded, rows, k, "E4M3 range");
  // The ties went to the even code.
  std::vector<float> y(padded.size());
  quantize_dequantize_rows_e4m3_scalar(padded.data(), rows, k, y.data());
  for (int64_t i = 0; i < rows * k; ++i) {
    const uint8_t code = float_to_e4m3(padded[i]);
    ASSERT_EQ(bits_of(y[i]), bits_of(e4m3_to_float(code))) << padded[i];
  }
}

TEST(Fp8Activations, SimdEqualsScalarOnRandomRows) {
  if (!has_avx512()) GTEST_SKIP() << "no AVX-512 on this CPU: only the scalar version runs";
  std::mt19937 rng(17);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::uniform_real_distribution<float> exponent(-30.0f, 30.0f);
  for (int64_t k : {1, 2, 15, 16, 17, 31, 64, 100, 257, 2048}) {
    for (int64_t n_tokens : {1, 3, 8}) {
      std::vector<float> x(n_tokens * k);
      // Magnitudes over many binades per row, so small elements land in E4M3's subnormal range.
      for (float& v : x) v = dist(rng) * std::exp2(exponent(rng));
      expect_simd_equals_scalar(x, n_tokens, k, "random");
    }
  }
}

TEST(Fp8Activations, NonFiniteInputGivesNanNotACrash) {
  std::vector<float> x = {1.0f, std::numeric_limits<float>::infinity(), -2.0f, std::nanf(""), 0.5f, 3.0f};
  std::vector<float> y(x.size());
  quantize_dequantize_rows_e4m3(x.data(), 2, 3, y.data());
  EXPECT_TRUE(std::isnan(y[1]));  // inf: the scale is inf
  EXPECT_TRUE(std::isnan(y[3]));  // NaN stays NaN; its neighbours still round with amax 3
  EXPECT_FLOAT_EQ(y[5], 3.0f);
  expect_simd_equals_scalar(x, 2, 3, "non-finite");
}

}  // namespace
}  // namespace anvil
