// Tests for GGML block (de)quantization against an independent NumPy reference, quantizer error
// bounds, and the fp16/bf16 scalar conversions in dtype.cpp.
#include "quant/ggml_blocks.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "../test_paths.h"

namespace anvil {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

template <typename T>
std::vector<T> read_array(const std::string& path) {
  const std::string bytes = read_file(path);
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Runs tests/golden/gen_ggml_blocks.py once per process and returns its output directory.
const std::string& golden_dir() {
  static const std::string dir = [] {
    const std::string out = anvil::testing::scratch_dir("ggml_blocks_golden");
    const std::string python = ANVIL_PYTHON;
    if (python.empty()) return std::string();
    const std::string cmd = python + " " + ANVIL_SOURCE_DIR + "/tests/golden/gen_ggml_blocks.py --out " + out;
    return std::system(cmd.c_str()) == 0 ? out : std::string();
  }();
  return dir;
}

class GgmlBlocksGolden : public ::testing::TestWithParam<DType> {};

TEST_P(GgmlBlocksGolden, DequantizeMatchesNumpy) {
  ASSERT_FALSE(golden_dir().empty()) << "tests/golden/gen_ggml_blocks.py failed (needs python3 with numpy: "
                                        "scripts/install-deps.sh installs it)";
  const DTypeInfo& info = dtype_info(GetParam());
  std::string name = info.name;
  for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  const std::string raw = read_file(golden_dir() + "/" + name + ".bin");
  const std::vector<float> expected = read_array<float>(golden_dir() + "/" + name + ".f32");
  ASSERT_GT(raw.size(), 0u);
  ASSERT_EQ(raw.size() % info.block_bytes, 0u);
  const int64_t n = static_cast<int64_t>(raw.size() / info.block_bytes) * info.block_elems;
  ASSERT_EQ(static_cast<int64_t>(expected.size()), n);

  std::vector<float> got(n);
  info.to_float(raw.data(), got.data(), n);
  int mismatches = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Same float32 operations in the same order: results must be bit-identical.
    if (float_bits(got[i]) != float_bits(expected[i]) && !(std::isnan(got[i]) && std::isnan(expected[i]))) {
      if (++mismatches <= 5)
        ADD_FAILURE() << name << " element " << i << " (block " << i / info.block_elems << "): got " << got[i]
                      << ", numpy " << expected[i];
    }
  }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(GgmlBlocks, GgmlBlocksGolden, ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(GgmlBlocksGoldenFp16, Fp16ToFloatMatchesNumpyForEveryHalf) {
  ASSERT_FALSE(golden_dir().empty()) << "tests/golden/gen_ggml_blocks.py failed (needs python3 with numpy: "
                                        "scripts/install-deps.sh installs it)";
  const std::vector<float> expected = read_array<float>(golden_dir() + "/fp16_to_f32.f32");
  ASSERT_EQ(expected.size(), 65536u);
  for (uint32_t h = 0; h < 65536; ++h) {
    const float got = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(expected[h])) {
      EXPECT_TRUE(std::isnan(got)) << "half 0x" << std::hex << h;
    } else {
      ASSERT_EQ(float_bits(got), float_bits(expected[h])) << "half 0x" << std::hex << h;
    }
  }
}

TEST(GgmlBlocksGoldenFp16, FloatToFp16MatchesNumpy) {
  ASSERT_FALSE(golden_dir().empty()) << "tests/golden/gen_ggml_blocks.py failed (needs python3 with numpy: "
                                        "scripts/install-deps.sh installs it)";
  const std::vector<uint32_t> inputs = read_array<uint32_t>(golden_dir() + "/f32_to_fp16.u32");
  const std::vector<uint16_t> expected = read_array<uint16_t>(golden_dir() + "/f32_to_fp16.u16");
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GT(inputs.size(), 200000u);
  int mismatches = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const float f = bits_float(inputs[i]);
    const uint16_t got = float_to_fp16(f);
    if (std::isnan(f)) {
      // Any NaN encoding is fine as long as it stays NaN (and keeps the sign).
      if ((got & 0x7c00) != 0x7c00 || (got & 0x3ff) == 0 || (got & 0x8000) != (expected[i] & 0x8000)) ++mismatches;
      continue;
    }
    if (got != expected[i] && ++mismatches <= 5)
      ADD_FAILURE() << "float 0x" << std::hex << inputs[i] << " (" << f << "): got 0x" << got << ", numpy 0x" << expected[i];
  }
  EXPECT_EQ(mismatches, 0);
}

// ---- quantize -> dequantize error bounds -------------------------------------------------------

std::vector<float> random_rows(int64_t rows, int64_t cols, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> x(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    // Rows with different scales and shapes: gaussian, uniform, shifted, and with outliers.
    const float scale = std::pow(10.0f, static_cast<float>(r % 5) - 2.0f);
    for (int64_t c = 0; c < cols; ++c) {
      float v = (r % 3 == 1) ? uniform(rng) : normal(rng);
      if (r % 3 == 2) v += 0.7f;
      if (r % 4 == 3 && c % 97 == 5) v *= 12.0f;
      x[r * cols + c] = v * scale;
    }
  }
  return x;
}

std::vector<float> round_trip(DType dtype, const std::vector<float>& x) {
  const DTypeInfo& info = dtype_info(dtype);
  std::vector<std::byte> q(dtype_bytes(dtype, static_cast<int64_t>(x.size())));
  info.from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  std::vector<float> y(x.size());
  info.to_float(q.data(), y.data(), static_cast<int64_t>(x.size()));
  return y;
}

class GgmlBlocksQuantize : public ::testing::TestWithParam<DType> {};

TEST_P(GgmlBlocksQuantize, RoundTripErrorIsBounded) {
  const DType dtype = GetParam();
  const DTypeInfo& info = dtype_info(dtype);
  ASSERT_NE(info.from_float, nullptr);
  const int64_t rows = 7, cols = 512;  // odd row count, two K super-blocks per row
  const std::vector<float> x = random_rows(rows, cols, 42);
  const std::vector<float> y = round_trip(dtype, x);

  // Worst-case error per block relative to the block's max |x|, and RMS error relative to the
  // block's RMS, both maximized over blocks.
  double worst_max_rel = 0, worst_rms_rel = 0, sum_rms_rel = 0;
  const int64_t block = info.block_elems;
  for (int64_t b = 0; b < rows * cols / block; ++b) {
    double amax = 0, sum_sq = 0, err_sq = 0, err_max = 0;
    for (int64_t i = b * block; i < (b + 1) * block; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
      sum_sq += static_cast<double>(x[i]) * x[i];
      const double e = std::fabs(static_cast<double>(x[i]) - y[i]);
      err_sq += e * e;
      err_max = std::max(err_max, e);
    }
    worst_max_rel = std::max(worst_max_rel, err_max / amax);
    worst_rms_rel = std::max(worst_rms_rel, std::sqrt(err_sq / sum_sq));
    sum_rms_rel += std::sqrt(err_sq / sum_sq);
  }
  // Bounds: Q8_0 half a step of amax/127 (plus fp16 rounding of the scale); Q4_0 one step of
  // amax/8 (the side opposite the extreme clips at +7); K-quants measured with some margin
  // (their mean errors match the level counts: ~0.07 for 15 levels, ~0.018 for 64).
  const double mean_rms_rel = sum_rms_rel / static_cast<double>(rows * cols / block);
  double max_bound = 0, worst_rms_bound = 0, mean_rms_bound = 0;
  switch (dtype) {
    case DType::Q8_0: max_bound = 0.57 / 127, worst_rms_bound = 0.02, mean_rms_bound = 0.008; break;
    case DType::Q4_0: max_bound = 1.01 / 8, worst_rms_bound = 0.3, mean_rms_bound = 0.1; break;
    case DType::Q4_K: max_bound = 0.12, worst_rms_bound = 0.13, mean_rms_bound = 0.08; break;
    case DType::Q6_K: max_bound = 0.03, worst_rms_bound = 0.04, mean_rms_bound = 0.022; break;
    default: FAIL();
  }
  EXPECT_LE(worst_max_rel, max_bound) << dtype_name(dtype);
  EXPECT_LE(worst_rms_rel, worst_rms_bound) << dtype_name(dtype);
  EXPECT_LE(mean_rms_rel, mean_rms_bound) << dtype_name(dtype);
}

TEST_P(GgmlBlocksQuantize, ZerosAndConstantsAreExactOrClose) {
  const DType dtype = GetParam();
  const int64_t n = 3 * kQK_K;
  std::vector<float> zeros(n, 0.0f);
  for (float v : round_trip(dtype, zeros)) ASSERT_EQ(v, 0.0f) << dtype_name(dtype);

  for (float c : {1.0f, -0.25f, 3e-3f}) {
    std::vector<float> x(n, c);
    for (float v : round_trip(dtype, x)) ASSERT_NEAR(v, c, std::fabs(c) * 0.01f) << dtype_name(dtype) << " constant " << c;
  }
}

TEST_P(GgmlBlocksQuantize, NonFiniteInputDoesNotCrash) {
  const DType dtype = GetParam();
  std::vector<float> x(kQK_K, 1.0f);
  x[3] = std::numeric_limits<float>::infinity();
  x[40] = std::numeric_limits<float>::quiet_NaN();
  x[77] = -std::numeric_limits<float>::infinity();
  (void)round_trip(dtype, x);  // garbage out is fine; undefined behaviour is not (run under UBSan)
}

INSTANTIATE_TEST_SUITE_P(GgmlBlocks, GgmlBlocksQuantize, ::testing::Values(DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K),
                         [](const auto& info) { return std::string(dtype_name(info.param)); });

TEST(GgmlBlocks, Q8_0MatchesGgmlReferenceByHand) {
  // amax = 127 gives d = 1 exactly, so the levels are the rounded inputs (ties away from zero).
  std::vector<float> x(kQK8_0);
  for (int i = 0; i < kQK8_0; ++i) x[i] = -16.5f + i;
  x[31] = 127.0f;
  BlockQ8_0 block;
  quantize_row_q8_0(x.data(), &block, kQK8_0);
  EXPECT_EQ(block.d, float_to_fp16(1.0f));
  EXPECT_EQ(block.qs[0], -17);  // -16.5 rounds away from zero
  EXPECT_EQ(block.qs[1], -16);  // -15.5
  EXPECT_EQ(block.qs[16], -1);  // -0.5
  EXPECT_EQ(block.qs[17], 1);   // 0.5
  EXPECT_EQ(block.qs[31], 127);
}

TEST(GgmlBlocks, Q4_0MatchesGgmlReferenceByHand) {
  // max by magnitude is -8 -> d = 1, level = x + 8 (rounded half up), clipped at 15.
  std::vector<float> x(kQK4_0, 0.0f);
  x[0] = -8.0f;
  x[1] = 7.0f;
  x[2] = 7.9f;  // would be level 16: clips to 15
  x[16] = 2.5f;  // 10.5 + 0.5 -> 11 (truncation after +8.5)
  x[17] = -2.5f;
  BlockQ4_0 block;
  quantize_row_q4_0(x.data(), &block, kQK4_0);
  EXPECT_EQ(fp16_to_float(block.d), 1.0f);
  EXPECT_EQ(block.qs[0] & 0x0F, 0);
  EXPECT_EQ(block.qs[1] & 0x0F, 15);
  EXPECT_EQ(block.qs[2] & 0x0F, 15);
  EXPECT_EQ(block.qs[0] >> 4, 11);
  EXPECT_EQ(block.qs[1] >> 4, 6);
  EXPECT_EQ(block.qs[3] & 0x0F, 8);
}

TEST(GgmlBlocks, Q4_KScaleAndMinPackingRoundTrips) {
  // Sub-blocks with very different ranges exercise all 6 bits of the packed scales and mins.
  std::vector<float> x(kQK_K);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 32; ++i) x[j * 32 + i] = (j + 1) * 0.5f * u(rng) - 0.3f * (8 - j);
  BlockQ4_K block;
  quantize_row_q4_k(x.data(), &block, kQK_K);
  std::vector<float> y(kQK_K);
  dequantize_row_q4_k(&block, y.data(), kQK_K);
  for (int j = 0; j < 8; ++j) {
    const float step = (j + 1) * 0.5f / 15;
    for (int i = 0; i < 32; ++i) EXPECT_NEAR(y[j * 32 + i], x[j * 32 + i], step) << "sub-block " << j;
  }
}

