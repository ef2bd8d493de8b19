// Tests for quantized Hugging Face checkpoints: the config parser, each layout's bit layout on
// hand-packed tensors (in memory), the errors, and the NumPy fixtures loaded end to end.
#include "formats/hf_quantized.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include "compute/cpu/matmul.h"
#include "formats/hf_checkpoint.h"
#include "formats/hf_quantized_layouts.h"
#include "formats/safetensors.h"
#include "quant/int4_codes.h"
#include "quant/scaled_dequant.h"
#include "test_paths.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;

// Tensors by name with bytes this object owns; find() is the decoders' HfTensorFinder.
class Entries {
 public:
  template <typename T>
  void add(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
    buffers_.emplace_back(values.size() * sizeof(T));
    std::memcpy(buffers_.back().data(), values.data(), buffers_.back().size());
    SafetensorsEntry e;
    e.name = name;
    e.dtype = dtype;
    e.shape = std::move(shape);
    e.nbytes = buffers_.back().size();
    e.data = buffers_.back().data();
    entries_[name] = e;
  }
  void add_f32(const std::string& name, std::vector<int64_t> shape, const std::vector<float>& v) { add(name, "F32", shape, v); }
  void add_words(const std::string& name, std::vector<int64_t> shape, const std::vector<uint32_t>& v) {
    add(name, "I32", shape, v);
  }
  void remove(const std::string& name) { entries_.erase(name); }
  const SafetensorsEntry& at(const std::string& name) const { return entries_.at(name); }
  HfTensorFinder finder() const {
    return [this](const std::string& name) -> const SafetensorsEntry* {
      auto it = entries_.find(name);
      return it == entries_.end() ? nullptr : &it->second;
    };
  }

 private:
  std::list<std::vector<std::byte>> buffers_;
  std::map<std::string, SafetensorsEntry> entries_;
};

struct Decoded {
  Result<std::optional<Tensor>> result = Status::error("not run");
  std::vector<std::shared_ptr<const void>> storage;
};

Decoded decode(const HfQuantization& q, const Entries& e, int64_t rows, int64_t cols, const std::string& module = "m") {
  Decoded d;
  d.result = decode_hf_quantized_weight(q, module, rows, cols, e.finder(), d.storage);
  return d;
}

std::vector<float> dequantized(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  for (int64_t r = 0; r < t.rows(); ++r) weight_row_to_f32(t, r, out.data() + r * t.cols());  // input order
  return out;
}

void expect_error(const Decoded& d, const std::string& text) {
  ASSERT_FALSE(d.result.is_ok()) << "expected an error containing: " << text;
  EXPECT_NE(d.result.status().message().find(text), std::string::npos) << d.result.status().message();
}

// A reproducible code in 0..15 for (row, col).
uint32_t code_at(int64_t r, int64_t c) { return static_cast<uint32_t>((r * 7 + c * 3 + (r * c) % 5) & 0xF); }

HfQuantization gptq(int64_t group, bool sym, bool v1 = true) {
  HfQuantization q;
  q.method = HfQuantMethod::Gptq;
  q.bits = 4;
  q.group_size = group;
  q.symmetric = sym;
  q.gptq_zero_minus_one = v1;
  return q;
}

HfQuantization awq(int64_t group) {
  HfQuantization q = gptq(group, false);
  q.method = HfQuantMethod::Awq;
  return q;
}

HfQuantization ct(const std::string& format, const std::string& type, int bits, const std::string& strategy,
                  int64_t group = 0, bool sym = true) {
  HfQuantization q;
  q.method = HfQuantMethod::CompressedTensors;
  q.format = format;
  q.groups.push_back({"group_0", bits, type, strategy, group, sym, {}});
  return q;
}

// GPTQ tensors for a (rows, cols) layer: qweight packs input columns, qzeros output rows.
// zero(g, r) and scale(g, r) are per (group, output).
void add_gptq(Entries& e, int64_t rows, int64_t cols, int64_t group, bool v1, const std::function<int(int64_t, int64_t)>& zero,
              const std::vector<int64_t>* g_idx = nullptr) {
  const int64_t groups = cols / group;
  std::vector<uint32_t> qweight(static_cast<size_t>(cols / 8 * rows), 0);
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t r = 0; r < rows; ++r) qweight[(c / 8) * rows + r] |= code_at(r, c) << (4 * (c % 8));
  std::vector<uint32_t> qzeros(static_cast<size_t>(groups * rows / 8), 0);
  std::vector<float> scales(static_cast<size_t>(groups * rows));
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t r = 0; r < rows; ++r) {
      qzeros[g * (rows / 8) + r / 8] |= static_cast<uint32_t>(zero(g, r) - (v1 ? 1 : 0)) << (4 * (r % 8));
      scales[g * rows + r] = 0.125f * static_cast<float>(1 + (g * 3 + r) % 7);
    }
  e.add_words("m.qweight", {cols / 8, rows}, qweight);
  e.add_words("m.qzeros", {groups, rows / 8}, qzeros);
  e.add_f32("m.scales", {groups, rows}, scales);
  std::vector<int32_t> idx(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) idx[c] = static_cast<int32_t>(g_idx ? (*g_idx)[c] : c / group);
  e.add("m.g_idx", "I32", {cols}, idx);
}

