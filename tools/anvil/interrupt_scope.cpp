// InterruptScope: one process-wide flag set from the SIGINT handler (async-signal-safe store).
#include "interrupt_scope.h"

namespace anvil::cli {
namespace {

std::atomic<bool> g_interrupted{false};

extern "C" void on_benchmark_sigint(int) { g_interrupted.store(true, std::memory_order_relaxed); }

}  // namespace

InterruptScope::InterruptScope() {
  g_interrupted.store(false);
  struct sigaction action {};
  action.sa_handler = on_benchmark_sigint;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESETHAND;
  sigaction(SIGINT, &action, &previous_);
}

InterruptScope::~InterruptScope() { sigaction(SIGINT, &previous_, nullptr); }

const std::atomic<bool>* InterruptScope::flag() { return &g_interrupted; }

}  // namespace anvil::cli