// ---- fp16 / bf16 edge cases ----------------------------------------------------------------------

TEST(DtypeFp16, DecodesSpecialValues) {
  EXPECT_EQ(fp16_to_float(0x0000), 0.0f);
  EXPECT_TRUE(std::signbit(fp16_to_float(0x8000)));
  EXPECT_EQ(fp16_to_float(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(fp16_to_float(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(fp16_to_float(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(fp16_to_float(0x3c00), 1.0f);
  EXPECT_EQ(fp16_to_float(0xc000), -2.0f);
  EXPECT_EQ(fp16_to_float(0x7bff), 65504.0f);
  EXPECT_EQ(fp16_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(fp16_to_float(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7e00)));
  EXPECT_TRUE(std::isnan(fp16_to_float(0x7c01)));
}

TEST(DtypeFp16, EncodesWithRoundToNearestEven) {
  EXPECT_EQ(float_to_fp16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_fp16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie -> even
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie -> even (up)
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);
  EXPECT_EQ(float_to_fp16(65519.99f), 0x7bff);  // below the rounding boundary
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);   // rounds to infinity
  EXPECT_EQ(float_to_fp16(-1e10f), 0xfc00);
  EXPECT_EQ(float_to_fp16(std::numeric_limits<float>::infinity()), 0x7c00);
  // Subnormal results.
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -25)), 0x0000);                 // tie -> even (zero)
  EXPECT_EQ(float_to_fp16(std::ldexp(1.5f, -25)), 0x0001);                 // above the tie
  EXPECT_EQ(float_to_fp16(std::ldexp(3.0f, -25)), 0x0002);                 // 1.5 ulp: tie -> even
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -14) * (1 - 1e-4f)), 0x0400);  // rounds up into normals
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -30)), 0x0000);
  const uint16_t nan = float_to_fp16(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7c00, 0x7c00);
  EXPECT_NE(nan & 0x03ff, 0);
}