// The value GPTQ's loader gives element (r, c): (q - zero[g_idx[c]][r]) * scale[g_idx[c]][r].
float gptq_value(int64_t r, int64_t c, int64_t group_of_c, int64_t rows, const std::function<int(int64_t, int64_t)>& zero) {
  const float scale = 0.125f * static_cast<float>(1 + (group_of_c * 3 + r) % 7);
  (void)rows;
  return static_cast<float>(static_cast<int>(code_at(r, c)) - zero(group_of_c, r)) * scale;
}

// ------------------------------------------------------------------------------------------------
// GPTQ
// ------------------------------------------------------------------------------------------------

TEST(HfQuantized, GptqV1ZerosAreStoredMinusOne) {
  const int64_t rows = 16, cols = 64, group = 32;
  auto zero = [](int64_t g, int64_t r) { return static_cast<int>(1 + (g + r) % 15); };  // 1..15
  Entries e;
  add_gptq(e, rows, cols, group, /*v1=*/true, zero);
  Decoded d = decode(gptq(group, false), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const Tensor& t = **d.result;
  EXPECT_EQ(t.dtype, DType::I4);
  EXPECT_EQ(t.quant.group, 32);
  ASSERT_NE(t.quant.zero, nullptr);
  const std::vector<float> w = dequantized(t);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], gptq_value(r, c, c / group, rows, zero)) << r << "," << c;
  // Codes are repacked so element c of row r is i4_code(row r, c).
  const auto* row3 = reinterpret_cast<const uint8_t*>(t.row(3));
  for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(i4_code(row3, c), code_at(3, c));
}

TEST(HfQuantized, GptqV2ZerosAreStoredAsIs) {
  const int64_t rows = 8, cols = 32;
  auto zero = [](int64_t g, int64_t r) { return static_cast<int>((g * 5 + r) % 16); };  // 0..15, v2 can store 0
  Entries e;
  add_gptq(e, rows, cols, 32, /*v1=*/false, zero);
  Decoded d = decode(gptq(32, false, /*v1=*/false), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const std::vector<float> w = dequantized(**d.result);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], gptq_value(r, c, 0, rows, zero));
}

TEST(HfQuantized, GptqSymmetricDropsZeroPointsAndChecksThem) {
  const int64_t rows = 8, cols = 64;
  auto eight = [](int64_t, int64_t) { return 8; };
  Entries e;
  add_gptq(e, rows, cols, 32, true, eight);  // qzeros words 0x77777777
  EXPECT_EQ(reinterpret_cast<const uint32_t*>(e.at("m.qzeros").data)[0], 0x77777777u);
  Decoded d = decode(gptq(32, true), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  EXPECT_EQ((*d.result)->quant.zero, nullptr);  // implicit 8
  // The same zeros read as v2 are 7: not symmetric.
  expect_error(decode(gptq(32, true, /*v1=*/false), e, rows, cols),
               "gives zero point 7 (group 0, output 0), but sym=true GPTQ uses 8 everywhere");
}

TEST(HfQuantized, GptqWholeRowGroupsExpandToAnvilGroups) {
  const int64_t rows = 8, cols = 256;
  auto zero = [](int64_t, int64_t r) { return static_cast<int>(3 + r); };
  Entries e;
  add_gptq(e, rows, cols, cols, true, zero);
  Decoded d = decode(gptq(-1, false), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const Tensor& t = **d.result;
  EXPECT_EQ(t.quant.group, 128);  // 256-column rows: two groups of 128 sharing one scale
  EXPECT_EQ(t.row_scales(5)[0], t.row_scales(5)[1]);
  const std::vector<float> w = dequantized(t);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], gptq_value(r, c, 0, rows, zero));
}

TEST(HfQuantized, GptqPermutedWholeGroupsKeepTheirColumnOrder) {
  const int64_t rows = 8, cols = 128, group = 32;
  auto zero = [](int64_t g, int64_t r) { return static_cast<int>(2 + g + r % 3); };
  // Whole groups in another order (static_groups-like): exact with gathered scales, no reordering.
  std::vector<int64_t> blocks(cols);
  for (int64_t c = 0; c < cols; ++c) blocks[c] = 3 - c / group;
  Entries e;
  add_gptq(e, rows, cols, group, true, zero, &blocks);
  HfQuantization q = gptq(group, false);
  q.desc_act = true;
  Decoded d = decode(q, e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  EXPECT_EQ((*d.result)->quant.input_order, nullptr);
  const std::vector<float> w = dequantized(**d.result);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], gptq_value(r, c, blocks[c], rows, zero));
}

