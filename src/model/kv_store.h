// KvStoreView: where a forward pass reads and writes keys and values. Per layer, the cache is an
// array of blocks of block_size rows of kv_dim elements; a sequence reaches its rows through a
// block table. The single-sequence cache is one block as long as its capacity; the batching
// engine's block pool has many small ones.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace anvil {

struct KvStoreView {
  DType dtype = DType::F32;  // F32, F16 or BF16
  int64_t block_size = 0;    // rows per block
  int64_t kv_dim = 0;        // elements per row: n_kv_heads x head_dim
  int64_t n_blocks = 0;
  std::vector<void*> keys;    // per layer: row 0 of block 0
  std::vector<void*> values;
};

// Writes one f32 row (kv_dim values) into cache row `row` of a layer, converting to the dtype.
void store_kv_row(const KvStoreView& kv, void* layer_base, int64_t row, const float* src);

}  // namespace anvil
