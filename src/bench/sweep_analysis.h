// What a sweep's measurements say: per run its peak throughput, single-user latency and cost
// quote; the most cost-effective, highest-throughput and lowest-latency runs; and the Pareto
// front of throughput per device against per-user speed over every (run, load) point.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "bench/cost_model.h"

namespace anvil {

// One measured load of a run.
struct SweepPoint {
  int64_t load = 0;                      // batch size (in-process) or concurrency level (server)
  double output_tok_s = 0;               // aggregate over the deployment
  double per_user_tok_s = 0;             // what one user sees (docs/BENCHMARKS.md says how each kind measures it)
  std::optional<double> tpot_ms_median;  // median time per output token after the first
  std::optional<double> ttft_ms_median;
};

// A run as the analysis sees it.
struct SweepOutcome {
  std::string run_id;
  std::string label;
  int devices = 1;                        // tensor-parallel degree: throughput per device divides by it
  std::optional<double> usd_per_hour;     // none: left out of the cost ranking
  bool ok = false;
  std::string error;                      // why it failed, when !ok
  std::vector<SweepPoint> points;
};

struct SweepRunSummary {
  std::optional<SweepPoint> peak;                // the point with the highest output tok/s
  std::optional<double> ms_per_token_1_user;     // median TPOT at load 1
  std::optional<double> per_user_tok_s_1_user;
  std::optional<CostQuote> cost;                 // at the cost load (--cost-at-concurrency, or the highest measured)
};

// A recommendation: the run (index into the outcomes), the load it refers to, and its figure.
struct SweepPick {
  size_t run = 0;
  int64_t load = 0;
  double value = 0;  // $/1M output tokens, output tok/s, or median ms/token at 1 user
};

struct ParetoPoint {
  size_t run = 0;
  int64_t load = 0;
  double throughput_per_device = 0;  // output tok/s / devices
  double per_user_tok_s = 0;
};

struct SweepAnalysis {
  std::vector<SweepRunSummary> runs;              // one per outcome, same order
  std::optional<SweepPick> most_cost_effective;   // lowest $/1M output tokens = most tokens per dollar
  std::optional<SweepPick> highest_throughput;    // highest output tok/s at any load
  std::optional<SweepPick> lowest_latency;        // lowest median ms/token at 1 user
  std::vector<ParetoPoint> points;                // every point of the successful runs
  std::vector<ParetoPoint> pareto_front;          // by throughput per device, ascending
  std::vector<std::string> notes;                 // runs left out of a ranking, and why
};

// Points no other point beats on both axes (higher or equal on both, higher on one), ordered
// by throughput per device ascending (so per-user speed descends along the front).
std::vector<ParetoPoint> pareto_front(std::span<const ParetoPoint> points);

// Ties go to the earlier run. `cost_at_load`: the batch size / concurrency to quote costs at;
// none: each run's highest measured load.
SweepAnalysis analyze_sweep(std::span<const SweepOutcome> outcomes, std::optional<int64_t> cost_at_load);

}  // namespace anvil
