// Serving-benchmark metrics (vLLM `bench serve` definitions) computed from per-request timelines:
// TTFT, TPOT, ITL, E2EL, throughput over the run and goodput under SLOs. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/serve_bench.h"

namespace anvil {

// What one streamed request did, as the client saw it. Times in seconds.
struct ServeRequestRecord {
  int64_t index = 0;     // position in the run's request list
  double start_s = 0;    // when it was sent, from the start of the run
  // Arrival of each content chunk (one carrying generated text), from the send. A chunk may carry
  // several tokens (a server that batches its stream, or text held back until a character is whole).
  std::vector<double> chunk_arrivals_s;
  double e2el_s = 0;     // the response ended ([DONE] or the stream closed), from the send
  // The server's `usage` (stream_options.include_usage); absent when the server sent none.
  std::optional<int64_t> usage_prompt_tokens, usage_completion_tokens;
  int64_t known_prompt_tokens = 0;  // token-id prompts: their length (the fallback without usage)
  bool success = false;
  std::string error;  // why it failed; empty on success
};

// The per-request figures in milliseconds.
struct ServeRequestMetrics {
  double ttft_ms = 0;                // first content chunk - send
  std::optional<double> tpot_ms;     // (e2el - ttft) / (output_tokens - 1); none for one output token
  std::vector<double> itl_ms;        // gaps between consecutive content chunks (one per gap, not per token)
  double e2el_ms = 0;                // end of the response - send
  int64_t prompt_tokens = 0;         // usage.prompt_tokens, else the token-id prompt's length (0: unknown)
  int64_t output_tokens = 0;         // usage.completion_tokens, else the number of content chunks
  bool usage_from_server = false;    // both counts came from the server's usage
};

ServeRequestMetrics request_metrics(const ServeRequestRecord& record);

// A request meets the SLO when it meets every given bound (<=). A one-token request has no TPOT
// and so meets any TPOT bound (as in vLLM, whose TPOT for it is 0).
bool meets_slo(const ServeRequestMetrics& metrics, const ServiceLevelObjectives& slo);

// mean, median, population std and the asked percentiles (numpy's linear method), in ms.
struct MetricStats {
  double mean = 0, median = 0, std = 0;
  std::vector<std::pair<double, double>> percentiles;  // (p, value)
};
MetricStats metric_stats(std::span<const double> values, std::span<const double> percentiles);

// One timed run (one concurrency level): only successful requests enter the latency figures and
// the token totals; throughputs divide by `duration_s`, the wall time of the run.
struct ServeRunMetrics {
  int64_t completed = 0, failed = 0;
  double duration_s = 0;
  int64_t total_input_tokens = 0, total_output_tokens = 0;
  double request_throughput = 0;      // completed / duration
  double output_throughput = 0;       // output tokens / duration
  double total_token_throughput = 0;  // (input + output tokens) / duration
  std::optional<int64_t> good_requests;  // meeting the SLO; none without one
  std::optional<double> goodput;         // good_requests / duration
  bool usage_from_server = true;      // every completed request had the server's usage
  MetricStats ttft_ms, tpot_ms, itl_ms, e2el_ms;
  std::vector<std::pair<std::string, int64_t>> errors;  // distinct failure messages, most frequent first
};

ServeRunMetrics compute_run_metrics(std::span<const ServeRequestRecord> records, double duration_s,
                                    std::span<const double> percentiles, const ServiceLevelObjectives& slo);

// "p99", "p99.9": the key suffix vLLM uses for a percentile.
std::string percentile_key(double p);

// The run's figures under the documented `results` keys (ttft_ms_mean, ..., goodput).
nlohmann::json run_metrics_json(const ServeRunMetrics& metrics);

// One JSONL line's object for a request (docs/BENCHMARKS.md lists the fields).
nlohmann::json request_record_json(const ServeRequestRecord& record, int64_t concurrency);

}  // namespace anvil
