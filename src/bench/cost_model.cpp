// Cost quotes: $/1M output tokens and tokens per dollar from a price and a measured throughput.
#include "bench/cost_model.h"

#include <algorithm>

#include "bench/bench_stats.h"

namespace anvil {

double output_tokens_per_usd(double usd_per_hour, double tokens_per_second) {
  if (usd_per_hour <= 0 || tokens_per_second <= 0) return 0;
  return tokens_per_second * 3600.0 / usd_per_hour;
}

std::optional<int64_t> cost_quote_load(std::span<const int64_t> measured_loads, std::optional<int64_t> requested) {
  if (measured_loads.empty()) return std::nullopt;
  if (!requested) return *std::max_element(measured_loads.begin(), measured_loads.end());
  if (std::find(measured_loads.begin(), measured_loads.end(), *requested) == measured_loads.end()) return std::nullopt;
  return requested;
}

std::optional<CostQuote> quote_cost(double usd_per_hour, int64_t load, double output_tok_s) {
  if (usd_per_hour <= 0 || output_tok_s <= 0) return std::nullopt;
  CostQuote q;
  q.load = load;
  q.output_tok_s = output_tok_s;
  q.usd_per_hour = usd_per_hour;
  q.usd_per_million_output_tokens = usd_per_million_tokens(usd_per_hour, output_tok_s);
  q.output_tokens_per_usd = output_tokens_per_usd(usd_per_hour, output_tok_s);
  return q;
}

}  // namespace anvil
