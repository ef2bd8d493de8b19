// Q8_0 / Q4_0 / Q4_K panels (quant/ggml_panels.h): the documented byte layout, bit-exact round trips for
// odd shapes, and every reader of weight values (weight_row_to_f32, the oneDNN bf16 conversion,
// DTypeInfo::to_float of one row) seeing the same values as in the GGML rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <vector>

#include "compute/cpu/matmul.h"
#include "compute/cpu/onednn_gemm.h"
#include "quant/ggml_blocks.h"
#include "quant/ggml_panels.h"

namespace anvil {
namespace {

std::vector<std::byte> quantized_rows(DType dtype, int64_t rows, int64_t k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> row(k);
  const size_t row_bytes = dtype_bytes(dtype, k);
  std::vector<std::byte> bytes(row_bytes * rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : row) v = dist(rng);
    dtype_info(dtype).from_float(row.data(), bytes.data() + r * row_bytes, k);
  }
  return bytes;
}

std::vector<std::byte> repacked(DType dtype, const std::vector<std::byte>& rows_bytes, int64_t rows, int64_t k) {
  std::vector<std::byte> panels(rows_bytes.size());
  repack_to_panels(dtype, rows_bytes.data(), rows, k, 0, (rows + kPanelRows - 1) / kPanelRows, panels.data());
  return panels;
}

TEST(GgmlPanels, LayoutOfAWholePanelAsDocumented) {
  // 4 rows x 512 columns of Q4_0: one panel, one whole superblock of 16 blocks.
  const int64_t rows = 4, k = 512;
  const std::vector<std::byte> src = quantized_rows(DType::Q4_0, rows, k, 1);
  const std::vector<std::byte> panels = repacked(DType::Q4_0, src, rows, k);
  const auto* blocks = reinterpret_cast<const BlockQ4_0*>(src.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < 16; ++j) {
      const BlockQ4_0& b = blocks[r * 16 + j];
      for (int v = 0; v < 4; ++v)  // codes: row r at 256r, vector v at 64v, lane j at 4j
        EXPECT_EQ(std::memcmp(panels.data() + 256 * r + 64 * v + 4 * j, b.qs + 4 * v, 4), 0);
      EXPECT_EQ(std::memcmp(panels.data() + 4 * 256 + 32 * r + 2 * j, &b.d, 2), 0);  // scales after all codes
    }
  // Q8_0: codes stored unsigned (q + 128), 8 vectors per row.
  const std::vector<std::byte> src8 = quantized_rows(DType::Q8_0, rows, k, 2);
  const std::vector<std::byte> panels8 = repacked(DType::Q8_0, src8, rows, k);
  const auto* blocks8 = reinterpret_cast<const BlockQ8_0*>(src8.data());
  const BlockQ8_0& b = blocks8[2 * 16 + 5];  // row 2, block 5, vector 7, byte 1
  EXPECT_EQ(static_cast<uint8_t>(panels8[2 * 512 + 7 * 64 + 4 * 5 + 1]), static_cast<uint8_t>(b.qs[29] + 128));
  EXPECT_EQ(std::memcmp(panels8.data() + 4 * 512 + 32 * 2 + 2 * 5, &b.d, 2), 0);
}

TEST(GgmlPanels, Q4KLayoutOfAWholePanelAsDocumented) {
  // 4 rows x 512 columns of Q4_K: one panel, one whole superblock of 2 blocks = 16 sub-blocks.
  const int64_t rows = 4, k = 512;
  const std::vector<std::byte> src = quantized_rows(DType::Q4_K, rows, k, 3);
  const std::vector<std::byte> panels = repacked(DType::Q4_K, src, rows, k);
  const auto* blocks = reinterpret_cast<const BlockQ4_K*>(src.data());
  const auto* out = reinterpret_cast<const uint8_t*>(panels.data());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < 16; ++j) {
      const BlockQ4_K& b = blocks[r * 2 + j / 8];
      const int jj = static_cast<int>(j % 8);
      auto element = [&](int e) { return (b.qs[32 * (jj / 2) + e] >> (4 * (jj % 2))) & 0x0F; };
      for (int v = 0; v < 4; ++v)  // codes: row r at 256r, vector v at 64v, lane j at 4j
        for (int m = 0; m < 4; ++m) {
          const uint8_t byte = out[256 * r + 64 * v + 4 * j + m];
          ASSERT_EQ(byte & 0x0F, element(4 * v + m)) << "row " << r << " sub-block " << j;
          ASSERT_EQ(byte >> 4, element(16 + 4 * v + m)) << "row " << r << " sub-block " << j;
        }
      // heads after all codes: d, dmin and the packed scales as they are
      if (jj == 0) {
        EXPECT_EQ(std::memcmp(out + 4 * 256 + 32 * r + 16 * (j / 8), &b, 16), 0);
      }
    }
}

