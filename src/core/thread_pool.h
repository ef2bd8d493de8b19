// ThreadPool: a fixed set of workers that run (thread index, thread count) kernels.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace anvil {

// Kernels never create threads; they receive (thread_index, thread_count) and split work.
// run() blocks until every thread finished its share; the caller's thread is thread 0.
class ThreadPool {
 public:
  explicit ThreadPool(int thread_count);
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
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  const std::function<void(int, int)>* task_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stopping_ = false;
};

// Default thread count: the number of cores this process may run on.
int default_thread_count();

}  // namespace anvil
