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

// Q4_K_R4 (layout in the header): the 16 head bytes of a block, and the 128 code bytes.
constexpr size_t kQ4KHeadBytes = sizeof(BlockQ4_K) - sizeof(BlockQ4_K::qs);
static_assert(kQ4KHeadBytes == 16);

// Q4_K block `block` of row `row` in a (rows, k) Q4_K_R4 tensor: its head, and its sub-block
// jj's code lane (vector v's lane is `vector_stride` x v further) is codes + 4 x jj.
struct Q4KPanelPlace {
  size_t codes;
  size_t vector_stride;
  size_t head;
};
Q4KPanelPlace q4k_panel_place(int64_t rows, int64_t k, int64_t row, int64_t block) {
  const int64_t blocks = k / kQK_K;
  const int64_t panel = row / kPanelRows, i = row % kPanelRows;
  const int64_t nr = std::min(kPanelRows, rows - panel * kPanelRows);
  const int64_t s = block / kPanelQ4KBlocks, c = block % kPanelQ4KBlocks;
  const int64_t nk = std::min(kPanelQ4KBlocks, blocks - s * kPanelQ4KBlocks), nb = 8 * nk;
  const size_t step =
      static_cast<size_t>(panel * kPanelRows * blocks + s * nr * kPanelQ4KBlocks) * sizeof(BlockQ4_K);
  const size_t codes = step + static_cast<size_t>(i * nb) * 16 + 4 * static_cast<size_t>(8 * c);
  const size_t head = step + static_cast<size_t>(nr * nb) * 16 + static_cast<size_t>(i * nk + c) * kQ4KHeadBytes;
  return {codes, static_cast<size_t>(nb) * 4, head};
}

// Element e of sub-block jj of a Q4_K block: low nibbles hold the even sub-blocks of each 64.
uint8_t q4k_code(const BlockQ4_K& b, int jj, int e) {
  return static_cast<uint8_t>((b.qs[32 * (jj / 2) + e] >> (4 * (jj % 2))) & 0x0F);
}

void repack_q4k_to_panels(const std::byte* src, int64_t rows, int64_t k, int64_t panel_begin, int64_t panel_end,
                          std::byte* dst) {
  const int64_t blocks = k / kQK_K;
  const size_t row_bytes = static_cast<size_t>(blocks) * sizeof(BlockQ4_K);
  for (int64_t row = panel_begin * kPanelRows; row < std::min(rows, panel_end * kPanelRows); ++row) {
    const auto* in = reinterpret_cast<const BlockQ4_K*>(src + static_cast<size_t>(row) * row_bytes);
    for (int64_t b = 0; b < blocks; ++b) {
      const Q4KPanelPlace place = q4k_panel_place(rows, k, row, b);
      std::memcpy(dst + place.head, &in[b], kQ4KHeadBytes);
      for (int jj = 0; jj < 8; ++jj)
        for (int v = 0; v < 4; ++v)
          for (int m = 0; m < 4; ++m) {
            const uint8_t lo = q4k_code(in[b], jj, 4 * v + m), hi = q4k_code(in[b], jj, 16 + 4 * v + m);
            dst[place.codes + 4 * jj + v * place.vector_stride + m] = std::byte(lo | hi << 4);
          }
    }
  }
}

void q4k_panel_row_to_blocks(const std::byte* data, int64_t rows, int64_t k, int64_t row, int64_t block_begin,
                             int64_t block_end, std::byte* blocks_out) {
  for (int64_t b = block_begin; b < block_end; ++b) {
    BlockQ4_K block{};  // qs gets each nibble OR-ed in
    const Q4KPanelPlace place = q4k_panel_place(rows, k, row, b);
    std::memcpy(&block, data + place.head, kQ4KHeadBytes);
    for (int jj = 0; jj < 8; ++jj)
      for (int v = 0; v < 4; ++v)
        for (int m = 0; m < 4; ++m) {
          const auto byte = static_cast<uint8_t>(data[place.codes + 4 * jj + v * place.vector_stride + m]);
          for (int half = 0; half < 2; ++half)  // element 4v+m, then 16+4v+m
            block.qs[32 * (jj / 2) + 16 * half + 4 * v + m] |=
                static_cast<uint8_t>(((byte >> (4 * half)) & 0x0F) << (4 * (jj % 2)));
        }
    std::memcpy(blocks_out + (b - block_begin) * sizeof(BlockQ4_K), &block, sizeof(BlockQ4_K));
  }
}

}  // namespace

bool has_panel_layout(DType ggml_dtype) {
  return ggml_dtype == DType::Q8_0 || ggml_dtype == DType::Q4_0 || ggml_dtype == DType::Q4_K;
}

DType panel_dtype_for(DType ggml_dtype) {
  assert(has_panel_layout(ggml_dtype));
  switch (ggml_dtype) {
    case DType::Q8_0: return DType::Q8_0_R4;
    case DType::Q4_0: return DType::Q4_0_R4;
    default: return DType::Q4_K_R4;
  }
}

DType ggml_dtype_of_panels(DType panel_dtype) {
  switch (panel_dtype) {
    case DType::Q8_0_R4: return DType::Q8_0;
    case DType::Q4_0_R4: return DType::Q4_0;
    default: assert(panel_dtype == DType::Q4_K_R4); return DType::Q4_K;
  }
}

