// StealingRanges: every unit of [0, n) is handed out exactly once, in aligned ranges, whichever
// threads take it; a thread that finishes early takes over part of a slow thread's share.
#include "core/stealing_ranges.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>
#include <utility>
#include <vector>

#include "core/thread_pool.h"

namespace anvil {
namespace {

// Runs the pool over a StealingRanges of [0, n), counting how often each element is handed out.
std::vector<int> cover(ThreadPool& pool, int64_t n, int64_t align) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  StealingRanges ranges(n, pool.thread_count(), align);
  pool.run([&](int index, int) {
    int64_t begin, end;
    while (ranges.next(index, begin, end)) {
      EXPECT_LT(begin, end);
      EXPECT_EQ(begin % align, 0) << "range starts inside a unit";
      EXPECT_TRUE(end == n || end % align == 0) << "range ends inside a unit";
      for (int64_t i = begin; i < end; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
    }
  });
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
    const int64_t n = (int64_t{3} << (align == 1 ? 32 : 36)) + 5;  // 3 x 2^32 units + a short one
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

TEST(StealingRanges, FastThreadTakesOverTheRestOfAStalledThreadsShare) {
  // Thread 1 takes its first range and then stalls until thread 0 has run out of work: thread 0
  // empties its own half and steals all that is left of thread 1's, from the back. With 256 units
  // of 16, thread 1's first range is a quarter of its 128-unit half: 32 units, 512 elements.
  ThreadPool pool(2);
  const int64_t n = 4096;
  StealingRanges ranges(n, pool.thread_count(), 16);
  std::vector<int> hits(n, 0);
  int64_t taken[2] = {0, 0};
  std::atomic<bool> first_taken{false}, thread0_done{false};
  pool.run([&](int index, int) {
    int64_t begin, end;
    if (index == 1) {
      if (ranges.next(1, begin, end)) {
        for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
        taken[1] += end - begin;
      }
      first_taken.store(true);
      while (!thread0_done.load()) std::this_thread::yield();
      EXPECT_FALSE(ranges.next(1, begin, end)) << "thread 0 left work behind";
      return;
    }
    while (!first_taken.load()) std::this_thread::yield();
    while (ranges.next(0, begin, end)) {
      for (int64_t i = begin; i < end; ++i) ++hits[static_cast<size_t>(i)];
      taken[0] += end - begin;
    }
    thread0_done.store(true);
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_EQ(taken[1], 512);
  EXPECT_EQ(taken[0], n - 512);
}

}  // namespace
}  // namespace anvil
