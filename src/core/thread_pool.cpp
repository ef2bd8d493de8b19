// ThreadPool implementation: a generation counter wakes workers; the caller takes share 0.
#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>

namespace anvil {

ThreadPool::ThreadPool(int thread_count) : thread_count_(std::max(1, thread_count)) {
  for (int i = 1; i < thread_count_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& task) {
  if (thread_count_ == 1) {
    task(0, 1);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    task_ = &task;
    pending_ = thread_count_ - 1;
    ++generation_;
  }
  work_ready_.notify_all();
  task(0, thread_count_);
  std::unique_lock<std::mutex> lock(mutex_);
  work_done_.wait(lock, [this] { return pending_ == 0; });
  task_ = nullptr;
}

void ThreadPool::parallel_for(int64_t n, const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  run([&](int index, int count) {
    const int64_t chunk = (n + count - 1) / count;
    const int64_t begin = std::min<int64_t>(n, index * chunk);
    const int64_t end = std::min<int64_t>(n, begin + chunk);
    if (begin < end) fn(begin, end);
  });
}

void ThreadPool::worker_loop(int thread_index) {
  uint64_t seen_generation = 0;
  while (true) {
    const std::function<void(int, int)>* task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen_generation; });
      if (stopping_) return;
      seen_generation = generation_;
      task = task_;
    }
    (*task)(thread_index, thread_count_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) work_done_.notify_one();
    }
  }
}

int default_thread_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace anvil