// Act-order proper (desc_act without static groups): a column's group is not its block's. The
// columns are stored sorted by group, with the input order that undoes it; values are exact.
TEST(HfQuantized, GptqActOrderSortsColumnsByGroup) {
  const int64_t rows = 8, cols = 128, group = 32;
  auto zero = [](int64_t g, int64_t r) { return static_cast<int>(2 + g + r % 3); };
  std::vector<int64_t> interleaved(cols);
  for (int64_t c = 0; c < cols; ++c) interleaved[c] = (c * 5) % 4;
  Entries e;
  add_gptq(e, rows, cols, group, true, zero, &interleaved);
  HfQuantization q = gptq(group, false);
  q.desc_act = true;
  Decoded d = decode(q, e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const Tensor& t = **d.result;
  EXPECT_EQ(t.quant.group, 32);
  ASSERT_NE(t.quant.input_order, nullptr);
  for (int64_t j = 0; j < cols; ++j) {
    const int32_t c = t.quant.input_order[j];
    EXPECT_EQ(interleaved[c], j / group) << "stored column " << j;  // group g is stored columns 32g..32g+31
    if (j > 0 && j % group != 0) {
      EXPECT_LT(t.quant.input_order[j - 1], c);  // ascending within a group
    }
    EXPECT_EQ(i4_code(reinterpret_cast<const uint8_t*>(t.row(5)), j), code_at(5, c));
  }
  const std::vector<float> w = dequantized(t);  // weight_row_to_f32: input order
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], gptq_value(r, c, interleaved[c], rows, zero));
  // Groups whose sizes are not multiples of 32 columns cannot be runs of anvil's groups.
  std::vector<int64_t> uneven(cols);
  for (int64_t c = 0; c < cols; ++c) uneven[c] = c % 8 == 0 ? 0 : 1 + c % 3;  // group 0: 16 columns
  Entries e2;
  add_gptq(e2, rows, cols, group, true, zero, &uneven);
  expect_error(decode(q, e2, rows, cols), "m: act-order (g_idx) group 0 holds 16 columns; anvil's I4 scales cover");
}

TEST(HfQuantized, GptqShapeAndContentErrors) {
  const int64_t rows = 8, cols = 64;
  auto zero = [](int64_t, int64_t) { return 15; };
  Entries e;
  add_gptq(e, rows, cols, 32, true, zero);
  expect_error(decode(gptq(32, false), e, rows, 2 * cols), "qweight has shape (8, 8); a (8, 128) layer in 4-bit GPTQ");
  expect_error(decode(gptq(64, false), e, rows, cols), "scales has shape (2, 8); group_size 64");
  expect_error(decode(gptq(48, false), e, rows, cols), "group_size 48 does not divide its input size 64");
  expect_error(decode(gptq(16, false), e, rows, cols), "scales has shape (2, 8); group_size 16");
  Entries bad = e;
  std::vector<uint32_t> zeros16(2, 0xFFFFFFFFu);  // v1 nibble 15: zero point 16
  bad.add_words("m.qzeros", {2, 1}, zeros16);
  expect_error(decode(gptq(32, false), bad, rows, cols), "gives zero point 16");
  bad.add_words("m.qzeros", {2, 1}, std::vector<uint32_t>{0, 0});
  bad.add("m.g_idx", "I32", {cols}, std::vector<int32_t>(cols, 2));
  expect_error(decode(gptq(32, false), bad, rows, cols), "column 0 belongs to group 2, but there are 2 groups");
  bad.add("m.qweight", "I64", {cols / 8, rows}, std::vector<int64_t>(cols / 8 * rows, 0));
  expect_error(decode(gptq(32, false), bad, rows, cols), "qweight (packed 4-bit weight) has dtype I64; expected I32");
  Entries missing = e;
  missing.remove("m.scales");
  expect_error(decode(gptq(32, false), missing, rows, cols), "missing tensor m.scales");
  missing.remove("m.qweight");
  expect_error(decode(gptq(32, false), missing, rows, cols), "missing tensor m.qweight");
  // A plain float weight is a layer the quantizer skipped.
  Entries plain;
  plain.add_f32("m.weight", {rows, cols}, std::vector<float>(rows * cols, 1.0f));
  Decoded skipped = decode(gptq(32, false), plain, rows, cols);
  ASSERT_TRUE(skipped.result.is_ok());
  EXPECT_FALSE(skipped.result->has_value());
}

// ------------------------------------------------------------------------------------------------
// AWQ
// ------------------------------------------------------------------------------------------------

