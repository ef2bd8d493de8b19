// AdmissionControl: the bounded waiting queue in front of the engine (429 when it is full).
#pragma once

#include <cstdint>
#include <mutex>

namespace anvil::server {

// Counts engine requests that were submitted but have not started producing tokens. A server
// that queued without bound would only turn overload into timeouts; refusing early with 429 and
// Retry-After lets clients and load balancers back off.
class AdmissionControl {
 public:
  explicit AdmissionControl(int64_t max_waiting) : max_waiting_(max_waiting) {}

  // Reserves `count` waiting slots for one HTTP request, all or nothing.
  bool try_admit(int64_t count) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (waiting_ + count > max_waiting_ && waiting_ > 0) return false;  // one request alone always fits
    waiting_ += count;
    return true;
  }
  // One admitted engine request started (its first output came) or ended without starting.
  void release(int64_t count = 1) {
    std::lock_guard<std::mutex> lock(mutex_);
    waiting_ -= count;
  }
  int64_t waiting() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return waiting_;
  }
  int64_t max_waiting() const { return max_waiting_; }

 private:
  const int64_t max_waiting_;
  mutable std::mutex mutex_;
  int64_t waiting_ = 0;
};

}  // namespace anvil::server
