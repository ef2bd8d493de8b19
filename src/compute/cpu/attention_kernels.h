// Internal interface between the attention driver and its per-ISA flash kernels (plain data, no
// std types, so the ISA-specific translation units instantiate no shared inline code).
#pragma once

#include <cstdint>

namespace anvil::attention_detail {

constexpr int64_t kKeyTile = 32;  // keys per tile: S tile and V tile stay in L1
constexpr int64_t kKvPrefetchTiles = 1;  // tiles ahead whose K/V rows are prefetched
constexpr int64_t kMaxLanes = 16;

constexpr int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Element type of the cache rows (the KV subset of DType, kept local so that this header stays
// free of other project headers).
enum class KvElem : int32_t { F32, F16, BF16, F8_E4M3, I8 };

// One kernel call: the query heads of one KV head (a GQA group) for n_tokens consecutive tokens,
// against cache rows [key_begin, key_end) further limited per query by causality and the window.
// Rows are numbered r = token * group + head_in_group.
struct FlashArgs {
  const float* q;        // token 0, first head of the group; token t at q + t * q_stride
  int64_t q_stride;
  // This KV head's elements of cache row 0 (block 0, offset 0); key j at keys + (block(j) *
  // block_stride + offset(j) * kv_stride) elements of kv_elem (no block table: j * kv_stride).
  const void* keys;
  const void* values;
  int64_t kv_stride;
  int64_t block_stride;
  KvElem kv_elem;
  // F8_E4M3 / I8: the scale of cache row r of this KV head at key_scales[r * scale_stride]
  // (value_scales alike); element = code x scale. Null for the other element types.
  const float* key_scales;
  const float* value_scales;
  int64_t scale_stride;
  // Key (sequence position) j lives in cache row block_table[j / block_size] * block_size +
  // j % block_size; block_table null: row j.
  const int32_t* block_table;
  int64_t block_size;
  int64_t head_dim, group, n_tokens;
  int64_t first_position;  // position (= cache row) of token 0
  int64_t window;          // 0: full causal; W > 0: a query at p sees keys (p - W, p]
  int64_t key_begin, key_end;
  float scale;
  // Normalized output (token t, head g at out + t * out_stride + g * head_dim) when part_o is null;
  // otherwise the unnormalized partial result of this key range for a later log-sum-exp merge:
  // part_o (rows x head_dim), part_m (running max), part_l (sum of e^(s - max)).
  float* out;
  int64_t out_stride;
  float* part_o;
  float* part_m;
  float* part_l;
  float* scratch;  // flash_scratch_floats(head_dim, rows) floats
};

constexpr int64_t flash_scratch_floats(int64_t head_dim, int64_t rows) {
  const int64_t rp = round_up(rows, kMaxLanes), hp = round_up(head_dim, kMaxLanes);
  // qt, o, m/l/alpha/lo/hi, S tile, V tile (padded or converted), K tile (converted).
  return head_dim * rp + rows * hp + 5 * rp + kKeyTile * rp + kKeyTile * hp + kKeyTile * head_dim;
}

using FlashKernel = void (*)(const FlashArgs& args);

FlashKernel flash_kernel_scalar();
FlashKernel flash_kernel_avx2();
FlashKernel flash_kernel_avx512();

}  // namespace anvil::attention_detail
