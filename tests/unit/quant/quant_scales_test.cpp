// check_quant_scales: every inconsistency between a tensor's dtype, shape and QuantScales is a
// clear error, and consistent tensors pass.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "core/tensor.h"

namespace anvil {
namespace {

struct Fixture {
  std::vector<std::byte> codes;
  std::vector<float> scale, zero;
  Tensor tensor;
  Fixture(DType dtype, int64_t rows, int64_t cols, int64_t group, bool with_zero)
      : codes(dtype_bytes(dtype, rows * cols)),
        scale(rows * (cols / group), 0.5f),
        zero(with_zero ? rows * (cols / group) : 0, 3.0f) {
    tensor = Tensor{"blk.0.ffn_up.weight", dtype, {rows, cols}, codes.data(), codes.size(), {}};
    tensor.quant = {scale.data(), with_zero ? zero.data() : nullptr, group};
  }
};

std::string error_of(const Tensor& t) { return check_quant_scales(t).message(); }

TEST(QuantScales, ConsistentTensorsPass) {
  EXPECT_TRUE(check_quant_scales(Fixture(DType::F8_E4M3, 4, 96, 96, false).tensor).is_ok());
  EXPECT_TRUE(check_quant_scales(Fixture(DType::I8, 4, 96, 96, false).tensor).is_ok());
  for (int64_t g : {32, 64, 128}) {
    EXPECT_TRUE(check_quant_scales(Fixture(DType::I4, 4, 256, g, false).tensor).is_ok());
    EXPECT_TRUE(check_quant_scales(Fixture(DType::I4, 4, 256, g, true).tensor).is_ok());
  }
  Tensor plain{"x", DType::F32, {4, 8}, nullptr, 0, {}};
  EXPECT_TRUE(check_quant_scales(plain).is_ok());
  EXPECT_EQ(Fixture(DType::I4, 4, 256, 64, true).tensor.scale_bytes(), 2u * 4 * 4 * sizeof(float));
  Fixture act_order(DType::I4, 4, 256, 64, false);
  std::vector<int32_t> order(256);
  for (int32_t j = 0; j < 256; ++j) order[j] = 255 - j;
  act_order.tensor.quant.input_order = order.data();
  EXPECT_TRUE(check_quant_scales(act_order.tensor).is_ok());
  EXPECT_EQ(act_order.tensor.scale_bytes(), 4u * 4 * sizeof(float) + 256 * sizeof(int32_t));  // the order too
}

TEST(QuantScales, RejectsMissingOrMisplacedScales) {
  Fixture f(DType::I8, 4, 96, 96, false);
  f.tensor.quant = {};
  EXPECT_NE(error_of(f.tensor).find("has no scales (expected a companion blk.0.ffn_up.weight_scale"), std::string::npos)
      << error_of(f.tensor);
  Fixture plain(DType::I8, 4, 96, 96, false);
  plain.tensor.dtype = DType::Q8_0;
  EXPECT_NE(error_of(plain.tensor).find("keeps no external scales"), std::string::npos);
  Fixture zero_on_i8(DType::I8, 4, 96, 96, true);
  EXPECT_NE(error_of(zero_on_i8.tensor).find("only asymmetric I4"), std::string::npos);
  Fixture order_on_i8(DType::I8, 4, 96, 96, false);
  std::vector<int32_t> order(96);
  for (int32_t j = 0; j < 96; ++j) order[j] = 95 - j;
  order_on_i8.tensor.quant.input_order = order.data();
  EXPECT_NE(error_of(order_on_i8.tensor).find("has an input column order, which only I4 weights"), std::string::npos);
  Fixture vector(DType::I8, 1, 96, 96, false);
  vector.tensor.shape = {96};
  EXPECT_NE(error_of(vector.tensor).find("must be matrices"), std::string::npos);
}

TEST(QuantScales, RejectsGroupsThatDoNotFit) {
  Fixture f(DType::I4, 4, 160, 32, false);
  f.tensor.quant.group = 64;  // 160 % 64 != 0
  EXPECT_NE(error_of(f.tensor).find("group size 64 does not divide its rows of 160"), std::string::npos)
      << error_of(f.tensor);
  f.tensor.quant.group = 0;
  EXPECT_FALSE(check_quant_scales(f.tensor).is_ok());
  Fixture odd(DType::I4, 4, 160, 160, false);  // divides, but not a supported I4 group
  EXPECT_NE(error_of(odd.tensor).find("I4 group size 160 is not supported"), std::string::npos);
  Fixture grouped_fp8(DType::F8_E4M3, 4, 128, 32, false);
  EXPECT_NE(error_of(grouped_fp8.tensor).find("one scale per row"), std::string::npos) << error_of(grouped_fp8.tensor);
}

TEST(QuantScales, RejectsBadValues) {
  Fixture f(DType::I4, 2, 64, 32, true);
  f.scale[3] = std::nanf("");
  EXPECT_NE(error_of(f.tensor).find("scale (row 1, group 1) is not finite"), std::string::npos) << error_of(f.tensor);
  EXPECT_TRUE(check_quant_scale_layout(f.tensor).is_ok());  // the cheap check reads no values
  f.scale[3] = 1.0f;
  f.zero[0] = 16.0f;
  EXPECT_NE(error_of(f.tensor).find("not an integer in 0..15"), std::string::npos);
  f.zero[0] = 2.5f;
  EXPECT_FALSE(check_quant_scales(f.tensor).is_ok());
}

}  // namespace
}  // namespace anvil
