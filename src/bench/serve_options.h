// Parsing `bench serve`'s list and rate flags (--concurrency 1,4,inf, --percentiles 50,99.9,
// --request-rate inf) into ServeBenchOptions values, with errors that quote the bad item.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"

namespace anvil {

// "1,4,16" -> {1, 4, 16}; "0", "inf" and "unbounded" are unbounded (0).
Result<std::vector<int64_t>> parse_concurrency_list(const std::string& text);
// "50,90,99.9" -> {50, 90, 99.9}; each in [0, 100], no repeats.
Result<std::vector<double>> parse_percentile_list(const std::string& text);
// "10", "0.5" or "inf" -> requests/s (positive).
Result<double> parse_request_rate(const std::string& text);

}  // namespace anvil
