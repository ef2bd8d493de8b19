// Progress reporting: library functions take a ProgressCallback; the CLI draws it on the terminal.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace anvil {

// Called with (units done, units total) as long work advances; may be empty.
using ProgressCallback = std::function<void(uint64_t done, uint64_t total)>;

// A one-line progress bar on stderr ("anvil: writing x.gguf  42% 1.1/2.5 GiB 3.2 s"), redrawn at
// most ten times a second, and only when stderr is a terminal so logs stay clean.
class TerminalProgress {
 public:
  TerminalProgress(std::string label, bool units_are_bytes);
  ~TerminalProgress();
  ProgressCallback callback();
  void finish();

 private:
  void update(uint64_t done, uint64_t total);

  std::string label_;
  bool units_are_bytes_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace anvil