TEST(HfQuantized, AwqInterleavedNibbleOrder) {
  const int64_t rows = 16, cols = 64, group = 32, groups = 2;
  constexpr int kOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};  // AWQ_ORDER: nibble i holds output 8w + kOrder[i]
  std::vector<uint32_t> qweight(cols * rows / 8, 0), qzeros(groups * rows / 8, 0);
  std::vector<float> scales(groups * rows);
  auto zero = [](int64_t g, int64_t r) { return static_cast<int>((g * 7 + r * 3) % 16); };
  for (int64_t c = 0; c < cols; ++c)
    for (int64_t w = 0; w < rows / 8; ++w)
      for (int i = 0; i < 8; ++i) qweight[c * (rows / 8) + w] |= code_at(8 * w + kOrder[i], c) << (4 * i);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t w = 0; w < rows / 8; ++w)
      for (int i = 0; i < 8; ++i) qzeros[g * (rows / 8) + w] |= static_cast<uint32_t>(zero(g, 8 * w + kOrder[i])) << (4 * i);
    for (int64_t r = 0; r < rows; ++r) scales[g * rows + r] = 0.5f + 0.25f * static_cast<float>((r + g) % 4);
  }
  Entries e;
  e.add_words("m.qweight", {cols, rows / 8}, qweight);
  e.add_words("m.qzeros", {groups, rows / 8}, qzeros);
  e.add_f32("m.scales", {groups, rows}, scales);
  Decoded d = decode(awq(group), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const std::vector<float> w = dequantized(**d.result);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t g = c / group;
      ASSERT_EQ(w[r * cols + c], static_cast<float>(static_cast<int>(code_at(r, c)) - zero(g, r)) * scales[g * rows + r])
          << r << "," << c;
    }
  // Read in GPTQ's plain order instead, the weights would differ: the test sees the interleave.
  EXPECT_NE(kOrder[1], 1);
  expect_error(decode(awq(group), e, rows / 2, cols), "qweight has shape (64, 2); a (8, 64) layer in 4-bit AWQ GEMM");
}

// ------------------------------------------------------------------------------------------------
// compressed-tensors
// ------------------------------------------------------------------------------------------------

// pack_to_int32: signed int4 q stored as q + 8, eight per int32 along the row, element k at bits 4k.
std::vector<uint32_t> ct_pack_rows(int64_t rows, int64_t cols, const std::function<int(int64_t, int64_t)>& q) {
  std::vector<uint32_t> words(rows * cols / 8, 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) words[r * (cols / 8) + c / 8] |= static_cast<uint32_t>(q(r, c) + 8) << (4 * (c % 8));
  return words;
}

TEST(HfQuantized, CompressedTensorsInt4PackIsUsedInPlace) {
  const int64_t rows = 16, cols = 64;
  auto q = [](int64_t r, int64_t c) { return static_cast<int>(code_at(r, c)) - 8; };
  Entries e;
  e.add_words("m.weight_packed", {rows, cols / 8}, ct_pack_rows(rows, cols, q));
  e.add("m.weight_shape", "I64", {2}, std::vector<int64_t>{rows, cols});
  std::vector<float> scale(rows * 2);
  for (size_t i = 0; i < scale.size(); ++i) scale[i] = 0.01f * static_cast<float>(i + 1);
  e.add_f32("m.weight_scale", {rows, 2}, scale);
  Decoded d = decode(ct("pack-quantized", "int", 4, "group", 32), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const Tensor& t = **d.result;
  EXPECT_EQ(t.data, e.at("m.weight_packed").data);  // byte-identical to anvil's I4 rows
  EXPECT_EQ(t.quant.zero, nullptr);
  const std::vector<float> w = dequantized(t);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], static_cast<float>(q(r, c)) * scale[r * 2 + c / 32]);
}

