// BlockManager: reference counts, all-or-nothing allocation, prefix-cache hits, LRU eviction.
#include "engine/block_manager.h"

#include <gtest/gtest.h>

#include <numeric>

namespace anvil {
namespace {

std::vector<int32_t> iota_tokens(int n, int first = 0) {
  std::vector<int32_t> t(n);
  std::iota(t.begin(), t.end(), first);
  return t;
}

TEST(BlockManager, AllocatesWholeBlocksAllOrNothingAndReleasesEverything) {
  BlockManager m(8, 4, true);
  BlockTable a, b;
  ASSERT_TRUE(m.allocate(a, 9));  // 3 blocks
  EXPECT_EQ(a.blocks.size(), 3u);
  EXPECT_EQ(m.free_blocks(), 5);
  ASSERT_TRUE(m.allocate(a, 12));  // still 3
  EXPECT_EQ(a.blocks.size(), 3u);
  EXPECT_FALSE(m.allocate(b, 24));  // 6 > 5 free: nothing taken
  EXPECT_TRUE(b.blocks.empty());
  EXPECT_EQ(m.free_blocks(), 5);
  ASSERT_TRUE(m.allocate(b, 20));
  EXPECT_EQ(m.free_blocks(), 0);
  m.release(a);
  m.release(b);
  EXPECT_EQ(m.free_blocks(), 8);
  EXPECT_EQ(m.used_blocks(), 0);
}

TEST(BlockManager, SharesRegisteredFullBlocksAndNeverTheLastToken) {
  BlockManager m(16, 4, true);
  const std::vector<int32_t> prompt = iota_tokens(10, 100);
  BlockTable a;
  EXPECT_EQ(m.acquire_cached_prefix(prompt, 9, a), 0);
  ASSERT_TRUE(m.allocate(a, 10));
  m.register_full_blocks(prompt, 10, a);  // blocks 0 and 1 are full
  EXPECT_EQ(a.hashes.size(), 2u);

  // Same prefix, different tail: two blocks shared while a still holds them.
  std::vector<int32_t> other = prompt;
  other[9] = 7;
  BlockTable b;
  EXPECT_EQ(m.acquire_cached_prefix(other, 9, b), 8);
  EXPECT_EQ(b.blocks[0], a.blocks[0]);
  EXPECT_EQ(b.blocks[1], a.blocks[1]);
  // A prompt of exactly 8 tokens reuses at most 4 (its last token must be computed).
  BlockTable c;
  EXPECT_EQ(m.acquire_cached_prefix(std::vector<int32_t>(prompt.begin(), prompt.begin() + 8), 7, c), 4);
  // A different first block shares nothing, even with the same second block.
  std::vector<int32_t> shifted = prompt;
  shifted[0] = 999;
  BlockTable d;
  EXPECT_EQ(m.acquire_cached_prefix(shifted, 9, d), 0);

  m.release(a);
  m.release(b);
  m.release(c);
  m.release(d);
  EXPECT_EQ(m.used_blocks(), 0);
  EXPECT_EQ(m.cached_free_blocks(), 2);
  EXPECT_EQ(m.prefix_hits(), 8 + 4);
}

TEST(BlockManager, EvictsLeastRecentlyUsedCachedBlocksWhenMemoryIsNeeded) {
  BlockManager m(4, 2, true);
  const std::vector<int32_t> p1 = iota_tokens(4, 10), p2 = iota_tokens(4, 50);
  BlockTable a, b;
  ASSERT_TRUE(m.allocate(a, 4));
  m.register_full_blocks(p1, 4, a);
  m.release(a);  // p1 cached, free
  ASSERT_TRUE(m.allocate(b, 4));  // takes the two never-used blocks first
  m.register_full_blocks(p2, 4, b);
  m.release(b);
  EXPECT_EQ(m.cached_free_blocks(), 4);
  // Touch p2 again (most recent), then allocate two fresh blocks: p1's are evicted.
  BlockTable c, d;
  EXPECT_EQ(m.acquire_cached_prefix(p2, 4, c), 4);
  m.release(c);
  ASSERT_TRUE(m.allocate(d, 4));
  m.release(d);
  BlockTable e, f;
  EXPECT_EQ(m.acquire_cached_prefix(p1, 4, e), 0);
  EXPECT_EQ(m.acquire_cached_prefix(p2, 4, f), 4);
  m.release(e);
  m.release(f);
  EXPECT_EQ(m.free_blocks(), 4);
}

TEST(BlockManager, PrefixCachingOffNeverHits) {
  BlockManager m(8, 2, false);
  const std::vector<int32_t> p = iota_tokens(6);
  BlockTable a, b;
  ASSERT_TRUE(m.allocate(a, 6));
  m.register_full_blocks(p, 6, a);
  m.release(a);
  EXPECT_EQ(m.acquire_cached_prefix(p, 5, b), 0);
  EXPECT_EQ(m.prefix_queries(), 6);
  EXPECT_EQ(m.prefix_hits(), 0);
}

}  // namespace
}  // namespace anvil
