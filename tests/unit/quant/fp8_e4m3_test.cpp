// FP8 E4M3 encode/decode: all 256 codes, round-to-nearest-even ties, saturation, NaN, subnormals.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

bool is_nan_code(int code) { return (code & 0x7F) == 0x7F; }

// Independent decoding from the OCP spec (not the table the library builds).
double spec_value(int code) {
  const int sign = code >> 7, e = (code >> 3) & 15, m = code & 7;
  const double magnitude = e == 0 ? m * std::ldexp(1.0, -9) : (8 + m) * std::ldexp(1.0, e - 10);
  return sign ? -magnitude : magnitude;
}

TEST(Fp8E4M3, DecodesEveryCodeAsTheSpecSays) {
  for (int code = 0; code < 256; ++code) {
    const float value = e4m3_to_float(static_cast<uint8_t>(code));
    if (is_nan_code(code)) {
      EXPECT_TRUE(std::isnan(value)) << code;
      EXPECT_EQ(std::signbit(value), code >= 0x80) << code;
    } else {
      EXPECT_EQ(value, spec_value(code)) << code;
    }
    const float from_table = e4m3_decode_table()[code];
    EXPECT_TRUE(from_table == value || (std::isnan(from_table) && std::isnan(value))) << code;
  }
  EXPECT_EQ(e4m3_to_float(0x7E), 448.0f);
  EXPECT_EQ(e4m3_to_float(0xFE), -448.0f);
  EXPECT_EQ(e4m3_to_float(0x01), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(e4m3_to_float(0x08), std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_TRUE(std::signbit(e4m3_to_float(0x80)));
}

TEST(Fp8E4M3, EveryCodeRoundTrips) {
  for (int code = 0; code < 256; ++code) {
    const uint8_t encoded = float_to_e4m3(e4m3_to_float(static_cast<uint8_t>(code)));
    if (is_nan_code(code)) {
      EXPECT_TRUE(is_nan_code(encoded)) << code;
      EXPECT_EQ(encoded & 0x80, code & 0x80) << code;
    } else {
      EXPECT_EQ(encoded, code) << code;
    }
  }
}

TEST(Fp8E4M3, TiesRoundToEvenAndOtherValuesToNearest) {
  // Between each pair of adjacent finite magnitudes: just below, at and just above the midpoint.
  for (int code = 0; code < 0x7E; ++code) {
    const double lo = spec_value(code), hi = spec_value(code + 1), mid = (lo + hi) / 2;
    const int even = (code % 2 == 0) ? code : code + 1;
    for (int sign : {1, -1}) {
      const int s = sign < 0 ? 0x80 : 0;
      EXPECT_EQ(float_to_e4m3(static_cast<float>(sign * mid)), s | even) << "tie after code " << code;
      EXPECT_EQ(float_to_e4m3(std::nextafter(static_cast<float>(sign * mid), 0.0f)), s | code) << code;
      EXPECT_EQ(float_to_e4m3(std::nextafter(static_cast<float>(sign * mid), sign * 1e9f)), s | (code + 1)) << code;
    }
  }
}

TEST(Fp8E4M3, SaturatesAtMaxAndKeepsNan) {
  const float inf = std::numeric_limits<float>::infinity();
  for (float big : {448.0f, 449.0f, 464.0f, 479.0f, 480.0f, 1e6f, 3e38f, inf}) {
    EXPECT_EQ(float_to_e4m3(big), 0x7E) << big;
    EXPECT_EQ(float_to_e4m3(-big), 0xFE) << big;
  }
  EXPECT_EQ(float_to_e4m3(std::nanf("")) & 0x7F, 0x7F);
  EXPECT_EQ(float_to_e4m3(-std::nanf("")), 0xFF);
}

TEST(Fp8E4M3, TinyValuesRoundToZeroOrSmallestSubnormal) {
  const float smallest = std::ldexp(1.0f, -9);
  EXPECT_EQ(float_to_e4m3(0.0f), 0x00);
  EXPECT_EQ(float_to_e4m3(-0.0f), 0x80);
  EXPECT_EQ(float_to_e4m3(smallest / 2), 0x00);                        // tie: to even (zero)
  EXPECT_EQ(float_to_e4m3(std::nextafter(smallest / 2, 1.0f)), 0x01);  // just above: up
  EXPECT_EQ(float_to_e4m3(smallest * 1.5f), 0x02);                     // tie between 1 and 2: even
  EXPECT_EQ(float_to_e4m3(1e-30f), 0x00);
}

TEST(Fp8E4M3, RelativeErrorOfNormalsIsAtMostOneSixteenth) {
  for (float v = 1.0f / 64; v < 448.0f; v *= 1.0137f) {
    const float q = e4m3_to_float(float_to_e4m3(v));
    EXPECT_LE(std::fabs(q - v), v / 16.0f) << v;
  }
}

}  // namespace
}  // namespace anvil
