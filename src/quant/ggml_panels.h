// Q8_0, Q4_0 and Q4_K weights repacked into 4-row panels (DType::Q8_0_R4, Q4_0_R4, Q4_K_R4): the
// layout the AVX-512 and AVX2 decode kernels stream, made at load (model/repack_weights.h), never stored in
// files.
//
// Row-major GGML blocks make a 4-row decode pass read four 18- or 34-byte-strided streams whose
// 64-byte loads straddle cache lines, and gather each block's codes and scale with permutes; on
// this CPU class that left Q4_0 decode at ~70% of the bandwidth BF16 reaches. In panels, a pass
// reads one sequential stream of whole 64-byte code vectors in which int32 lane j belongs to block
// j of 16, so a block's 32 products sum in one lane and 16 blocks share one conversion and scaling.
//
// Layout (same bytes as the GGML type: rows x k/32 blocks x 18 or 34):
//   rows form panels of 4 (the last holds rows % 4 when that is not 0); a row's blocks form
//   superblocks of 16 (the last holds the k/32 % 16 left). Panel p starts at byte 4p x row bytes;
//   in a panel of nr rows, superblock s (of nb blocks) starts at s x nr x 16 x block bytes and is
//     codes:  for row i < nr, for vector v < V, for block j < nb: 4 code bytes
//             (Q4_0: V = 4, bytes 4v..4v+3 of block 16s+j's qs, i.e. elements 4v..4v+3 in the low
//              nibbles and 16+4v..16+4v+3 in the high ones;
//              Q8_0: V = 8, elements 4v..4v+3 stored unsigned, q + 128)
//     scales: for row i < nr, for block j < nb: block 16s+j's fp16 d
//   so a full superblock of a full panel is 4 x (256 + 32) bytes (Q4_0) or 4 x (512 + 32) (Q8_0).
//
// Q4_K_R4 (same bytes as Q4_K: rows x k/256 blocks x 144) uses the same panels, with Q4_K's
// 32-element sub-blocks in the lanes: a superblock is two Q4_K blocks (16 sub-blocks; the last
// holds one block when k/256 is odd). In a panel of nr rows, superblock s (of nk Q4_K blocks, nb =
// 8 nk sub-blocks) starts at s x nr x 2 x 144 and is
//     codes:  for row i < nr, for vector v < 4, for sub-block j < nb: 4 bytes whose low nibbles
//             are elements 4v..4v+3 and high nibbles elements 16+4v..16+4v+3 of sub-block j (as
//             Q4_0's qs; sub-block j is sub-block j % 8 of Q4_K block 2s + j / 8)
//     heads:  for row i < nr, for block c < nk: block 2s+c's first 16 bytes as they are (fp16 d,
//             fp16 dmin, the 12 bytes of packed 6-bit scales and mins)
//   so a full superblock of a full panel is 4 x (256 + 32) bytes, and x's panel order is Q4_0's.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/dtype.h"

namespace anvil {

constexpr int64_t kPanelRows = 4;     // rows per panel
constexpr int64_t kPanelBlocks = 16;  // 32-element blocks per superblock: one int32 lane each in a zmm
constexpr int64_t kPanelQ4KBlocks = 2;  // Q4_K blocks (of 8 sub-blocks of 32) per superblock

// The panel layout of a GGML type (Q8_0 -> Q8_0_R4, Q4_0 -> Q4_0_R4, Q4_K -> Q4_K_R4), and back.
// The GGML types that have a panel layout: Q8_0, Q4_0, Q4_K (panel_dtype_for's domain).
bool has_panel_layout(DType ggml_dtype);
DType panel_dtype_for(DType ggml_dtype);
DType ggml_dtype_of_panels(DType panel_dtype);

// Q8_0_R4 / Q4_0_R4: where block `block` of row `row` lives in a (rows, k) panel tensor: its first code lane (vector
// v's lane is `vector_stride` x v further) and its fp16 scale, as byte offsets from the tensor start.
struct PanelBlockPlace {
  size_t codes;
  size_t vector_stride;
  size_t scale;
};
PanelBlockPlace panel_block_place(DType panel_dtype, int64_t rows, int64_t k, int64_t row, int64_t block);

// Repacks panels [panel_begin, panel_end) of a row-major (rows, k) Q8_0, Q4_0 or Q4_K tensor `src` into
// `dst` (the whole panel tensor, same size as src). Panels are independent: callers may split them
// over threads.
void repack_to_panels(DType ggml_dtype, const std::byte* src, int64_t rows, int64_t k, int64_t panel_begin,
                      int64_t panel_end, std::byte* dst);

// Row `row` of a (rows, k) panel tensor as the k/32 GGML blocks it was made from (bit for bit).
void panel_row_to_blocks(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row,
                         std::byte* blocks);
// The same for GGML blocks [block_begin, block_end) of the row only (of 32 elements, or 256 for
// Q4_K_R4), written from `blocks[0]` on.
void panel_row_range_to_blocks(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row,
                               int64_t block_begin, int64_t block_end, std::byte* blocks);

// Row `row` of a (rows, k) panel tensor as k floats, the values its GGML type's dequantizer gives
// (bit for bit), read straight from the panels: the prefill conversion where no SIMD converter runs.
void panel_row_to_f32(DType panel_dtype, const std::byte* data, int64_t rows, int64_t k, int64_t row, float* dst);

// DTypeInfo::to_float of the panel types: a one-row tensor (n elements).
void dequantize_row_q8_0_r4(const void* src, float* dst, int64_t n);
void dequantize_row_q4_0_r4(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k_r4(const void* src, float* dst, int64_t n);

}  // namespace anvil
