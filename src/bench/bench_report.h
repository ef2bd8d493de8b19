// Benchmark reports: the JSON every engine bench writes (machine, model, config, date, version,
// results), its Markdown tables, the latency charts, and `bench compare` of two reports.
// The schemas are documented in docs/BENCHMARKS.md; change both together.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/latency_bench.h"
#include "bench/svg_plot.h"
#include "bench/throughput_bench.h"
#include "engine/engine.h"
#include "model/decoder_model.h"

namespace anvil {

inline constexpr int kBenchReportSchemaVersion = 1;

// Now, as "2025-01-31T12:34:56Z".
std::string utc_timestamp();

// {"cpu_model", "logical_cores", "threads", "isa", "features", "limits"}: limits are the cached
// measured limits for this CPU and thread count (`anvil info` / `bench kernels` measure them), or null.
nlohmann::json bench_machine_json(int threads);
// {"spec", "arch", "name", "parameters", "context_length", "vocab_size", "weight_bytes", "tensor_dtypes"}.
nlohmann::json bench_model_json(const std::string& spec, const DecoderModel& model);
// The engine options a run used, plus the KV cache it got in tokens.
nlohmann::json engine_options_json(const EngineOptions& options, int64_t kv_cache_capacity_tokens);
// The head every report starts with: {"bench", "schema_version", "anvil_version", "date", "machine", "model"}.
nlohmann::json bench_report_head(const std::string& bench, const std::string& model_spec, const DecoderModel& model,
                                 int threads);

// One `results` entry. usd_per_hour > 0 adds usd_per_million_output_tokens.
nlohmann::json latency_batch_json(const LatencyBatchResult& batch, double usd_per_hour = 0);
nlohmann::json throughput_result_json(const ThroughputResult& result, double usd_per_hour = 0);

// Markdown tables of a report's `results` list.
std::string latency_markdown(const nlohmann::json& results);
std::string throughput_markdown(const nlohmann::json& results);

// Latency (avg, p50, p90, p99), output throughput, and TTFT/TPOT against batch size.
std::vector<LineChart> latency_charts(const nlohmann::json& results);

// Reads a report written by --output-json; checks that it is one ("bench" and "results").
Result<nlohmann::json> read_bench_report(const std::string& path);
Status write_text_file(const std::string& path, const std::string& text);

// One metric of one matching entry (batch size or scenario) of two reports.
struct MetricComparison {
  std::string key;     // "batch_size=4", "scenario=chat"
  std::string metric;  // "avg_latency_s"
  double a = 0, b = 0;
  std::optional<double> ratio;  // b / a; none when a is 0
  bool higher_is_better = false;
};

// Every shared metric of the entries present in both reports (latency: by batch size; throughput:
// by scenario, input and output length). Fails when the reports are of different benches or share
// no entry.
Result<std::vector<MetricComparison>> compare_bench_reports(const nlohmann::json& a, const nlohmann::json& b);
std::string comparison_markdown(const std::vector<MetricComparison>& rows, const std::string& a_name,
                                const std::string& b_name);

}  // namespace anvil