TEST(GgmlPanels, RoundTripsBitExactAndReadersSeeTheSameValues) {
  for (DType dtype : {DType::Q8_0, DType::Q4_0, DType::Q4_K}) {
    const DType panel_dtype = panel_dtype_for(dtype);
    EXPECT_EQ(ggml_dtype_of_panels(panel_dtype), dtype);
    EXPECT_EQ(dtype_info(panel_dtype).block_bytes, dtype_info(dtype).block_bytes);
    // Row counts around the panel size, block counts around the superblock (1, 15, 16, 17, 33;
    // Q4_K: 1, 2, 3, 5 blocks of 256, i.e. half, whole and partial superblocks).
    const std::vector<int64_t> widths =
        dtype == DType::Q4_K ? std::vector<int64_t>{256, 512, 768, 1280} : std::vector<int64_t>{32, 480, 512, 544, 1056};
    for (int64_t rows : {1, 3, 4, 5, 9})
      for (int64_t k : widths) {
        SCOPED_TRACE(std::string(dtype_name(dtype)) + " rows=" + std::to_string(rows) + " k=" + std::to_string(k));
        const std::vector<std::byte> src = quantized_rows(dtype, rows, k, static_cast<uint32_t>(rows * k));
        const std::vector<std::byte> panels = repacked(dtype, src, rows, k);
        const Tensor ggml{"w", dtype, {rows, k}, src.data(), src.size(), {}};
        const Tensor packed{"w", panel_dtype, {rows, k}, panels.data(), panels.size(), {}};
        const size_t row_bytes = dtype_bytes(dtype, k);
        std::vector<std::byte> back(row_bytes);
        std::vector<float> want(k), got(k), scratch(k);
        std::vector<uint16_t> want_bf16(k), got_bf16(k);
        for (int64_t r = 0; r < rows; ++r) {
          panel_row_to_blocks(panel_dtype, panels.data(), rows, k, r, back.data());
          ASSERT_EQ(std::memcmp(back.data(), src.data() + r * row_bytes, row_bytes), 0) << "row " << r;
          weight_row_to_f32(ggml, r, want.data());
          weight_row_to_f32(packed, r, got.data());
          ASSERT_EQ(std::memcmp(want.data(), got.data(), k * sizeof(float)), 0) << "row " << r;
          std::fill(got.begin(), got.end(), -1.0f);
          panel_row_to_f32(panel_dtype, panels.data(), rows, k, r, got.data());  // no SIMD converter's path
          ASSERT_EQ(std::memcmp(want.data(), got.data(), k * sizeof(float)), 0) << "row " << r;
          onednn_weight_row_to_bf16(ggml, r, want_bf16.data(), scratch.data());
          onednn_weight_row_to_bf16(packed, r, got_bf16.data(), scratch.data());
          ASSERT_EQ(want_bf16, got_bf16) << "row " << r;
        }
        if (rows == 1) {  // a one-row panel tensor: DTypeInfo::to_float reads it whole
          dtype_info(panel_dtype).to_float(panels.data(), got.data(), k);
          weight_row_to_f32(ggml, 0, want.data());
          EXPECT_EQ(std::memcmp(want.data(), got.data(), k * sizeof(float)), 0);
        }
      }
  }
}

TEST(GgmlPanels, NoFileTypeOrNameParsesToAPanelLayout) {
  EXPECT_EQ(dtype_from_ggml(2), DType::Q4_0);
  EXPECT_EQ(dtype_from_ggml(8), DType::Q8_0);
  EXPECT_FALSE(dtype_from_name("q4_0_r4").has_value());
  EXPECT_EQ(dtype_from_name("q4_0_r4", /*panels=*/true), DType::Q4_0_R4);
  EXPECT_EQ(dtype_from_name("Q8_0_R4", /*panels=*/true), DType::Q8_0_R4);
  EXPECT_EQ(dtype_from_ggml(12), DType::Q4_K);
  EXPECT_FALSE(dtype_from_name("q4_k_r4").has_value());
  EXPECT_EQ(dtype_from_name("q4_k_r4", /*panels=*/true), DType::Q4_K_R4);
  EXPECT_TRUE(dtype_is_panels(DType::Q4_K_R4));
  EXPECT_TRUE(dtype_is_ggml_block(DType::Q4_0_R4));
  EXPECT_TRUE(dtype_is_panels(DType::Q8_0_R4));
  EXPECT_FALSE(dtype_is_panels(DType::Q8_0));
}

}  // namespace
}  // namespace anvil