TEST(HfQuantized, CompressedTensorsInt4AsymmetricZeroPointsPackedAlongRows) {
  const int64_t rows = 12, cols = 64, groups = 1;  // 12 rows: the zero-point words are padded
  auto q = [](int64_t r, int64_t c) { return static_cast<int>((r + c) % 16) - 8; };
  auto zp = [](int64_t r) { return static_cast<int>(r % 16) - 8; };  // signed, in [-8, 7]
  Entries e;
  e.add_words("m.weight_packed", {rows, cols / 8}, ct_pack_rows(rows, cols, q));
  e.add("m.weight_shape", "I32", {2}, std::vector<int32_t>{rows, cols});
  e.add_f32("m.weight_scale", {rows, groups}, std::vector<float>(rows, 0.5f));
  std::vector<uint32_t> zwords(2, 0);  // pack_to_int32(zp, packed_dim=0): (ceil(12 / 8), 1)
  for (int64_t r = 0; r < rows; ++r) zwords[r / 8] |= static_cast<uint32_t>(zp(r) + 8) << (4 * (r % 8));
  e.add_words("m.weight_zero_point", {2, groups}, zwords);
  Decoded d = decode(ct("pack-quantized", "int", 4, "channel", 0, /*sym=*/false), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  EXPECT_EQ((*d.result)->quant.group, 64);
  const std::vector<float> w = dequantized(**d.result);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(w[r * cols + c], static_cast<float>(q(r, c) - zp(r)) * 0.5f);
  // Unpacked signed zero points (rows, groups) read the same.
  std::vector<int8_t> unpacked(rows);
  for (int64_t r = 0; r < rows; ++r) unpacked[r] = static_cast<int8_t>(zp(r));
  e.add("m.weight_zero_point", "I8", {rows, groups}, unpacked);
  Decoded d2 = decode(ct("pack-quantized", "int", 4, "channel", 0, false), e, rows, cols);
  ASSERT_TRUE(d2.result.is_ok()) << d2.result.status().message();
  EXPECT_EQ(dequantized(**d2.result), w);
  // Zero points on a symmetric group must be zero.
  expect_error(decode(ct("pack-quantized", "int", 4, "channel", 0, true), e, rows, cols),
               "holds a nonzero zero point -8 (row 0, group 0), but config group");
}

TEST(HfQuantized, CompressedTensorsFp8PerTensorAndPerChannel) {
  const int64_t rows = 4, cols = 8;
  std::vector<uint8_t> codes(rows * cols);
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>(0x30 + i);  // finite E4M3 codes
  Entries e;
  e.add("m.weight", "F8_E4M3", {rows, cols}, codes);
  e.add_f32("m.weight_scale", {}, std::vector<float>{0.5f});  // per-tensor, shape ()
  Decoded d = decode(ct("float-quantized", "float", 8, "tensor"), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  const Tensor& t = **d.result;
  EXPECT_EQ(t.dtype, DType::F8_E4M3);
  EXPECT_EQ(t.quant.activations, ActivationQuant::None);  // no input_activations: W8A16
  EXPECT_EQ(t.data, e.at("m.weight").data);  // codes stay in the file
  EXPECT_EQ(t.quant.group, cols);
  for (int64_t r = 0; r < rows; ++r) EXPECT_EQ(t.row_scales(r)[0], 0.5f);
  // The config says per-channel: a per-tensor scale contradicts it.
  expect_error(decode(ct("float-quantized", "float", 8, "channel"), e, rows, cols),
               "holds per-tensor scales, but the config groups for this weight type declare 'group_0' (float8 channel)");
  e.add("m.weight_scale", "BF16", {rows, 1}, std::vector<uint16_t>{0x3F80, 0x4000, 0x4040, 0x4080});  // 1, 2, 3, 4
  Decoded channel = decode(ct("float-quantized", "float", 8, "channel"), e, rows, cols);
  ASSERT_TRUE(channel.result.is_ok()) << channel.result.status().message();
  EXPECT_EQ((*channel.result)->row_scales(2)[0], 3.0f);
  expect_error(decode(ct("int-quantized", "int", 8, "channel"), e, rows, cols),
               "is stored as F8_E4M3 weight, but quantization_config.format is 'int-quantized'");
  e.remove("m.weight_scale");
  expect_error(decode(ct("float-quantized", "float", 8, "channel"), e, rows, cols), "missing tensor m.weight_scale");
}

// input_activations of FP8 weights: FP8_DYNAMIC sets the weight's activation flag; static scales,
// dynamic per-tensor scales and int activations are refused naming the layer, never ignored.
TEST(HfQuantized, CompressedTensorsFp8InputActivations) {
  const int64_t rows = 2, cols = 4;
  Entries e;
  e.add("m.weight", "F8_E4M3", {rows, cols}, std::vector<uint8_t>{0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x36, 0x37});
  e.add_f32("m.weight_scale", {rows, 1}, std::vector<float>{0.5f, 0.25f});
  auto with_activations = [](const std::string& type, int bits, const std::string& strategy, const std::string& dynamic) {
    HfQuantization q = ct("float-quantized", "float", 8, "channel");
    q.groups[0].input_activations = {true, bits, type, strategy, dynamic};
    return q;
  };
  Decoded dynamic = decode(with_activations("float", 8, "token", "true"), e, rows, cols);
  ASSERT_TRUE(dynamic.result.is_ok()) << dynamic.result.status().message();
  EXPECT_EQ((*dynamic.result)->quant.activations, ActivationQuant::DynamicPerTokenFp8);
  EXPECT_EQ(hf_quantization_info(with_activations("float", 8, "token", "true")).scheme, "fp8-dynamic");
  EXPECT_EQ(hf_quantization_info(with_activations("float", 8, "token", "true")).activations,
            ActivationQuant::DynamicPerTokenFp8);
  EXPECT_EQ(hf_quantization_info(ct("float-quantized", "float", 8, "channel")).scheme, "fp8");

  e.add_f32("m.input_scale", {1}, std::vector<float>{0.1f});
  expect_error(decode(with_activations("float", 8, "tensor", "false"), e, rows, cols),
               "m: config group 'group_0' declares input_activations float8 strategy tensor, dynamic false: static "
               "activation scales (m.input_scale) are not supported");
  expect_error(decode(with_activations("float", 8, "tensor", "true"), e, rows, cols),
               "m: config group 'group_0' declares input_activations float8 strategy tensor, dynamic true, which "
               "anvil does not run");
  expect_error(decode(with_activations("int", 8, "token", "true"), e, rows, cols), "int8 strategy token");
  expect_error(decode(with_activations("float", 4, "tensor_group", "local"), e, rows, cols), "dynamic local");
  // Two FP8 groups that disagree: which one targets this layer is unknown.
  HfQuantization two = with_activations("float", 8, "token", "true");
  two.groups.push_back(ct("float-quantized", "float", 8, "channel").groups[0]);
  two.groups[1].group_name = "group_1";
  expect_error(decode(two, e, rows, cols), "config groups 'group_0' and 'group_1' both quantize 8-bit float weights "
                                           "but declare different input_activations");
  // I8 weights keep their dynamic per-token int8 activations whatever is declared.
  Entries i8;
  i8.add("m.weight", "I8", {rows, cols}, std::vector<int8_t>{1, 2, 3, 4, 5, 6, 7, 8});
  i8.add_f32("m.weight_scale", {rows, 1}, std::vector<float>{0.5f, 0.25f});
  HfQuantization w8a8 = ct("int-quantized", "int", 8, "channel");
  w8a8.groups[0].input_activations = {true, 8, "int", "token", "true"};
  Decoded int8 = decode(w8a8, i8, rows, cols);
  ASSERT_TRUE(int8.result.is_ok()) << int8.result.status().message();
  EXPECT_EQ((*int8.result)->quant.activations, ActivationQuant::None);
}

TEST(HfQuantized, CompressedTensorsInt8ZeroPointsMustBeZero) {
  const int64_t rows = 2, cols = 4;
  Entries e;
  e.add("m.weight", "I8", {rows, cols}, std::vector<int8_t>{-128, -1, 0, 127, 5, 6, 7, 8});
  e.add_f32("m.weight_scale", {rows, 1}, std::vector<float>{0.25f, 2.0f});
  e.add("m.weight_zero_point", "I8", {rows, 1}, std::vector<int8_t>{0, 0});
  const HfQuantization q = ct("int-quantized", "int", 8, "channel");
  Decoded d = decode(q, e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  EXPECT_EQ(dequantized(**d.result), (std::vector<float>{-32.0f, -0.25f, 0.0f, 31.75f, 10, 12, 14, 16}));
  e.add("m.weight_zero_point", "I8", {rows, 1}, std::vector<int8_t>{0, -3});
  expect_error(decode(q, e, rows, cols), "holds zero point -3 (row 1): asymmetric 8-bit weights are not supported");
  e.remove("m.weight_zero_point");
  expect_error(decode(q, e, rows, cols + 4), "m.weight has shape (2, 4); the model config needs (2, 8)");
  expect_error(decode(ct("int-quantized", "float", 8, "channel"), e, rows, cols),
               "is I8, but no config group declares 8-bit int weights");
}

TEST(HfQuantized, CompressedTensorsPackedInt8BecomesI8) {
  const int64_t rows = 2, cols = 8;
  std::vector<uint32_t> words(rows * cols / 4, 0);
  auto q = [](int64_t r, int64_t c) { return static_cast<int>(r * 100 - 60 + c * 3); };
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) words[r * 2 + c / 4] |= static_cast<uint32_t>(q(r, c) + 128) << (8 * (c % 4));
  Entries e;
  e.add_words("m.weight_packed", {rows, cols / 4}, words);
  e.add("m.weight_shape", "I64", {2}, std::vector<int64_t>{rows, cols});
  e.add_f32("m.weight_scale", {rows, 1}, std::vector<float>{1.0f, 0.5f});
  Decoded d = decode(ct("pack-quantized", "int", 8, "channel"), e, rows, cols);
  ASSERT_TRUE(d.result.is_ok()) << d.result.status().message();
  EXPECT_EQ((*d.result)->dtype, DType::I8);
  const std::vector<float> w = dequantized(**d.result);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(w[r * cols + c], static_cast<float>(q(r, c)) * (r ? 0.5f : 1.0f));
}

// ------------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------------

Result<HfQuantization> parse(const std::string& quantization_config, const std::string& dir = "/nonexistent") {
  return read_hf_quantization(dir, R"({"model_type": "llama", "quantization_config": )" + quantization_config + "}");
}

TEST(HfQuantized, ParsesEachMethod) {
  auto gq = parse(R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": false, "sym": true})");
  ASSERT_TRUE(gq.is_ok()) << gq.status().message();
  EXPECT_EQ(gq->method, HfQuantMethod::Gptq);
  EXPECT_EQ(gq->group_size, 128);
  EXPECT_TRUE(gq->gptq_zero_minus_one);
  EXPECT_EQ(hf_quantization_info(*gq).scheme, "w4a16-gptq");
  auto v2 = parse(R"({"quant_method": "gptq", "bits": 4, "checkpoint_format": "gptq_v2"})");
  ASSERT_TRUE(v2.is_ok());
  EXPECT_FALSE(v2->gptq_zero_minus_one);
  EXPECT_EQ(v2->group_size, -1);
  auto aw = parse(R"({"quant_method": "awq", "bits": 4, "group_size": 64, "zero_point": true, "version": "GEMM"})");
  ASSERT_TRUE(aw.is_ok()) << aw.status().message();
  EXPECT_EQ(aw->method, HfQuantMethod::Awq);
  EXPECT_FALSE(aw->symmetric);
  auto ctq = parse(R"({"quant_method": "compressed-tensors", "format": "pack-quantized", "config_groups": {"group_0":
      {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128,
       "symmetric": true, "actorder": null}, "input_activations": null}}, "ignore": ["lm_head"]})");
  ASSERT_TRUE(ctq.is_ok()) << ctq.status().message();
  ASSERT_EQ(ctq->groups.size(), 1u);
  EXPECT_EQ(ctq->groups[0].group_size, 128);
  EXPECT_EQ(hf_quantization_info(*ctq).scheme, "w4a16");
  EXPECT_FALSE(ctq->groups[0].input_activations.present);
  auto fp8_dynamic = parse(R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups":
      {"group_0": {"targets": ["Linear"], "weights": {"num_bits": 8, "type": "float", "strategy": "channel",
       "dynamic": false, "symmetric": true}, "input_activations": {"num_bits": 8, "type": "float", "strategy": "token",
       "dynamic": true, "symmetric": true, "observer": null}}}, "ignore": ["lm_head"]})");
  ASSERT_TRUE(fp8_dynamic.is_ok()) << fp8_dynamic.status().message();
  const HfCtActivationArgs& acts = fp8_dynamic->groups[0].input_activations;
  EXPECT_TRUE(acts.present);
  EXPECT_EQ(acts.type, "float");
  EXPECT_EQ(acts.strategy, "token");
  EXPECT_EQ(acts.dynamic, "true");
  EXPECT_EQ(hf_quantization_info(*fp8_dynamic).scheme, "fp8-dynamic");
  auto dense = parse(R"({"quant_method": "compressed-tensors", "format": "dense", "config_groups": {}})");
  ASSERT_TRUE(dense.is_ok());
  EXPECT_EQ(dense->method, HfQuantMethod::None);
  auto none = read_hf_quantization("/nonexistent", R"({"model_type": "llama"})");
  ASSERT_TRUE(none.is_ok());
  EXPECT_EQ(none->method, HfQuantMethod::None);
}

