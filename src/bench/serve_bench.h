// Serving benchmark (vLLM `bench serve` semantics): an HTTP load generator for any
// OpenAI-compatible endpoint (anvil serve, llama.cpp's llama-server, vLLM, TGI). Requests stream
// (SSE) so every token's arrival is timed; token counts come from the server's `usage` field
// (stream_options.include_usage), not from counting chunks (only a server that sends no usage
// gets its chunks counted, and its results say usage_from_server: false).
//
// Contract used by `anvil bench serve` and by `anvil bench sweep` (server-template runs): keep the
// function and the JSON keys documented in docs/BENCHMARKS.md stable.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "core/progress.h"

namespace anvil {

struct ServeRequestRecord;  // bench/serve_metrics.h

// --slo ttft:500,tpot:50,e2el:2000 (milliseconds): a request counts toward goodput when it meets
// every given bound.
struct ServiceLevelObjectives {
  std::optional<double> ttft_ms, tpot_ms, e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};

struct ServeBenchOptions {
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint = "/v1/completions";  // or /v1/chat/completions
  std::string model;                         // the request's "model"; empty: the first id of GET /v1/models
  std::string api_key;                       // sent as Authorization: Bearer
  // One run per concurrency level (requests in flight at most); 0 means unbounded.
  std::vector<int64_t> concurrency = {1};
  // Requests per second (Poisson arrivals when burstiness is 1; gamma-distributed gaps otherwise);
  // infinity: every request is sent at once (bounded by the concurrency).
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  int64_t num_prompts = 100;
  int64_t warmup = 0;  // requests sent (and discarded) before each timed run
  int64_t input_len = 128, output_len = 128;
  double range_ratio = 0.0;  // lengths drawn uniformly in [len * (1 - r), len * (1 + r)]
  std::string dataset_path;  // prompts from a file instead of random ids (format: docs/BENCHMARKS.md)
  bool ignore_eos = true;
  std::vector<double> percentiles = {50, 90, 99};
  ServiceLevelObjectives slo;
  uint64_t seed = 0;
  double request_timeout_s = 600;
  std::string jsonl_path;  // per-request records, one JSON object per line (appended per run)
  const std::atomic<bool>* interrupt = nullptr;  // turns true: stop sending, keep what finished
  ProgressCallback progress;                      // requests done / total of the current run

  // Added by `bench serve` (defaults keep the fields above meaning what they say).
  // Random token-id prompts draw ids from [0, random_vocab_size): 512 fits every vocabulary,
  // including anvil's tiny test presets; give the model's vocabulary size for a realistic spread.
  int64_t random_vocab_size = 512;
  nlohmann::json extra_body = nlohmann::json::object();  // merged over each request body
  // After `interrupt`, in-flight requests get this long to finish before they are abandoned.
  double interrupt_grace_s = 3.0;
  // "test request", "warm-up, concurrency 4", "concurrency 4": `progress` counts within the phase.
  std::function<void(const std::string& phase)> on_phase;
  // Each timed run's `results` entry and its requests (the CLI's CDF plots use them).
  std::function<void(const nlohmann::json& result, const std::vector<ServeRequestRecord>& records)> on_run_done;
};

// Runs one timed run per concurrency level against a live server and returns the report:
// the common head (bench "serve", schema_version, anvil_version, date, machine) plus
//   "config":  the options above,
//   "results": one object per concurrency level with at least
//     concurrency, request_rate, num_prompts, completed, failed, duration_s,
//     request_throughput, output_throughput, total_token_throughput,
//     total_input_tokens, total_output_tokens,
//     ttft_ms_{mean,median,std,pXX}, tpot_ms_{...}, itl_ms_{...}, e2el_ms_{...} (XX: each
//     percentile asked), goodput (requests/s meeting the SLO; null without --slo),
//   "interrupted": true when `interrupt` stopped it (results hold the finished runs).
// Fails (with a message naming the URL) when the server is unreachable or answers the first
// request with an error; later failed requests are counted, not fatal.
Result<nlohmann::json> run_serve_bench(const ServeBenchOptions& options);

// "ttft:500,tpot:50,e2el:2000" -> objectives; clear errors for unknown metrics or bad numbers.
Result<ServiceLevelObjectives> parse_slo(const std::string& text);

}  // namespace anvil
