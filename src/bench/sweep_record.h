// A sweep run's record: the JSON file each finished run leaves in the output directory
// (schema in docs/BENCHMARKS.md), and the measured points read from it or from a bench's results.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/sweep_analysis.h"
#include "bench/sweep_plan.h"

namespace anvil {

inline constexpr int kSweepRecordSchemaVersion = 1;

// Points of a latency bench's `results` (latency_batch_json entries): load = batch size,
// per-user tok/s = output_len / avg latency (every request of the batch waits that long for
// its output_len tokens), median TPOT and TTFT from the p50s.
std::vector<SweepPoint> points_from_latency_results(const nlohmann::json& results, int64_t output_len);
// Points of a serve bench's `results`: load = concurrency, output tok/s = output_throughput,
// per-user tok/s = 1000 / tpot_ms_median. Entries without a finished request are left out.
std::vector<SweepPoint> points_from_serve_results(const nlohmann::json& results);

nlohmann::json sweep_points_json(const std::vector<SweepPoint>& points);
std::vector<SweepPoint> sweep_points_from_json(const nlohmann::json& points);

// {"schema_version", "run_id", "status": "ok", "anvil_version", "date", "label", "group",
//  "run": sweep_run_measurement_json, "elapsed_s", "points"} plus what the caller adds
// ("machine", "model", "raw", ...).
nlohmann::json sweep_ok_record(const SweepRun& run, const std::vector<SweepPoint>& points, double elapsed_s);
// The same head with "status": "failed" and "error".
nlohmann::json sweep_failed_record(const SweepRun& run, const std::string& error, double elapsed_s);

// The analysis's view of a run: price and label from the configuration (a price change needs no
// re-run), measurements from the record.
SweepOutcome sweep_outcome(const SweepRun& run, const nlohmann::json& record);

}  // namespace anvil