TEST(HfQuantized, RefusesWhatAnvilCannotLoad) {
  auto expect = [](const std::string& config, const std::string& text) {
    Result<HfQuantization> q = parse(config);
    ASSERT_FALSE(q.is_ok()) << config;
    EXPECT_NE(q.status().message().find(text), std::string::npos) << q.status().message();
  };
  expect(R"({"quant_method": "gptq", "bits": 3})", "GPTQ with bits 3 is not supported; anvil reads 4-bit GPTQ only");
  expect(R"({"quant_method": "gptq", "bits": 4, "checkpoint_format": "marlin"})", "checkpoint_format 'marlin'");
  expect(R"({"quant_method": "gptq", "bits": "4"})", "field 'bits' must be an integer");
  expect(R"({"quant_method": "awq", "bits": 4, "version": "gemv_fast"})", "AWQ version 'gemv_fast' is not supported");
  expect(R"({"quant_method": "fp8", "weight_block_size": [128, 128]})", "quant_method 'fp8' is not supported");
  expect(R"({"bits": 4})", "has no 'quant_method'");
  const std::string ct_head = R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups":
      {"group_0": {"weights": )";
  expect(ct_head + R"({"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]}}}})",
         "block-wise scales");
  expect(ct_head + R"({"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}})", "FP4");
  expect(ct_head + R"({"num_bits": 8, "type": "int", "strategy": "channel", "symmetric": false}}}})",
         "asymmetric int8 weights");
  expect(ct_head + R"({"num_bits": 4, "type": "int", "strategy": "group"}}}})", "needs a positive group_size");
  expect(ct_head + R"({"num_bits": 8, "type": "float"}, "input_activations": {"dynamic": 1}}}})",
         "field 'config_groups.group_0.input_activations.dynamic' must be true, false or a string");
  expect(R"({"quant_method": "compressed-tensors", "config_groups": {}})", "has no 'format'");
  expect(R"({"quant_method": "compressed-tensors", "format": "marlin-24", "config_groups": {}})",
         "format 'marlin-24' is not supported");
}

