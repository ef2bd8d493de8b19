// Running a sweep: each run not yet finished in the output directory, one at a time. In-process
// runs load the model (kept while consecutive runs share it) and run the latency benchmark over
// the batch sizes; server runs start the command, wait for its health endpoint, run the serving
// benchmark over the concurrency levels, and stop it. Each run's record is saved as it ends.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/sweep_plan.h"
#include "bench/sweep_store.h"
#include "core/progress.h"

namespace anvil {

// How a sweep reports what it does; every callback may be empty.
struct SweepObserver {
  // Before the first run: how many of the runs were found finished (and are skipped).
  std::function<void(size_t skipped, size_t total)> on_plan;
  // A run begins: its position among the runs to do (0-based) and their count.
  std::function<void(const SweepRun& run, size_t index, size_t count)> on_run_start;
  // A phase of the current run begins ("loading dummy:tiny-llama", "batch sizes 1,2", "starting
  // the server", "concurrency 4"); the callback it returns receives that phase's progress.
  std::function<ProgressCallback(const std::string& phase, bool units_are_bytes)> on_phase;
  // A run ended with this record (status "ok" or "failed"); not called for an interrupted run.
  std::function<void(const SweepRun& run, const nlohmann::json& record)> on_run_done;
};

struct SweepRunOptions {
  bool force = false;                             // re-run finished runs too
  std::string anvil_path = "anvil";               // {anvil} in server commands
  const std::atomic<bool>* interrupt = nullptr;   // turns true: stop inside the current run, keep finished ones
  SweepObserver observer;
};

struct SweepExecution {
  size_t total = 0;     // runs in the plan
  size_t skipped = 0;   // finished before (not re-run)
  size_t finished = 0;  // ran now and succeeded
  size_t failed = 0;    // ran now and failed (recorded; a re-run tries them again)
  bool interrupted = false;
};

// Fails only when the output directory cannot be written; a failing run is recorded and the
// sweep goes on. An interrupted run leaves no record.
Result<SweepExecution> run_sweep(const std::vector<SweepRun>& runs, SweepStore& store, const SweepRunOptions& options);

}  // namespace anvil
