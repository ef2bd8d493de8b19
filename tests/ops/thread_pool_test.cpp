// ThreadPool: every share runs exactly once per run(), its writes are visible to the caller when
// run() returns, and that holds on both wake-up paths (spinning and sleeping workers/caller).
#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace anvil {
namespace {

using std::chrono::microseconds;

// Each run: every thread index writes its own slot (plain stores); the caller checks them all.
void expect_runs_complete(ThreadPool& pool, int runs) {
  const int n = pool.thread_count();
  std::vector<int64_t> slots(n, -1);
  for (int run = 0; run < runs; ++run) {
    pool.run([&](int index, int count) {
      ASSERT_EQ(count, n);
      slots[index] = run;
    });
    for (int i = 0; i < n; ++i) ASSERT_EQ(slots[i], run) << "thread " << i << " run " << run;
  }
}

TEST(ThreadPool, EveryShareRunsOncePerRunWhenSpinning) {
  for (int threads : {1, 2, 3, 4}) {
    ThreadPool pool(threads, microseconds(1000));
    expect_runs_complete(pool, 20000);
  }
}

TEST(ThreadPool, EveryShareRunsOncePerRunWhenSleeping) {
  // No spinning: every dispatch goes through the futex wake-up and the caller's sleep.
  for (int threads : {2, 3, 4}) {
    ThreadPool pool(threads, microseconds(0));
    expect_runs_complete(pool, 5000);
  }
}

TEST(ThreadPool, WorkersThatFellAsleepWakeForTheNextRun) {
  ThreadPool pool(3, microseconds(50));
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past the spin budget: workers sleep
    expect_runs_complete(pool, 3);
  }
}

TEST(ThreadPool, SlowShareHoldsTheCallerUntilItEnds) {
  // The caller's spin budget runs out while a worker is still busy: it must sleep, not return.
  ThreadPool pool(2, microseconds(20));
  std::atomic<int> done{0};
  for (int i = 0; i < 5; ++i) {
    pool.run([&](int index, int) {
      if (index == 1) {
        std::this_thread::sleep_for(std::chrono::milliseconds(3));
        done.fetch_add(1);
      }
    });
    EXPECT_EQ(done.load(), i + 1);
  }
}

TEST(ThreadPool, RunRightAfterConstructionReachesEveryWorker) {
  // The first run() may start before the worker threads do (they must not miss it).
  for (int i = 0; i < 200; ++i) {
    ThreadPool pool(3, microseconds(i % 2 ? 0 : 100));
    expect_runs_complete(pool, 1);
  }
}

TEST(ThreadPool, DestroysWithWorkersSpinningOrSleeping) {
  for (int wait_us : {0, 5000}) {
    ThreadPool pool(4, microseconds(1000));
    expect_runs_complete(pool, 10);
    std::this_thread::sleep_for(microseconds(wait_us));
  }  // destructor joins (a hang here fails by the test timeout)
}

}  // namespace
}  // namespace anvil