TEST(HfQuantized, ReadsQuantizeConfigJsonBesideConfig) {
  const std::string dir = testing::scratch_dir("hf_quantized_legacy_config");
  std::ofstream(dir + "/quantize_config.json") << R"({"bits": 4, "group_size": 32, "desc_act": false, "sym": false})";
  Result<HfQuantization> q = read_hf_quantization(dir, R"({"model_type": "llama"})");
  ASSERT_TRUE(q.is_ok()) << q.status().message();
  EXPECT_EQ(q->method, HfQuantMethod::Gptq);
  EXPECT_EQ(q->group_size, 32);
  EXPECT_FALSE(q->symmetric);
  EXPECT_NE(q->where.find("quantize_config.json"), std::string::npos);
}

TEST(HfQuantized, NamesOfQuantizedLayouts) {
  EXPECT_TRUE(is_hf_quantized_tensor_name("model.layers.0.mlp.up_proj.qweight"));
  EXPECT_TRUE(is_hf_quantized_tensor_name("model.layers.0.mlp.up_proj.weight_packed"));
  EXPECT_TRUE(is_hf_quantized_tensor_name("model.layers.0.mlp.up_proj.weight_scale"));
  EXPECT_FALSE(is_hf_quantized_tensor_name("model.layers.0.mlp.up_proj.weight"));
  EXPECT_FALSE(is_hf_quantized_tensor_name("model.norm.weight"));
}

