// 4-row panel layouts of Q8_0 / Q4_0 (layout in the header).
#include "quant/ggml_panels.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <vector>

#include "quant/ggml_blocks.h"

namespace anvil {
namespace {

constexpr size_t kScaleBytes = 2;

// Code bytes per block (16 or 32) and 4-byte lanes (vectors) per block.
size_t code_bytes_of(DType dtype) {
  return dtype == DType::Q8_0 || dtype == DType::Q8_0_R4 ? sizeof(BlockQ8_0::qs) : sizeof(BlockQ4_0::qs);
}

}  // namespace

DType panel_dtype_for(DType ggml_dtype) {
  assert(ggml_dtype == DType::Q8_0 || ggml_dtype == DType::Q4_0);
  return ggml_dtype == DType::Q8_0 ? DType::Q8_0_R4 : DType::Q4_0_R4;
}

DType ggml_dtype_of_panels(DType panel_dtype) {
  assert(dtype_is_panels(panel_dtype));
  return panel_dtype == DType::Q8_0_R4 ? DType::Q8_0 : DType::Q4_0;
}

PanelBlockPlace panel_block_place(DType panel_dtype, int64_t rows, int64_t k, int64_t row, int64_t block) {
  const size_t code_bytes = code_bytes_of(panel_dtype);
  const size_t block_bytes = code_bytes + kScaleBytes;
  const int64_t blocks = k / kQK4_0;
  const int64_t panel = row / kPanelRows, i = row % kPanelRows;
  const int64_t nr = std::min(kPanelRows, rows - panel * kPanelRows);
  const int64_t s = block / kPanelBlocks, j = block % kPanelBlocks;
  const int64_t nb = std::min(kPanelBlocks, blocks - s * kPanelBlocks);
  const size_t superblock = static_cast<size_t>(panel * kPanelRows * blocks + s * nr * kPanelBlocks) * block_bytes;
  const size_t lanes = static_cast<size_t>(nb) * 4;  // bytes per code vector of one row
  return {superblock + static_cast<size_t>(i) * nb * code_bytes + 4 * static_cast<size_t>(j), lanes,
          superblock + static_cast<size_t>(nr) * nb * code_bytes + (static_cast<size_t>(i) * nb + j) * kScaleBytes};
}

void repack_to_panels(DType ggml_dtype, const std::byte* src, int64_t rows, int64_t k, int64_t panel_begin,
                      int64_t panel_end, std::byte* dst) {
  const size_t code_bytes = code_bytes_of(ggml_dtype), block_bytes = code_bytes + kScaleBytes;
  const size_t vectors = code_bytes / 4;
  const bool q8 = ggml_dtype == DType::Q8_0;
  const int64_t blocks = k / kQK4_0;
  const size_t row_bytes = static_cast<size_t>(blocks) * block_bytes;
  // Walks the panel layout in its own order (superblock by superblock, row by row), so the
  // writes are sequential; each block's place follows from the header's formulas.
  for (int64_t panel = panel_begin; panel < panel_end && panel * kPanelRows < rows; ++panel) {
    const int64_t nr = std::min(kPanelRows, rows - panel * kPanelRows);
    std::byte* out = dst + static_cast<size_t>(panel * kPanelRows) * row_bytes;
    for (int64_t first = 0; first < blocks; first += kPanelBlocks) {
      const int64_t nb = std::min(kPanelBlocks, blocks - first);
      std::byte* scales = out + static_cast<size_t>(nr * nb) * code_bytes;
      for (int64_t i = 0; i < nr; ++i) {
        const std::byte* row = src + static_cast<size_t>(panel * kPanelRows + i) * row_bytes;
        std::byte* codes = out + static_cast<size_t>(i * nb) * code_bytes;
        for (int64_t j = 0; j < nb; ++j) {
          // GGML blocks (both types): fp16 d, then the codes.
          const std::byte* block = row + static_cast<size_t>(first + j) * block_bytes;
          std::memcpy(scales + (i * nb + j) * kScaleBytes, block, kScaleBytes);
          for (size_t v = 0; v < vectors; ++v) {
            uint32_t lane;
            std::memcpy(&lane, block + kScaleBytes + 4 * v, 4);
            if (q8) lane ^= 0x80808080u;  // unsigned codes: the kernels' u8 x s8 dots take them as they are
            std::memcpy(codes + v * 4 * nb + 4 * j, &lane, 4);
          }
        }
      }
      out += static_cast<size_t>(nr * nb) * block_bytes;
    }
  }
}

void panel_row_to_blocks(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row,
                         std::byte* blocks_out) {
  panel_row_range_to_blocks(panel_dtype, data, rows, k, row, 0, k / kQK4_0, blocks_out);
}

void panel_row_range_to_blocks(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row,
                               int64_t block_begin, int64_t block_end, std::byte* blocks_out) {
  const size_t code_bytes = code_bytes_of(panel_dtype), block_bytes = code_bytes + kScaleBytes;
  const bool q8 = panel_dtype == DType::Q8_0_R4;
  for (int64_t b = block_begin; b < block_end; ++b) {
    std::byte* block = blocks_out + (b - block_begin) * block_bytes;
    const PanelBlockPlace place = panel_block_place(panel_dtype, rows, k, row, b);
    std::memcpy(block, data + place.scale, kScaleBytes);
    for (size_t v = 0; v < code_bytes / 4; ++v) {
      std::byte* codes = block + kScaleBytes + 4 * v;
      std::memcpy(codes, data + place.codes + v * place.vector_stride, 4);
      if (q8)
        for (int m = 0; m < 4; ++m) codes[m] ^= std::byte{0x80};
    }
  }
}

void dequantize_row_q8_0_r4(const void* src, float* dst, int64_t n) {
  std::vector<std::byte> blocks(static_cast<size_t>(n / kQK8_0) * sizeof(BlockQ8_0));
  panel_row_to_blocks(DType::Q8_0_R4, static_cast<const std::byte*>(src), 1, n, 0, blocks.data());
  dequantize_row_q8_0(blocks.data(), dst, n);
}

void dequantize_row_q4_0_r4(const void* src, float* dst, int64_t n) {
  std::vector<std::byte> blocks(static_cast<size_t>(n / kQK4_0) * sizeof(BlockQ4_0));
  panel_row_to_blocks(DType::Q4_0_R4, static_cast<const std::byte*>(src), 1, n, 0, blocks.data());
  dequantize_row_q4_0(blocks.data(), dst, n);
}

}  // namespace anvil
