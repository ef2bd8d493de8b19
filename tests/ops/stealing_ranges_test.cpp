// StealingRanges: every unit of [0, n) is handed out exactly once, in aligned ranges, whichever
// threads take it; a thread that finishes early takes over part of a slow thread's share.
#include "core/stealing_ranges.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <utility>
#include <vector>

#include "core/thread_pool.h"

namespace anvil {
namespace {

// Runs the pool over a StealingRanges of [0, n), counting how often each element is handed out;
// `slow_thread` sleeps after every range it takes.
std::vector<int> cover(ThreadPool& pool, int64_t n, int64_t align, std::vector<int64_t>* taken_by_thread = nullptr,
                       int slow_thread = -1) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::vector<int64_t> taken(static_cast<size_t>(pool.thread_count()), 0);
  StealingRanges ranges(n, pool.thread_count(), align);
  pool.run([&](int index, int) {
    int64_t begin, end;
    while (ranges.next(index, begin, end)) {
      EXPECT_LT(begin, end);
      EXPECT_EQ(begin % align, 0) << "range starts inside a unit";
      EXPECT_TRUE(end == n || end % align == 0) << "range ends inside a unit";
      for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      taken[static_cast<size_t>(index)] += end - begin;
      if (index == slow_thread) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  });
  if (taken_by_thread) *taken_by_thread = taken;
  std::vector<int> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = hits[static_cast<size_t>(i)].load();
  return out;
}

TEST(StealingRanges, EveryElementIsTakenExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 8}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 15, 16, 17, 100, 2048, 128256 + 7}) {
      for (int64_t align : {1, 16}) {
        for (int repeat = 0; repeat < 20; ++repeat) {
          const std::vector<int> hits = cover(pool, n, align);
          for (int64_t i = 0; i < n; ++i)
            ASSERT_EQ(hits[static_cast<size_t>(i)], 1)
                << "element " << i << " of " << n << ", align " << align << ", " << threads << " threads";
        }
      }
    }
  }
}

TEST(StealingRanges, CountsPastThirtyTwoBitsStillCoverEverything) {
  // The bounds are packed into 32-bit halves: past 2^31 units the units grow (still aligned).
  ThreadPool pool(2);
  for (int64_t align : {1, 16}) {
    const int64_t n = (int64_t{3} << 32) + 5;
    StealingRanges ranges(n, pool.thread_count(), align);
    std::vector<std::vector<std::pair<int64_t, int64_t>>> taken(2);
    pool.run([&](int index, int) {
      int64_t begin, end;
      while (ranges.next(index, begin, end)) taken[static_cast<size_t>(index)].push_back({begin, end});
    });
    std::vector<std::pair<int64_t, int64_t>> all = taken[0];
    all.insert(all.end(), taken[1].begin(), taken[1].end());
    std::sort(all.begin(), all.end());
    int64_t expected = 0;
    for (const auto& [begin, end] : all) {
      ASSERT_EQ(begin, expected) << "a gap or an overlap";
      ASSERT_EQ(begin % align, 0);
      expected = end;
    }
    EXPECT_EQ(expected, n);
  }
}

TEST(StealingRanges, FewerUnitsThanThreadsLeaveSomeThreadsWithout) {
  ThreadPool pool(4);
  const std::vector<int> hits = cover(pool, 20, 16);  // two units for four threads
  for (int h : hits) EXPECT_EQ(h, 1);
}

TEST(StealingRanges, FastThreadTakesOverPartOfASlowThreadsShare) {
  // Thread 1 sleeps after every range it takes: thread 0 empties its own half first and then
  // steals from the back of thread 1's, so it ends up with well over half of the work.
  ThreadPool pool(2);
  std::vector<int64_t> taken;
  const int64_t n = 4096;
  const std::vector<int> hits = cover(pool, n, 16, &taken, /*slow_thread=*/1);
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_GT(taken[0], n * 3 / 4) << "thread 0 took " << taken[0] << " of " << n;
  EXPECT_EQ(taken[0] + taken[1], n);
}

}  // namespace
}  // namespace anvil
