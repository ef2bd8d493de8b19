// StealingRanges: a pool task's [0, n) split into one contiguous home range per thread, each
// consumed from its front by its owner and from its back by threads whose own range is empty:
// dynamic load balance that keeps every thread on long sequential runs.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>

namespace anvil {

// Why: decode's matrix-vector products are split over threads by output rows, and a static split
// leaves the threads that finish first waiting at the barrier for the last: on a shared VM the
// two halves of one matrix finish up to ~10% of the call apart, in either order (memory bandwidth
// is not shared evenly from one microsecond to the next). Stealing half of what is left of the
// slower thread's range evens that out; taking it from the back leaves the owner's stream intact.
//
// Work is counted in units of `align` elements (the last unit may be short): ranges never split a
// unit, so a kernel that needs row ranges in multiples of 16 gets them. Thread-safe: every thread
// of the task calls next() with its own index until it returns false. The atomics only hand out
// ranges (relaxed): what the threads write is published by ThreadPool::run's barrier.
class StealingRanges {
 public:
  StealingRanges(int64_t n, int thread_count, int64_t align) : n_(n), align_(align), count_(thread_count) {
    // Bounds are packed as two 32-bit unit counts: past 2^31 units, coarser units (still
    // multiples of `align`).
    align_ *= ((n + align - 1) / align >> 31) + 1;
    const int64_t units = (n + align_ - 1) / align_;
    ranges_ = std::make_unique<Range[]>(static_cast<size_t>(count_));
    for (int t = 0; t < count_; ++t) {
      const uint64_t front = static_cast<uint64_t>(units * t / count_);
      const uint64_t back = static_cast<uint64_t>(units * (t + 1) / count_);
      ranges_[t].bounds.store(front << 32 | back, std::memory_order_relaxed);
    }
  }

  // The next [begin, end) for thread `t`: a quarter of what is left of its own range, from the
  // front (chunks shrink as the range empties, so the last one in flight is small: a few atomic
  // operations per call), else half of what is left of the fullest other range, from its back.
  // False when nothing is left.
  bool next(int t, int64_t& begin, int64_t& end) {
    uint64_t first = 0, last = 0;
    if (take_front(ranges_[t], first, last) || steal(t, first, last)) {
      begin = static_cast<int64_t>(first) * align_;
      end = std::min(n_, static_cast<int64_t>(last) * align_);
      return true;
    }
    return false;
  }

 private:
  struct alignas(64) Range {
    std::atomic<uint64_t> bounds{0};  // front << 32 | back, in units; empty when front >= back
  };

  static uint64_t front_of(uint64_t b) { return b >> 32; }
  static uint64_t back_of(uint64_t b) { return b & 0xFFFFFFFFu; }

  static bool take_front(Range& r, uint64_t& first, uint64_t& last) {
    uint64_t b = r.bounds.load(std::memory_order_relaxed);
    while (front_of(b) < back_of(b)) {
      const uint64_t f = front_of(b), e = f + (back_of(b) - f + 3) / 4;
      if (r.bounds.compare_exchange_weak(b, e << 32 | back_of(b), std::memory_order_relaxed)) {
        first = f;
        last = e;
        return true;
      }
    }
    return false;
  }

  bool steal(int t, uint64_t& first, uint64_t& last) {
    while (true) {
      int victim = -1;
      uint64_t most = 0;
      for (int v = 0; v < count_; ++v) {
        if (v == t) continue;
        const uint64_t b = ranges_[v].bounds.load(std::memory_order_relaxed);
        const uint64_t left = front_of(b) < back_of(b) ? back_of(b) - front_of(b) : 0;
        if (left > most) {
          most = left;
          victim = v;
        }
      }
      if (victim < 0) return false;
      Range& r = ranges_[victim];
      uint64_t b = r.bounds.load(std::memory_order_relaxed);
      while (front_of(b) < back_of(b)) {
        const uint64_t left = back_of(b) - front_of(b);
        const uint64_t e = back_of(b), f = e - (left + 1) / 2;
        if (r.bounds.compare_exchange_weak(b, front_of(b) << 32 | f, std::memory_order_relaxed)) {
          first = f;
          last = e;
          return true;
        }
      }
      // The victim emptied meanwhile: look again.
    }
  }

  int64_t n_;
  int64_t align_;
  int count_;
  std::unique_ptr<Range[]> ranges_;
};

}  // namespace anvil
