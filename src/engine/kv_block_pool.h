// KvBlockPool: the memory of the paged KV cache, allocated once when the engine starts: per layer,
// n_blocks blocks of block_size rows (keys and values) at the KV dtype, each block KV head by KV
// head (KvStoreView::head_major), plus a scale per row and KV head for the 1-byte dtypes
// (model/kv_store.h). Which block belongs to
// whom is the BlockManager's business; this class only owns the bytes.
#pragma once

#include <cstdint>

#include "anvil/status.h"
#include "core/dtype.h"
#include "model/kv_store.h"
#include "model/model_config.h"

namespace anvil {

class KvBlockPool {
 public:
  // Fails when n_blocks < 1 or the mapping cannot be made. Pages are touched only when first
  // written, so a large pool costs address space, not memory, until it fills.
  static Result<KvBlockPool> create(const ModelConfig& config, DType dtype, int64_t block_size, int64_t n_blocks);
  KvBlockPool(KvBlockPool&& other) noexcept;
  KvBlockPool& operator=(KvBlockPool&& other) noexcept;
  KvBlockPool(const KvBlockPool&) = delete;
  KvBlockPool& operator=(const KvBlockPool&) = delete;
  ~KvBlockPool();

  const KvStoreView& view() const { return view_; }
  int64_t n_blocks() const { return view_.n_blocks; }
  int64_t block_size() const { return view_.block_size; }
  size_t bytes() const { return bytes_; }

  // Bytes one block takes over all layers (keys and values, scales included): block_size x
  // kv_bytes_per_token (engine/memory_plan.h), so the planner and the pool agree.
  static size_t block_bytes(const ModelConfig& config, DType dtype, int64_t block_size);

 private:
  KvBlockPool() = default;
  void* memory_ = nullptr;
  size_t bytes_ = 0;
  KvStoreView view_;
};

}  // namespace anvil
