// ThreadPool: a fixed set of workers that run (thread index, thread count) kernels.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <thread>
#include <vector>

namespace anvil {

// How long pool threads spin for the next task (workers) or for the last share (the caller)
// before they sleep in the kernel: 200 us, or ANVIL_POOL_SPIN_US (0 = sleep at once).
std::chrono::nanoseconds default_pool_spin();

// Kernels never create threads; they receive (thread_index, thread_count) and split work.
// run() blocks until every thread finished its share; the caller's thread is thread 0.
//
// Why spinning: a decode step is ~100 short dispatches (one per matrix, norm, attention) a few
// microseconds apart. Waking a sleeping worker costs a futex call and, in a VM, an inter-processor
// interrupt to a halted vCPU (tens of microseconds each, paid twice per dispatch), and the late
// worker then holds up the barrier. Spinning with `pause` for a bounded time keeps workers hot
// through a forward pass; past the budget they sleep, so an idle pool (a server between
// requests) uses no CPU. Callers run one task at a time (run() is not re-entrant).
class ThreadPool {
 public:
  explicit ThreadPool(int thread_count, std::chrono::nanoseconds spin = default_pool_spin());
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int thread_count() const { return thread_count_; }
  void run(const std::function<void(int thread_index, int thread_count)>& task);

  // Splits [0, n) into thread_count contiguous ranges and runs fn(begin, end) on each.
  void parallel_for(int64_t n, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker_loop(int thread_index);

  int thread_count_;
  std::chrono::nanoseconds spin_;
  std::vector<std::thread> workers_;
  const std::function<void(int, int)>* task_ = nullptr;  // published by the generation_ increment
  std::atomic<uint64_t> generation_{0};                  // one increment per run() (and at shutdown)
  std::atomic<int> pending_{0};                          // worker shares of this run() not yet done
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  std::atomic<bool> stopping_{false};
};

// Default thread count: the number of cores this process may run on.
int default_thread_count();

}  // namespace anvil
