// ThreadPool implementation: a generation counter starts the workers, a pending counter tells the
// caller they finished. Both sides spin briefly before they sleep (see thread_pool.h).
#include "core/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace anvil {

namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#endif
}

// Spins until done() or `budget` has passed; true when done() became true. Every 64 pauses (a
// pause is ~10-70 cycles) it reads the clock and yields: with more runnable threads than cores
// (a busy machine, two test processes) the thread it waits for may need this core, and a
// spinner that never yields would hold it for the whole budget. With nothing else to run,
// sched_yield returns at once.
template <class Done>
bool spin_until(Done done, std::chrono::nanoseconds budget) {
  if (budget.count() <= 0) return done();
  const auto deadline = std::chrono::steady_clock::now() + budget;
  while (true) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
    sched_yield();
  }
}

}  // namespace

std::chrono::nanoseconds default_pool_spin() {
  static const std::chrono::nanoseconds spin = [] {
    const char* text = std::getenv("ANVIL_POOL_SPIN_US");
    const long us = text && *text ? std::strtol(text, nullptr, 10) : 200;
    return std::chrono::nanoseconds(std::max(0L, us) * 1000);
  }();
  return spin;
}

ThreadPool::ThreadPool(int thread_count, std::chrono::nanoseconds spin)
    : thread_count_(std::max(1, thread_count)), spin_(spin) {
  for (int i = 1; i < thread_count_; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  stopping_.store(true);
  generation_.fetch_add(1);
  generation_.notify_all();
  for (std::thread& t : workers_) t.join();
}

void ThreadPool::run(const std::function<void(int, int)>& task) {
  if (thread_count_ == 1) {
    task(0, 1);
    return;
  }
  task_ = &task;
  pending_.store(thread_count_ - 1);
  // seq_cst on both sides: a worker either sees the new generation before it sleeps, or it had
  // registered as a sleeper before this load and gets the notify (no lost wake-up).
  generation_.fetch_add(1);
  if (sleeping_workers_.load() > 0) generation_.notify_all();
  task(0, thread_count_);
  if (!spin_until([this] { return pending_.load(std::memory_order_acquire) == 0; }, spin_)) {
    caller_sleeping_.store(true);
    for (int left = pending_.load(); left != 0; left = pending_.load()) pending_.wait(left);
    caller_sleeping_.store(false);
  }
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
  // 0, not a load: a run() may have started before this thread did.
  uint64_t seen_generation = 0;
  while (true) {
    if (!spin_until([&] { return generation_.load(std::memory_order_acquire) != seen_generation; }, spin_)) {
      sleeping_workers_.fetch_add(1);
      for (uint64_t g = generation_.load(); g == seen_generation; g = generation_.load()) generation_.wait(g);
      sleeping_workers_.fetch_sub(1);
    }
    seen_generation = generation_.load(std::memory_order_acquire);
    if (stopping_.load()) return;
    (*task_)(thread_index, thread_count_);
    // The caller reads pending_ == 0 as "every share is done": the decrement releases the
    // share's writes. Notify only a caller that gave up spinning.
    if (pending_.fetch_sub(1) == 1 && caller_sleeping_.load()) pending_.notify_one();
  }
}

int default_thread_count() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

}  // namespace anvil
