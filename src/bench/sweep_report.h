// The sweep's report: report.md (also printed), report.json and pareto.svg, from the runs'
// outcomes and their analysis. Schemas in docs/BENCHMARKS.md.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/sweep_analysis.h"
#include "bench/sweep_config.h"
#include "bench/sweep_plan.h"
#include "bench/sweep_store.h"

namespace anvil {

// Everything a report shows. `outcomes[i]` belongs to `runs[i]` (the runs that have a record);
// the analysis indexes the same order.
struct SweepReportInput {
  std::string name;                      // the sweep's name
  std::string config_path;
  std::string date;                      // utc_timestamp()
  nlohmann::json machine;                // bench_machine_json of this machine
  std::vector<SweepRun> runs;
  std::vector<SweepOutcome> outcomes;
  SweepAnalysis analysis;
  std::optional<int64_t> cost_at_load;   // --cost-at-concurrency; none: each run's highest load
  size_t pending = 0;                    // runs of the plan without a record yet (interrupted sweep)
};

// The report of `runs` from their records in `store` (analysis included); runs without a record
// count as pending. `machine`: bench_machine_json of this machine.
SweepReportInput collect_sweep_report(const SweepConfig& config, const std::vector<SweepRun>& runs,
                                      const SweepStore& store, std::optional<int64_t> cost_at_load,
                                      nlohmann::json machine);

// report.md, report.json and pareto.svg in the store's directory; returns their paths.
Result<std::vector<std::string>> write_sweep_report(const SweepStore& store, const SweepReportInput& input);

// The plan as a Markdown table (--dry-run): each run's axes, loads, price, and whether the store
// holds it finished; then each server command as it will run (PORT: picked per run).
std::string sweep_plan_markdown(const std::vector<SweepRun>& runs, const SweepStore& store,
                                const std::string& anvil_path);

std::string sweep_markdown(const SweepReportInput& input);
nlohmann::json sweep_report_json(const SweepReportInput& input);
// One chart: every (run, load) point and the Pareto front, throughput per device against per-user speed.
std::string sweep_pareto_svg(const SweepReportInput& input);

}  // namespace anvil
