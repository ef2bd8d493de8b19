// The cost model of a deployment: its $/hour and measured output tokens/s give $ per million
// output tokens and tokens per dollar, quoted at one load (batch size or concurrency level).
#pragma once

#include <cstdint>
#include <optional>
#include <span>

namespace anvil {

struct CostQuote {
  int64_t load = 0;                           // the batch size / concurrency the throughput was measured at
  double output_tok_s = 0;
  double usd_per_hour = 0;
  double usd_per_million_output_tokens = 0;   // usd_per_hour / (output_tok_s * 3600) * 1e6
  double output_tokens_per_usd = 0;           // output_tok_s * 3600 / usd_per_hour
};

// Output tokens one dollar buys: tokens_per_second * 3600 / usd_per_hour (0 when either is not positive).
double output_tokens_per_usd(double usd_per_hour, double tokens_per_second);

// The load a configuration's cost is quoted at: `requested` when it was measured, else (no
// request) the highest measured load; nullopt when `requested` was not measured or nothing was.
std::optional<int64_t> cost_quote_load(std::span<const int64_t> measured_loads, std::optional<int64_t> requested);

// The quote at `load`; nullopt when the price or the throughput is not positive (nothing to quote).
std::optional<CostQuote> quote_cost(double usd_per_hour, int64_t load, double output_tok_s);

}  // namespace anvil