TEST(DtypeFp16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_fp16(f), h) << std::hex << h;
  }
}

TEST(DtypeBf16, EncodesWithRoundToNearestEven) {
  EXPECT_EQ(float_to_bf16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808000)), 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bf16(bits_float(0x3f818000)), 0x3f82);  // tie -> even (up)
  EXPECT_EQ(float_to_bf16(bits_float(0x3f808001)), 0x3f81);
  EXPECT_EQ(float_to_bf16(bits_float(0x3f807fff)), 0x3f80);
  EXPECT_EQ(float_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(float_to_bf16(bits_float(0x00018000)), 0x0002);  // subnormal tie -> even
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(float_to_bf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to infinity
  EXPECT_EQ(float_to_bf16(bits_float(0x7f7f7fff)), 0x7f7f);
  // NaNs stay NaN, including signalling NaNs whose payload is only in the dropped low bits.
  for (uint32_t bits : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu}) {
    const uint16_t h = float_to_bf16(bits_float(bits));
    EXPECT_TRUE(std::isnan(bf16_to_float(h))) << std::hex << bits;
    EXPECT_EQ(h & 0x8000, (bits >> 16) & 0x8000);
  }
}

TEST(DtypeBf16, EveryBf16RoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(static_cast<uint16_t>(h));
    EXPECT_EQ(float_bits(f), h << 16);
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_bf16(f), h) << std::hex << h;
  }
}

}  // namespace
}  // namespace anvil