// ------------------------------------------------------------------------------------------------
// The NumPy fixtures (tests/golden/hf_quantized_fixture.py), loaded end to end
// ------------------------------------------------------------------------------------------------

bool python_available() {
  const std::string python = ANVIL_PYTHON;
  return !python.empty() && python.find("NOTFOUND") == std::string::npos;
}

TEST(HfQuantized, FixturesDequantizeExactlyAsNumpy) {
  if (!python_available()) GTEST_SKIP() << "no python3";
  const std::string dir = testing::scratch_dir("hf_quantized_fixtures");
  const std::string command = std::string("\"") + ANVIL_PYTHON + "\" \"" + ANVIL_SOURCE_DIR +
                              "/tests/golden/hf_quantized_fixture.py\" write \"" + dir + "\"";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  const std::map<std::string, DType> layouts = {
      {"ct_fp8_channel", DType::F8_E4M3}, {"ct_fp8_tensor", DType::F8_E4M3}, {"ct_int8", DType::I8},
      {"ct_w4a16_sym", DType::I4},        {"ct_w4a16_asym", DType::I4},      {"gptq_sym", DType::I4},
      {"gptq_asym", DType::I4},           {"gptq_v2_channel", DType::I4},    {"awq_gemm", DType::I4},
      {"ct_w4a16_actorder", DType::I4},   {"gptq_act_order", DType::I4}};
  for (const auto& [layout, dtype] : layouts) {
    SCOPED_TRACE(layout);
    std::vector<std::pair<uint64_t, uint64_t>> progress_calls;
    Result<Checkpoint> checkpoint = load_hf_checkpoint(
        dir + "/" + layout, [&](uint64_t done, uint64_t total) { progress_calls.emplace_back(done, total); });
    ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().message();
    ASSERT_FALSE(progress_calls.empty());
    EXPECT_EQ(progress_calls.back().first, progress_calls.back().second);
    Result<std::shared_ptr<const SafetensorsFile>> reference = SafetensorsFile::open(dir + "/" + layout + "/reference.safetensors");
    ASSERT_TRUE(reference.is_ok()) << reference.status().message();
    int quantized = 0;
    for (const auto& [name, tensor] : checkpoint->tensors) {
      Result<Tensor> expected = (*reference)->tensor(hf_tensor_name(name));
      ASSERT_TRUE(expected.is_ok()) << name;
      if (!dtype_has_external_scales(tensor.dtype)) continue;
      EXPECT_EQ(tensor.dtype, dtype) << name;
      ++quantized;
      const std::vector<float> got = dequantized(tensor);
      const auto* want = reinterpret_cast<const float*>(expected->data);
      for (int64_t i = 0; i < tensor.numel(); ++i)
        ASSERT_EQ(got[i], want[i]) << name << " element " << i;  // exact: same float32 products
    }
    EXPECT_EQ(quantized, layout == "gptq_sym" ? 15 : 14);  // gptq_sym also quantizes lm_head
    EXPECT_FALSE(checkpoint->quantization.scheme.empty());
    EXPECT_EQ(checkpoint->config.tied_embeddings, false);
  }
}

// The loaders' repacked codes: a layer-sized buffer moves to huge-page weight memory (2 MiB
// aligned, same values), small ones (scales of a small layer) stay on the heap; both live as long
// as the storage does.
TEST(HfQuantized, KeepPutsWeightSizedBuffersInWeightMemory) {
  hf_quant::Storage storage;
  std::vector<uint32_t> big(kWeightMemoryHugePage / 4 + 1000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint32_t>(i * 2654435761u);
  const std::vector<uint32_t> expected = big;
  const uint32_t* kept = hf_quant::keep(std::move(big), storage);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(kept) % kWeightMemoryHugePage, 0u);
  EXPECT_EQ(std::memcmp(kept, expected.data(), expected.size() * 4), 0);
  const float* small = hf_quant::keep(std::vector<float>{1.5f, -2.0f}, storage);
  EXPECT_EQ(small[0], 1.5f);
  EXPECT_EQ(small[1], -2.0f);
  EXPECT_EQ(storage.size(), 2u);
}

}  // namespace
}  // namespace anvil
