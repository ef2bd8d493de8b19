// OutputQueue: hands engine outputs from the engine thread to the HTTP thread that answers them.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <vector>

#include "engine/request.h"

namespace anvil::server {

// One delivery for choice `choice` of an HTTP request, stamped when it arrived (for TTFT/TPOT).
struct TimedOutput {
  int64_t choice = 0;
  RequestOutput output;
  std::chrono::steady_clock::time_point at;
};

// The engine callback must be quick (it runs on the engine loop), so it only copies the output
// in here; the HTTP thread waits on the other side. Shared by the callbacks of all choices of one
// HTTP request, and owned through shared_ptr so a late callback never outlives it.
class OutputQueue {
 public:
  void push(int64_t choice, const RequestOutput& output) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      items_.push_back({choice, output, std::chrono::steady_clock::now()});
    }
    ready_.notify_one();
  }

  // Everything queued, waiting up to `timeout` for the first item; empty on timeout.
  std::vector<TimedOutput> pop_all(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait_for(lock, timeout, [&] { return !items_.empty(); });
    std::vector<TimedOutput> out(std::make_move_iterator(items_.begin()), std::make_move_iterator(items_.end()));
    items_.clear();
    return out;
  }

 private:
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<TimedOutput> items_;
};

}  // namespace anvil::server
