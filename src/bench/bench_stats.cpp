// Benchmark statistics (numpy's conventions, so numbers match the Python tools users compare with).
#include "bench/bench_stats.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace anvil {

double mean(std::span<const double> values) {
  if (values.empty()) return 0.0;
  double sum = 0.0;
  for (double v : values) sum += v;
  return sum / static_cast<double>(values.size());
}

double stddev(std::span<const double> values) {
  if (values.empty()) return 0.0;
  const double m = mean(values);
  double sum = 0.0;
  for (double v : values) sum += (v - m) * (v - m);
  return std::sqrt(sum / static_cast<double>(values.size()));
}

double percentile(std::span<const double> values, double p) {
  if (values.empty()) return 0.0;
  std::vector<double> sorted(values.begin(), values.end());
  std::sort(sorted.begin(), sorted.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(sorted.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, sorted.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return sorted[below] + (sorted[above] - sorted[below]) * fraction;
}

std::optional<double> time_per_output_token_s(const RequestTiming& timing) {
  if (timing.output_tokens < 2) return std::nullopt;
  return (timing.e2e_s - timing.ttft_s) / static_cast<double>(timing.output_tokens - 1);
}

double usd_per_million_tokens(double usd_per_hour, double tokens_per_second) {
  if (!(tokens_per_second > 0.0)) return 0.0;
  return usd_per_hour / (tokens_per_second * 3600.0) * 1e6;
}

TtftTpotSummary summarize_ttft_tpot(std::span<const RequestTiming> requests) {
  std::vector<double> ttft_ms, tpot_ms;
  for (const RequestTiming& t : requests) {
    ttft_ms.push_back(t.ttft_s * 1e3);
    if (std::optional<double> tpot = time_per_output_token_s(t)) tpot_ms.push_back(*tpot * 1e3);
  }
  TtftTpotSummary s;
  s.ttft_ms_mean = mean(ttft_ms);
  s.ttft_ms_p50 = percentile(ttft_ms, 50);
  s.ttft_ms_p99 = percentile(ttft_ms, 99);
  s.tpot_ms_mean = mean(tpot_ms);
  s.tpot_ms_p50 = percentile(tpot_ms, 50);
  s.tpot_ms_p99 = percentile(tpot_ms, 99);
  return s;
}

}  // namespace anvil
