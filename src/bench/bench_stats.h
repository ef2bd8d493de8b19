// Benchmark statistics: mean, std, percentiles, per-request latency metrics (TTFT, TPOT) and cost.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace anvil {

// All of these return 0 for an empty input, so a report of nothing reads as zeros, not NaN.
double mean(std::span<const double> values);
// Population standard deviation (divides by n), as numpy.std's default (ddof=0).
double stddev(std::span<const double> values);
// The p-th percentile, p in [0, 100], interpolating linearly between the closest ranks: numpy's
// default method ("linear"): rank = p/100 * (n - 1) into the sorted values. p is clamped.
double percentile(std::span<const double> values, double p);

// One request's timeline, in seconds from its submission.
struct RequestTiming {
  double ttft_s = 0;          // the first generated token arrived (time to first token)
  double e2e_s = 0;           // the last one arrived (end-to-end latency)
  int64_t prompt_tokens = 0;
  int64_t output_tokens = 0;  // generated tokens delivered
};

// Time per output token after the first: (e2e - ttft) / (output_tokens - 1). A request with one
// output token has no such interval, so it has no TPOT (nullopt) and stays out of TPOT means.
std::optional<double> time_per_output_token_s(const RequestTiming& timing);

// TTFT and TPOT over many requests, in milliseconds (requests with one output token have no TPOT).
struct TtftTpotSummary {
  double ttft_ms_mean = 0, ttft_ms_p50 = 0, ttft_ms_p99 = 0;
  double tpot_ms_mean = 0, tpot_ms_p50 = 0, tpot_ms_p99 = 0;
};
TtftTpotSummary summarize_ttft_tpot(std::span<const RequestTiming> requests);

// Dollars per million tokens at `usd_per_hour` for a machine producing `tokens_per_second`:
// usd_per_hour / (tokens_per_second * 3600) * 1e6. 0 when tokens_per_second is not positive.
double usd_per_million_tokens(double usd_per_hour, double tokens_per_second);

}  // namespace anvil
