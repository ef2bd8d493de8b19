// Markdown and chart views of `bench serve` results; they read only the documented JSON keys.
#include "bench/serve_report.h"

#include <fmt/format.h>

#include <algorithm>

#include "bench/bench_stats.h"

namespace anvil {
namespace {

double number(const nlohmann::json& row, const std::string& key) {
  auto it = row.find(key);
  return it != row.end() && it->is_number() ? it->get<double>() : 0.0;
}

// Unbounded concurrency (0) is drawn at the number of prompts: the most that can be in flight.
double concurrency_x(const nlohmann::json& row) {
  const double c = number(row, "concurrency");
  return c > 0 ? c : number(row, "num_prompts");
}

bool all_positive_x(const nlohmann::json& results) {
  for (const nlohmann::json& row : results)
    if (!(concurrency_x(row) > 0)) return false;
  return !results.empty();
}

PlotSeries series(const nlohmann::json& results, const std::string& name, const std::string& key) {
  PlotSeries s;
  s.name = name;
  for (const nlohmann::json& row : results) {
    s.x.push_back(concurrency_x(row));
    s.y.push_back(number(row, key));
  }
  return s;
}

bool has_unbounded(const nlohmann::json& results) {
  for (const nlohmann::json& row : results)
    if (number(row, "concurrency") <= 0) return true;
  return false;
}

std::string x_label(const nlohmann::json& results) {
  return has_unbounded(results) ? "concurrency (unbounded at num_prompts)" : "concurrency";
}

PlotSeries cdf_series(const std::string& name, std::vector<double> values) {
  PlotSeries s;
  s.name = name;
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  // Every 5% up to 90%, then every 1%: the tail is where serving SLOs are decided.
  std::vector<double> fractions;
  for (int i = 0; i < 18; ++i) fractions.push_back(i * 0.05);
  for (int i = 90; i <= 100; ++i) fractions.push_back(i / 100.0);
  for (double fraction : fractions) {
    s.x.push_back(percentile(values, fraction * 100.0));
    s.y.push_back(fraction);
  }
  return s;
}

}  // namespace

std::string concurrency_label(int64_t concurrency) {
  return concurrency > 0 ? std::to_string(concurrency) : std::string("unbounded");
}

double serve_tail_percentile(const std::vector<double>& percentiles) {
  if (percentiles.empty()) return -1;
  if (std::find(percentiles.begin(), percentiles.end(), 99.0) != percentiles.end()) return 99.0;
  return *std::max_element(percentiles.begin(), percentiles.end());
}

std::string serve_markdown(const nlohmann::json& results, double tail_percentile) {
  const bool has_tail = tail_percentile >= 0;
  const std::string tail = has_tail ? percentile_key(tail_percentile) : "";
  auto tail_value = [&](const nlohmann::json& row, const std::string& metric) {
    return has_tail ? fmt::format(" {:.2f} |", number(row, metric + "_" + tail)) : std::string();
  };
  auto tail_head = [&](const char* metric) { return has_tail ? fmt::format(" {} {} |", metric, tail) : std::string(); };
  const std::string tail_rule = has_tail ? "---:|" : "";
  std::string out = fmt::format(
      "| concurrency | completed | failed | req/s | output tok/s | total tok/s | TTFT mean (ms) | TTFT median |{} "
      "TPOT mean (ms) | TPOT median |{} ITL mean (ms) |{} E2EL mean (ms) |{} goodput (req/s) |\n"
      "|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|{}---:|{}---:|{}---:|\n",
      tail_head("TTFT"), tail_head("TPOT"), tail_head("ITL"), tail_head("E2EL"), tail_rule, tail_rule, tail_rule,
      tail_rule);
  for (const nlohmann::json& row : results) {
    const nlohmann::json goodput = row.value("goodput", nlohmann::json(nullptr));
    out += fmt::format(
        "| {}{} | {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.2f} | {:.2f} |{} {:.2f} | {:.2f} |{} {:.2f} |{} {:.2f} |{} {} |\n",
        concurrency_label(row.value("concurrency", int64_t{0})), row.value("interrupted", false) ? " (partial)" : "",
        row.value("completed", int64_t{0}), row.value("failed", int64_t{0}), number(row, "request_throughput"),
        number(row, "output_throughput"), number(row, "total_token_throughput"), number(row, "ttft_ms_mean"),
        number(row, "ttft_ms_median"), tail_value(row, "ttft_ms"), number(row, "tpot_ms_mean"),
        number(row, "tpot_ms_median"), tail_value(row, "tpot_ms"), number(row, "itl_ms_mean"),
        tail_value(row, "itl_ms"), number(row, "e2el_ms_mean"), tail_value(row, "e2el_ms"),
        goodput.is_number() ? fmt::format("{:.2f}", goodput.get<double>()) : std::string("-"));
  }
  return out;
}

std::vector<LineChart> serve_throughput_charts(const nlohmann::json& results) {
  const bool log2 = all_positive_x(results);
  LineChart tokens{"Output throughput", x_label(results), "tokens/s", {series(results, "output tok/s", "output_throughput"),
                                                                      series(results, "total tok/s", "total_token_throughput")},
                   log2, true};
  LineChart requests{"Request throughput", x_label(results), "requests/s",
                     {series(results, "req/s", "request_throughput")}, log2, true};
  if (results.size() > 0 && !results[0].value("goodput", nlohmann::json(nullptr)).is_null())
    requests.series.push_back(series(results, "goodput", "goodput"));
  return {tokens, requests};
}

std::vector<LineChart> serve_latency_charts(const nlohmann::json& results, double tail_percentile) {
  const bool log2 = all_positive_x(results);
  std::vector<LineChart> charts;
  for (const auto& [metric, title] : {std::pair<std::string, std::string>{"ttft_ms", "TTFT"},
                                      {"tpot_ms", "TPOT"},
                                      {"e2el_ms", "E2E latency"}}) {
    LineChart chart{title, x_label(results), "ms", {series(results, "median", metric + "_median")}, log2, true};
    if (tail_percentile >= 0) {
      const std::string tail = percentile_key(tail_percentile);
      chart.series.push_back(series(results, tail, metric + "_" + tail));
    }
    charts.push_back(std::move(chart));
  }
  return charts;
}

std::vector<LineChart> serve_distribution_charts(const std::vector<ServeRunRecords>& runs) {
  LineChart ttft{"TTFT distribution", "TTFT (ms)", "fraction of requests", {}, false, true};
  LineChart tpot{"TPOT distribution", "TPOT (ms)", "fraction of requests", {}, false, true};
  for (const ServeRunRecords& run : runs) {
    std::vector<double> ttft_ms, tpot_ms;
    for (const ServeRequestRecord& record : run.records) {
      if (!record.success) continue;
      const ServeRequestMetrics m = request_metrics(record);
      ttft_ms.push_back(m.ttft_ms);
      if (m.tpot_ms) tpot_ms.push_back(*m.tpot_ms);
    }
    const std::string name = "concurrency " + concurrency_label(run.concurrency);
    ttft.series.push_back(cdf_series(name, std::move(ttft_ms)));
    tpot.series.push_back(cdf_series(name, std::move(tpot_ms)));
  }
  return {ttft, tpot};
}

}  // namespace anvil