PanelBlockPlace panel_block_place(DType panel_dtype, int64_t rows, int64_t k, int64_t row, int64_t block) {
  assert(panel_dtype == DType::Q8_0_R4 || panel_dtype == DType::Q4_0_R4);
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
  if (ggml_dtype == DType::Q4_K) return repack_q4k_to_panels(src, rows, k, panel_begin, panel_end, dst);
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
  panel_row_range_to_blocks(panel_dtype, data, rows, k, row, 0, k / dtype_info(panel_dtype).block_elems, blocks_out);
}

void panel_row_range_to_blocks(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row,
                               int64_t block_begin, int64_t block_end, std::byte* blocks_out) {
  if (panel_dtype == DType::Q4_K_R4)
    return q4k_panel_row_to_blocks(data, rows, k, row, block_begin, block_end, blocks_out);
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

void panel_row_to_f32(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst) {
  const int64_t panel = row / kPanelRows, i = row % kPanelRows;
  const int64_t nr = std::min(kPanelRows, rows - panel * kPanelRows);
  if (panel_dtype == DType::Q4_K_R4) {
    const int64_t blocks = k / kQK_K;
    const std::byte* base = data + static_cast<size_t>(panel * kPanelRows * blocks) * sizeof(BlockQ4_K);
    for (int64_t s = 0; s * kPanelQ4KBlocks < blocks; ++s) {
      const int64_t nk = std::min(kPanelQ4KBlocks, blocks - s * kPanelQ4KBlocks), nb = 8 * nk;
      const std::byte* step = base + static_cast<size_t>(s * nr * kPanelQ4KBlocks) * sizeof(BlockQ4_K);
      const std::byte* codes = step + i * nb * 16;
      for (int64_t c = 0; c < nk; ++c) {
        BlockQ4_K head;  // d, dmin and the packed scales; qs unused
        std::memcpy(&head, step + nr * nb * 16 + (i * nk + c) * kQ4KHeadBytes, kQ4KHeadBytes);
        const float d = fp16_to_float(head.d), dmin = fp16_to_float(head.dmin);
        for (int jj = 0; jj < 8; ++jj) {
          uint8_t sc, m;
          unpack_scale_min_k4(jj, head.scales, &sc, &m);
          const float dj = d * sc, mj = dmin * m;  // as dequantize_row_q4_k
          float* y = dst + (s * kPanelQ4KBlocks + c) * kQK_K + 32 * jj;
          uint8_t q[16];  // byte l: element l (low nibble) and 16 + l (high), as Q4_0's qs
          for (int v = 0; v < 4; ++v) std::memcpy(q + 4 * v, codes + 4 * (8 * c + jj) + v * 4 * nb, 4);
          for (int l = 0; l < 16; ++l) y[l] = dj * (q[l] & 0x0F) - mj;
          for (int l = 0; l < 16; ++l) y[16 + l] = dj * (q[l] >> 4) - mj;
        }
      }
    }
    return;
  }
  const bool q8 = panel_dtype == DType::Q8_0_R4;
  const int64_t code_bytes = static_cast<int64_t>(code_bytes_of(panel_dtype)), block_bytes = code_bytes + kScaleBytes;
  const int64_t blocks = k / kQK4_0;
  const std::byte* base = data + panel * kPanelRows * blocks * block_bytes;
  for (int64_t s = 0; s * kPanelBlocks < blocks; ++s) {
    const int64_t nb = std::min(kPanelBlocks, blocks - s * kPanelBlocks);
    const std::byte* step = base + s * nr * kPanelBlocks * block_bytes;
    const auto* codes = reinterpret_cast<const uint8_t*>(step + i * nb * code_bytes);
    const std::byte* scales = step + nr * nb * code_bytes + i * nb * kScaleBytes;
    float d[kPanelBlocks];
    for (int64_t j = 0; j < nb; ++j) {
      uint16_t d16;
      std::memcpy(&d16, scales + j * kScaleBytes, kScaleBytes);
      d[j] = fp16_to_float(d16);
    }
    float* y = dst + s * kPanelBlocks * kQK4_0;
    // Vector by vector (one sequential run of 4 x nb bytes: 4 codes of each block), the same
    // products as dequantize_row_q8_0 / dequantize_row_q4_0, bit for bit.
    for (int64_t v = 0; v < code_bytes / 4; ++v) {
      const uint8_t* run = codes + v * 4 * nb;
      for (int64_t j = 0; j < nb; ++j)
        for (int e = 0; e < 4; ++e) {
          const uint8_t b = run[4 * j + e];
          if (q8) {
            y[kQK4_0 * j + 4 * v + e] = d[j] * static_cast<int8_t>(b ^ 0x80);
          } else {
            y[kQK4_0 * j + 4 * v + e] = d[j] * ((b & 0x0F) - 8);
            y[kQK4_0 * j + 16 + 4 * v + e] = d[j] * ((b >> 4) - 8);
          }
        }
    }
  }
}

void dequantize_row_q8_0_r4(const void* src, float* dst, int64_t n) {
  panel_row_to_f32(DType::Q8_0_R4, static_cast<const std::byte*>(src), 1, n, 0, dst);
}

void dequantize_row_q4_0_r4(const void* src, float* dst, int64_t n) {
  panel_row_to_f32(DType::Q4_0_R4, static_cast<const std::byte*>(src), 1, n, 0, dst);
}

void dequantize_row_q4_k_r4(const void* src, float* dst, int64_t n) {
  panel_row_to_f32(DType::Q4_K_R4, static_cast<const std::byte*>(src), 1, n, 0, dst);
}

}  // namespace anvil
