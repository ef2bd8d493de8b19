// The KV block pool's memory: one anonymous mapping, carved into per-layer key and value arrays
// (and, for the 1-byte dtypes, their per-row scale arrays).
#include "engine/kv_block_pool.h"

#include <fmt/format.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace anvil {

size_t KvBlockPool::block_bytes(const ModelConfig& c, DType dtype, int64_t block_size) {
  return 2 * static_cast<size_t>(c.n_layers) * static_cast<size_t>(block_size) *
         kv_row_bytes(dtype, c.n_kv_heads, c.head_dim);
}

Result<KvBlockPool> KvBlockPool::create(const ModelConfig& c, DType dtype, int64_t block_size, int64_t n_blocks) {
  if (!is_kv_cache_dtype(dtype))
    return Status::error(
        fmt::format("KV cache dtype {} is not supported; use f32, f16, bf16, fp8 or int8", dtype_name(dtype)));
  if (block_size < 1) return Status::error("the KV block size must be at least 1");
  if (n_blocks < 1) return Status::error("the KV cache has room for no block; give it more memory");
  const int64_t kv_dim = c.n_kv_heads * c.head_dim;
  const size_t layer_array = dtype_bytes(dtype, n_blocks * block_size * kv_dim);
  // F8_E4M3 / I8: the scale arrays (a float per row and KV head) follow all the code arrays, from
  // a 64-byte boundary.
  const bool scaled = kv_dtype_has_scales(dtype);
  const size_t codes_bytes = 2 * static_cast<size_t>(c.n_layers) * layer_array;
  const size_t scales_at = scaled ? (codes_bytes + 63) / 64 * 64 : codes_bytes;
  const size_t scale_array = scaled ? static_cast<size_t>(n_blocks * block_size * c.n_kv_heads) * sizeof(float) : 0;
  KvBlockPool pool;
  pool.bytes_ = scales_at + 2 * static_cast<size_t>(c.n_layers) * scale_array;
  // MAP_NORESERVE: memory is committed as blocks are first written, not up front.
  void* memory = mmap(nullptr, pool.bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (memory == MAP_FAILED)
    return Status::error(fmt::format("cannot reserve {:.2f} GiB for the KV cache: {}", pool.bytes_ / 1073741824.0,
                                     std::strerror(errno)));
  pool.memory_ = memory;
  madvise(memory, pool.bytes_, MADV_HUGEPAGE);  // fewer TLB misses in attention; a hint only
  pool.view_.dtype = dtype;
  pool.view_.block_size = block_size;
  pool.view_.kv_dim = kv_dim;
  pool.view_.n_kv_heads = c.n_kv_heads;
  pool.view_.n_blocks = n_blocks;
  pool.view_.head_major = true;  // decode attention streams each KV head's rows
  uint8_t* base = static_cast<uint8_t*>(memory);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    pool.view_.keys.push_back(base + (2 * l) * layer_array);
    pool.view_.values.push_back(base + (2 * l + 1) * layer_array);
    if (scaled) {
      pool.view_.key_scales.push_back(reinterpret_cast<float*>(base + scales_at + (2 * l) * scale_array));
      pool.view_.value_scales.push_back(reinterpret_cast<float*>(base + scales_at + (2 * l + 1) * scale_array));
    }
  }
  return pool;
}

KvBlockPool::KvBlockPool(KvBlockPool&& other) noexcept { *this = std::move(other); }

KvBlockPool& KvBlockPool::operator=(KvBlockPool&& other) noexcept {
  if (this != &other) {
    if (memory_) munmap(memory_, bytes_);
    memory_ = std::exchange(other.memory_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
    view_ = std::move(other.view_);
  }
  return *this;
}

KvBlockPool::~KvBlockPool() {
  if (memory_) munmap(memory_, bytes_);
}

}  // namespace anvil
