// Serving metrics from request timelines, with vLLM's definitions so numbers compare one to one.
#include "bench/serve_metrics.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "bench/bench_stats.h"

namespace anvil {

ServeRequestMetrics request_metrics(const ServeRequestRecord& record) {
  ServeRequestMetrics m;
  m.e2el_ms = record.e2el_s * 1e3;
  const std::vector<double>& chunks = record.chunk_arrivals_s;
  if (!chunks.empty()) m.ttft_ms = chunks.front() * 1e3;
  // vLLM appends one ITL per chunk after the first: a chunk carrying k tokens is one gap, not k.
  for (size_t i = 1; i < chunks.size(); ++i) m.itl_ms.push_back((chunks[i] - chunks[i - 1]) * 1e3);
  m.usage_from_server = record.usage_prompt_tokens.has_value() && record.usage_completion_tokens.has_value();
  m.prompt_tokens = record.usage_prompt_tokens.value_or(record.known_prompt_tokens);
  m.output_tokens = record.usage_completion_tokens.value_or(static_cast<int64_t>(chunks.size()));
  if (!chunks.empty()) {
    const RequestTiming timing{.ttft_s = chunks.front(), .e2e_s = record.e2el_s, .prompt_tokens = m.prompt_tokens,
                               .output_tokens = m.output_tokens};
    if (std::optional<double> tpot = time_per_output_token_s(timing)) m.tpot_ms = *tpot * 1e3;
  }
  return m;
}

bool meets_slo(const ServeRequestMetrics& metrics, const ServiceLevelObjectives& slo) {
  if (slo.ttft_ms && metrics.ttft_ms > *slo.ttft_ms) return false;
  if (slo.tpot_ms && metrics.tpot_ms && *metrics.tpot_ms > *slo.tpot_ms) return false;
  if (slo.e2el_ms && metrics.e2el_ms > *slo.e2el_ms) return false;
  return true;
}

MetricStats metric_stats(std::span<const double> values, std::span<const double> percentiles) {
  MetricStats s;
  s.mean = mean(values);
  s.median = percentile(values, 50);
  s.std = stddev(values);
  for (double p : percentiles) s.percentiles.emplace_back(p, percentile(values, p));
  return s;
}

ServeRunMetrics compute_run_metrics(std::span<const ServeRequestRecord> records, double duration_s,
                                    std::span<const double> percentiles, const ServiceLevelObjectives& slo) {
  ServeRunMetrics run;
  run.duration_s = duration_s;
  std::vector<double> ttft, tpot, itl, e2el;
  std::map<std::string, int64_t> error_counts;
  int64_t good = 0;
  for (const ServeRequestRecord& record : records) {
    if (!record.success) {
      ++run.failed;
      ++error_counts[record.error.empty() ? std::string("unknown error") : record.error];
      continue;
    }
    ++run.completed;
    const ServeRequestMetrics m = request_metrics(record);
    run.total_input_tokens += m.prompt_tokens;
    run.total_output_tokens += m.output_tokens;
    run.usage_from_server = run.usage_from_server && m.usage_from_server;
    ttft.push_back(m.ttft_ms);
    if (m.tpot_ms) tpot.push_back(*m.tpot_ms);
    itl.insert(itl.end(), m.itl_ms.begin(), m.itl_ms.end());
    e2el.push_back(m.e2el_ms);
    if (meets_slo(m, slo)) ++good;
  }
  if (run.completed == 0) run.usage_from_server = false;
  if (duration_s > 0) {
    run.request_throughput = static_cast<double>(run.completed) / duration_s;
    run.output_throughput = static_cast<double>(run.total_output_tokens) / duration_s;
    run.total_token_throughput = static_cast<double>(run.total_input_tokens + run.total_output_tokens) / duration_s;
  }
  if (!slo.empty()) {
    run.good_requests = good;
    run.goodput = duration_s > 0 ? static_cast<double>(good) / duration_s : 0.0;
  }
  run.ttft_ms = metric_stats(ttft, percentiles);
  run.tpot_ms = metric_stats(tpot, percentiles);
  run.itl_ms = metric_stats(itl, percentiles);
  run.e2el_ms = metric_stats(e2el, percentiles);
  run.errors.assign(error_counts.begin(), error_counts.end());
  std::stable_sort(run.errors.begin(), run.errors.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return run;
}

std::string percentile_key(double p) {
  if (p == std::floor(p)) return fmt::format("p{}", static_cast<int64_t>(p));
  return fmt::format("p{}", p);  // shortest round-trip form: 99.9 -> "p99.9"
}

namespace {

void add_stats(nlohmann::json& out, const std::string& name, const MetricStats& s) {
  out[name + "_mean"] = s.mean;
  out[name + "_median"] = s.median;
  out[name + "_std"] = s.std;
  for (const auto& [p, value] : s.percentiles) out[name + "_" + percentile_key(p)] = value;
}

}  // namespace

nlohmann::json run_metrics_json(const ServeRunMetrics& m) {
  nlohmann::json j = {{"completed", m.completed},
                      {"failed", m.failed},
                      {"duration_s", m.duration_s},
                      {"total_input_tokens", m.total_input_tokens},
                      {"total_output_tokens", m.total_output_tokens},
                      {"request_throughput", m.request_throughput},
                      {"output_throughput", m.output_throughput},
                      {"total_token_throughput", m.total_token_throughput},
                      {"usage_from_server", m.usage_from_server}};
  j["good_requests"] = m.good_requests ? nlohmann::json(*m.good_requests) : nlohmann::json(nullptr);
  j["goodput"] = m.goodput ? nlohmann::json(*m.goodput) : nlohmann::json(nullptr);
  add_stats(j, "ttft_ms", m.ttft_ms);
  add_stats(j, "tpot_ms", m.tpot_ms);
  add_stats(j, "itl_ms", m.itl_ms);
  add_stats(j, "e2el_ms", m.e2el_ms);
  nlohmann::json errors = nlohmann::json::array();
  for (const auto& [message, count] : m.errors) errors.push_back({{"error", message}, {"count", count}});
  j["errors"] = std::move(errors);
  return j;
}

nlohmann::json request_record_json(const ServeRequestRecord& record, int64_t concurrency) {
  const ServeRequestMetrics m = request_metrics(record);
  const bool has_chunk = !record.chunk_arrivals_s.empty();
  return {{"concurrency", concurrency},
          {"request_index", record.index},
          {"start_offset_ms", record.start_s * 1e3},
          {"success", record.success},
          {"error", record.success ? nlohmann::json(nullptr) : nlohmann::json(record.error)},
          {"prompt_tokens", m.prompt_tokens},
          {"output_tokens", m.output_tokens},
          {"usage_from_server", m.usage_from_server},
          {"ttft_ms", has_chunk ? nlohmann::json(m.ttft_ms) : nlohmann::json(nullptr)},
          {"tpot_ms", m.tpot_ms ? nlohmann::json(*m.tpot_ms) : nlohmann::json(nullptr)},
          {"itl_ms", m.itl_ms},
          {"e2el_ms", m.e2el_ms}};
}

// ---- --slo --------------------------------------------------------------------------------------

Result<ServiceLevelObjectives> parse_slo(const std::string& text) {
  ServiceLevelObjectives slo;
  if (text.empty()) return Status::error("--slo is empty; give e.g. ttft:500,tpot:50,e2el:2000 (milliseconds)");
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    const size_t colon = item.find(':');
    if (colon == std::string::npos)
      return Status::error(fmt::format("--slo item '{}' is not metric:milliseconds (e.g. ttft:500)", item));
    const std::string name = item.substr(0, colon), number = item.substr(colon + 1);
    double value = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || end != number.data() + number.size() || !std::isfinite(value) || value <= 0)
      return Status::error(fmt::format("--slo {}: '{}' is not a positive number of milliseconds", name, number));
    std::optional<double>* bound = name == "ttft"   ? &slo.ttft_ms
                                   : name == "tpot" ? &slo.tpot_ms
                                   : name == "e2el" ? &slo.e2el_ms
                                                    : nullptr;
    if (!bound) return Status::error(fmt::format("--slo: unknown metric '{}' (known: ttft, tpot, e2el)", name));
    if (bound->has_value()) return Status::error(fmt::format("--slo gives {} twice", name));
    *bound = value;
    start = comma + 1;
  }
  return slo;
}

}  // namespace anvil
