// Flag parsing for the serving benchmark: strict (the whole item must be a number), never throws.
#include "bench/serve_options.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>

namespace anvil {
namespace {

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> items;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    std::string item = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    items.push_back(item);
    if (comma == std::string::npos) return items;
    start = comma + 1;
  }
}

template <typename T>
bool parse_number(const std::string& text, T& value) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  return !text.empty() && ec == std::errc() && end == text.data() + text.size();
}

}  // namespace

Result<std::vector<int64_t>> parse_concurrency_list(const std::string& text) {
  std::vector<int64_t> levels;
  for (const std::string& item : split_commas(text)) {
    int64_t value = 0;
    if (item == "inf" || item == "unbounded") {
      value = 0;
    } else if (!parse_number(item, value) || value < 0) {
      return Status::error(fmt::format("--concurrency: '{}' is not a number of requests in flight (a list like "
                                       "1,4,16; 0 or inf for unbounded)",
                                       item));
    }
    levels.push_back(value);
  }
  return levels;
}

Result<std::vector<double>> parse_percentile_list(const std::string& text) {
  std::vector<double> percentiles;
  for (const std::string& item : split_commas(text)) {
    double value = 0;
    if (!parse_number(item, value) || !(value >= 0 && value <= 100))
      return Status::error(fmt::format("--percentiles: '{}' is not a percentile in [0, 100] (a list like 50,90,99)",
                                       item));
    if (std::find(percentiles.begin(), percentiles.end(), value) != percentiles.end())
      return Status::error(fmt::format("--percentiles gives {} twice", item));
    percentiles.push_back(value);
  }
  return percentiles;
}

Result<double> parse_request_rate(const std::string& text) {
  if (text == "inf") return std::numeric_limits<double>::infinity();
  double rate = 0;
  if (!parse_number(text, rate) || !std::isfinite(rate) || rate <= 0)
    return Status::error(fmt::format("--request-rate: '{}' is not a positive number of requests/s (or inf)", text));
  return rate;
}

}  // namespace anvil
