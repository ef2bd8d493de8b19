// Presenting `bench serve` results: the Markdown table (one row per concurrency level) and the SVG
// charts (throughput and latency percentiles vs concurrency, TTFT/TPOT distributions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/serve_metrics.h"
#include "bench/svg_plot.h"

namespace anvil {

// The table of a report's `results`. Tail columns use `tail_percentile` (p99 when it was asked,
// else the largest one asked).
std::string serve_markdown(const nlohmann::json& results, double tail_percentile);

// The percentile the table and the plots show as the tail: 99 if asked, else the largest asked, else none (-1).
double serve_tail_percentile(const std::vector<double>& percentiles);

// Output tokens/s and requests/s against concurrency.
std::vector<LineChart> serve_throughput_charts(const nlohmann::json& results);
// TTFT, TPOT and E2EL median and tail percentile against concurrency.
std::vector<LineChart> serve_latency_charts(const nlohmann::json& results, double tail_percentile);

// One level's requests, for the distribution plots.
struct ServeRunRecords {
  int64_t concurrency = 0;
  std::vector<ServeRequestRecord> records;
};
// The cumulative distribution (x: ms, y: fraction of successful requests at or below x) of TTFT
// and of TPOT, one series per concurrency level, each drawn through 29 quantiles (every 5% to
// 90%, then every 1%).
std::vector<LineChart> serve_distribution_charts(const std::vector<ServeRunRecords>& runs);

// "4" or "unbounded".
std::string concurrency_label(int64_t concurrency);

}  // namespace anvil
