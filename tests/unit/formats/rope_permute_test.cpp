// Tests for the NeoX <-> Interleaved q/k row permutations.
#include "formats/rope_permute.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>
#include <vector>

namespace anvil {
namespace {

template <typename T>
Tensor view_of(DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  Tensor t;
  t.name = "t";
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const std::byte*>(values.data());
  t.nbytes = values.size() * sizeof(T);
  return t;
}

template <typename T>
std::vector<T> as_vector(const std::vector<std::byte>& bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

// Values checked by hand against llama.cpp's permute: w.reshape(n_head, 2, hd/2, ...).swapaxes(1, 2).
TEST(RopePermute, HandCheckedSmallCases) {
  // One head of 6 rows: NeoX pairs are (0,3), (1,4), (2,5); interleaved puts each pair side by side.
  std::vector<float> one_head = {0, 1, 2, 3, 4, 5};
  auto interleaved = permute_rows_neox_to_interleaved(view_of(DType::F32, {6}, one_head), 1);
  EXPECT_EQ(as_vector<float>(interleaved), std::vector<float>({0, 3, 1, 4, 2, 5}));

  // Two heads of 4 rows, 2 columns each: rows move whole and heads stay apart.
  std::vector<float> two_heads = {0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 6.5, 7, 7.5};
  interleaved = permute_rows_neox_to_interleaved(view_of(DType::F32, {8, 2}, two_heads), 2);
  EXPECT_EQ(as_vector<float>(interleaved),
            std::vector<float>({0, 0.5, 2, 2.5, 1, 1.5, 3, 3.5, 4, 4.5, 6, 6.5, 5, 5.5, 7, 7.5}));

  std::vector<float> interleaved_rows = {0, 3, 1, 4, 2, 5};
  auto neox = permute_rows_interleaved_to_neox(view_of(DType::F32, {6}, interleaved_rows), 1);
  EXPECT_EQ(as_vector<float>(neox), std::vector<float>({0, 1, 2, 3, 4, 5}));
}

TEST(RopePermute, RoundTripIsIdentity) {
  // F16 weight (3 heads of head_dim 4, 5 columns): compare raw bits.
  std::vector<uint16_t> weight(12 * 5);
  std::iota(weight.begin(), weight.end(), 100);
  Tensor w = view_of(DType::F16, {12, 5}, weight);
  std::vector<std::byte> there = permute_rows_neox_to_interleaved(w, 3);
  ASSERT_EQ(there.size(), w.nbytes);
  EXPECT_NE(std::memcmp(there.data(), w.data, w.nbytes), 0);
  Tensor permuted = w;
  permuted.data = there.data();
  std::vector<std::byte> back = permute_rows_interleaved_to_neox(permuted, 3);
  ASSERT_EQ(back.size(), w.nbytes);
  EXPECT_EQ(std::memcmp(back.data(), w.data, w.nbytes), 0);

  // A block-quantized weight: rows of two Q8_0 blocks (68 bytes) move whole.
  std::vector<uint8_t> blocks(8 * 68);
  std::iota(blocks.begin(), blocks.end(), 0);
  Tensor q = view_of(DType::Q8_0, {8, 64}, blocks);
  there = permute_rows_interleaved_to_neox(q, 2);
  ASSERT_EQ(there.size(), q.nbytes);
  EXPECT_EQ(std::memcmp(there.data() + 68, blocks.data() + 2 * 68, 68), 0);  // neox row 1 = interleaved row 2
  permuted = q;
  permuted.data = there.data();
  back = permute_rows_neox_to_interleaved(permuted, 2);
  EXPECT_EQ(std::memcmp(back.data(), q.data, q.nbytes), 0);
}

TEST(RopePermute, RejectsTensorsThatDoNotSplitIntoHeads) {
  std::vector<float> six(6);
  EXPECT_TRUE(permute_rows_neox_to_interleaved(view_of(DType::F32, {6}, six), 2).empty());  // head_dim 3
  EXPECT_TRUE(permute_rows_neox_to_interleaved(view_of(DType::F32, {6}, six), 4).empty());
  EXPECT_TRUE(permute_rows_neox_to_interleaved(view_of(DType::F32, {6}, six), 0).empty());
  EXPECT_TRUE(permute_rows_neox_to_interleaved(view_of(DType::F32, {}, six), 1).empty());
  std::vector<uint8_t> block(2 * 34);
  EXPECT_TRUE(permute_rows_interleaved_to_neox(view_of(DType::Q8_0, {64}, block), 1).empty());
  Tensor no_data = view_of(DType::F32, {6}, six);
  no_data.data = nullptr;
  EXPECT_TRUE(permute_rows_interleaved_to_neox(no_data, 1).empty());
}

}  // namespace
}  // namespace anvil
