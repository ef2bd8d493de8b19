// Block reference counting, the LRU free list and the prefix cache.
#include "engine/block_manager.h"

#include <algorithm>
#include <cassert>

namespace anvil {

BlockManager::BlockManager(int64_t n_blocks, int64_t block_size, bool prefix_caching)
    : block_size_(block_size), prefix_caching_(prefix_caching), blocks_(static_cast<size_t>(n_blocks)) {
  for (int32_t id = 0; id < static_cast<int32_t>(n_blocks); ++id) push_free(id);
}

uint64_t BlockManager::chain_hash(uint64_t parent, std::span<const int32_t> tokens) const {
  // 64-bit mix of (parent, tokens): collisions are caught by comparing tokens on lookup.
  uint64_t h = parent ^ 0x9e3779b97f4a7c15ull;
  for (int32_t t : tokens) {
    h ^= static_cast<uint32_t>(t) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 31;
  }
  return h;
}

int32_t BlockManager::lookup(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const {
  auto it = cached_.find(hash);
  if (it == cached_.end()) return kNone;
  const Block& b = blocks_[it->second];
  if (b.parent_hash != parent || !std::equal(tokens.begin(), tokens.end(), b.tokens.begin(), b.tokens.end()))
    return kNone;
  return it->second;
}

void BlockManager::unlink(int32_t id) {
  Block& b = blocks_[id];
  if (b.prev != kNone) blocks_[b.prev].next = b.next; else free_head_ = b.next;
  if (b.next != kNone) blocks_[b.next].prev = b.prev; else free_tail_ = b.prev;
  b.prev = b.next = kNone;
  b.in_free_list = false;
  --free_count_;
  if (b.has_hash) --cached_free_;
}

void BlockManager::push_free(int32_t id) {
  Block& b = blocks_[id];
  b.prev = free_tail_;
  b.next = kNone;
  if (free_tail_ != kNone) blocks_[free_tail_].next = id; else free_head_ = id;
  free_tail_ = id;
  b.in_free_list = true;
  ++free_count_;
  if (b.has_hash) ++cached_free_;
}

void BlockManager::take_ref(int32_t id) {
  Block& b = blocks_[id];
  if (b.ref_count++ == 0) unlink(id);
}

int32_t BlockManager::pop_free() {
  const int32_t id = free_head_;
  unlink(id);
  Block& b = blocks_[id];
  if (b.has_hash) {  // evicted: its contents are about to be overwritten
    cached_.erase(b.hash);
    b.has_hash = false;
    b.tokens.clear();
  }
  b.ref_count = 1;
  return id;
}

int64_t BlockManager::acquire_cached_prefix(std::span<const int32_t> tokens, int64_t max_tokens, BlockTable& table) {
  if (!table.blocks.empty()) return 0;
  prefix_queries_ += static_cast<int64_t>(tokens.size());
  if (!prefix_caching_) return 0;
  uint64_t parent = 0;
  int64_t n = 0;
  while (n + block_size_ <= std::min<int64_t>(max_tokens, static_cast<int64_t>(tokens.size()))) {
    const std::span<const int32_t> block_tokens = tokens.subspan(n, block_size_);
    const uint64_t hash = chain_hash(parent, block_tokens);
    const int32_t id = lookup(hash, parent, block_tokens);
    if (id == kNone) break;
    take_ref(id);
    table.blocks.push_back(id);
    table.hashes.push_back(hash);
    parent = hash;
    n += block_size_;
  }
  prefix_hits_ += n;
  return n;
}

bool BlockManager::allocate(BlockTable& table, int64_t n_positions) {
  const int64_t need = (n_positions + block_size_ - 1) / block_size_ - static_cast<int64_t>(table.blocks.size());
  if (need <= 0) return true;
  if (need > free_count_) return false;
  for (int64_t i = 0; i < need; ++i) table.blocks.push_back(pop_free());
  return true;
}

void BlockManager::register_full_blocks(std::span<const int32_t> tokens, int64_t n_computed, BlockTable& table) {
  if (!prefix_caching_) return;
  const int64_t full = std::min<int64_t>(n_computed / block_size_, static_cast<int64_t>(table.blocks.size()));
  for (int64_t i = static_cast<int64_t>(table.hashes.size()); i < full; ++i) {
    const uint64_t parent = i == 0 ? 0 : table.hashes[i - 1];
    const std::span<const int32_t> block_tokens = tokens.subspan(i * block_size_, block_size_);
    const uint64_t hash = chain_hash(parent, block_tokens);
    table.hashes.push_back(hash);
    Block& b = blocks_[table.blocks[i]];
    // The first sequence to complete a prefix registers it; a twin computed concurrently stays
    // private and is simply freed later.
    if (b.has_hash || cached_.count(hash)) continue;
    b.has_hash = true;
    b.hash = hash;
    b.parent_hash = parent;
    b.tokens.assign(block_tokens.begin(), block_tokens.end());
    cached_.emplace(hash, table.blocks[i]);
  }
}

void BlockManager::release(BlockTable& table) {
  for (auto it = table.blocks.rbegin(); it != table.blocks.rend(); ++it) {
    Block& b = blocks_[*it];
    assert(b.ref_count > 0);
    if (--b.ref_count == 0) push_free(*it);
  }
  table.blocks.clear();
  table.hashes.clear();
}

}  // namespace anvil
