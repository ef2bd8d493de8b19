// StopStringMatcher: finds stop strings in streamed text and holds back what may begin one,
// so the caller never shows a stop string (or half of one) to the user.
#pragma once

#include <string>
#include <vector>

namespace anvil {

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stop_strings);

  // Appends text; returns what is now safe to emit. After a match, stopped() is true and the
  // returned text ends right before the stop string.
  std::string push(const std::string& text);
  std::string flush();  // held-back text at the end of generation (no match happened)
  bool stopped() const { return stopped_; }
  const std::string& matched() const { return matched_; }

 private:
  std::vector<std::string> stop_strings_;
  std::string held_;
  bool stopped_ = false;
  std::string matched_;
};

}  // namespace anvil
