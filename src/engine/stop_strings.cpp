// Stop-string matching over a stream of text pieces.
#include "engine/stop_strings.h"

#include <algorithm>

namespace anvil {

StopStringMatcher::StopStringMatcher(std::vector<std::string> stop_strings) {
  for (std::string& s : stop_strings)
    if (!s.empty()) stop_strings_.push_back(std::move(s));
}

std::string StopStringMatcher::push(const std::string& text) {
  if (stopped_) return "";
  held_ += text;
  // Earliest full match wins.
  size_t match_at = std::string::npos;
  for (const std::string& stop : stop_strings_) {
    const size_t at = held_.find(stop);
    if (at != std::string::npos && at < match_at) {
      match_at = at;
      matched_ = stop;
    }
  }
  if (match_at != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, match_at);
    held_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of some stop string.
  size_t hold = 0;
  for (const std::string& stop : stop_strings_)
    for (size_t k = std::min(stop.size() - 1, held_.size()); k > hold; --k)
      if (held_.compare(held_.size() - k, k, stop, 0, k) == 0) {
        hold = k;
        break;
      }
  std::string out = held_.substr(0, held_.size() - hold);
  held_.erase(0, held_.size() - hold);
  return out;
}

std::string StopStringMatcher::flush() {
  std::string out;
  out.swap(held_);
  return out;
}

}  // namespace anvil
