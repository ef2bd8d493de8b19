// BlockManager: who owns which KV block, and the prefix cache. Blocks are reference counted; a
// block nobody references sits in an LRU free list, and if it holds a full block of known tokens
// it stays findable by its hash until it is reused for something else (then it is evicted).
// A full block's hash chains its parent's hash with its own tokens, so equal hashes mean equal
// prefixes; the tokens are compared too, so a hash collision can never serve wrong K/V.
#pragma once

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

namespace anvil {

// A sequence's view of its blocks.
struct BlockTable {
  std::vector<int32_t> blocks;   // block of positions [i * block_size, (i + 1) * block_size)
  std::vector<uint64_t> hashes;  // chain hashes of the leading full blocks that are registered
};

class BlockManager {
 public:
  BlockManager(int64_t n_blocks, int64_t block_size, bool prefix_caching);

  int64_t block_size() const { return block_size_; }
  int64_t total_blocks() const { return static_cast<int64_t>(blocks_.size()); }
  int64_t free_blocks() const { return free_count_; }          // allocatable (cached ones included)
  int64_t used_blocks() const { return total_blocks() - free_count_; }
  int64_t cached_free_blocks() const { return cached_free_; }  // free, but still holding a prefix

  // For a sequence with no blocks yet: takes the longest run of cached full blocks that prefix
  // `tokens`, at most max_tokens tokens' worth. Returns how many tokens they hold.
  int64_t acquire_cached_prefix(std::span<const int32_t> tokens, int64_t max_tokens, BlockTable& table);

  // Grows the table to cover n_positions positions. All or nothing: false (and no change) when
  // there are not enough free blocks.
  bool allocate(BlockTable& table, int64_t n_positions);

  // The sequence's first n_computed tokens now have K/V in the cache: registers each newly
  // completed block under its chain hash, so later requests can share it.
  void register_full_blocks(std::span<const int32_t> tokens, int64_t n_computed, BlockTable& table);

  // Drops the sequence's references (its table is emptied). Blocks go to the free list's tail
  // in reverse order, so a sequence's last blocks are evicted first and its prefix lasts longest.
  void release(BlockTable& table);

  // Prefix-cache statistics, in tokens: looked up and found.
  int64_t prefix_queries() const { return prefix_queries_; }
  int64_t prefix_hits() const { return prefix_hits_; }

 private:
  static constexpr int32_t kNone = -1;
  struct Block {
    int32_t ref_count = 0;
    bool has_hash = false;
    uint64_t hash = 0;
    uint64_t parent_hash = 0;
    std::vector<int32_t> tokens;  // of a registered block, to confirm hash matches
    int32_t prev = kNone, next = kNone;  // free list links
    bool in_free_list = false;
  };

  uint64_t chain_hash(uint64_t parent, std::span<const int32_t> tokens) const;
  int32_t lookup(uint64_t hash, uint64_t parent, std::span<const int32_t> tokens) const;
  void take_ref(int32_t id);
  int32_t pop_free();  // head of the LRU list, evicted from the cache
  void push_free(int32_t id);
  void unlink(int32_t id);

  int64_t block_size_;
  bool prefix_caching_;
  std::vector<Block> blocks_;
  int32_t free_head_ = kNone, free_tail_ = kNone;
  int64_t free_count_ = 0;
  int64_t cached_free_ = 0;
  std::unordered_map<uint64_t, int32_t> cached_;  // chain hash -> block
  int64_t prefix_queries_ = 0, prefix_hits_ = 0;
};

}  // namespace anvil
