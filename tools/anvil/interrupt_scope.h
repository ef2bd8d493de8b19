// Ctrl-C for long benchmarks: the first press asks the run to stop and report what it has; a
// second one ends the process the usual way (SA_RESETHAND), in case the first is not noticed.
#pragma once

#include <atomic>
#include <csignal>

namespace anvil::cli {

inline constexpr int kInterruptedExitCode = 130;  // the shell's code for "ended by SIGINT"

class InterruptScope {
 public:
  InterruptScope();   // installs the handler and clears the flag
  ~InterruptScope();  // restores the previous handler
  InterruptScope(const InterruptScope&) = delete;
  InterruptScope& operator=(const InterruptScope&) = delete;

  // Turns true at the first Ctrl-C while a scope is alive; pass it to the benchmark's options.
  static const std::atomic<bool>* flag();

 private:
  struct sigaction previous_ {};
};

}  // namespace anvil::cli
