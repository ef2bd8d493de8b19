// Report JSON, Markdown tables, latency charts and report comparison for the engine benchmarks.
#include "bench/bench_report.h"

#include <fmt/format.h>

#include <cctype>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

#include "anvil/version.h"
#include "bench/machine_limits.h"
#include "compute/cpu/isa.h"
#include "core/cpu_features.h"
#include "core/dtype.h"
#include "model/kv_store.h"

namespace anvil {
namespace {

double number(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

// Seconds and milliseconds from sub-millisecond (tiny models) to minutes (long prompts on a CPU):
// three decimals from 1 up, four significant digits below.
std::string short_number(double v) {
  const double a = std::fabs(v);
  if (a == 0) return "0";
  if (a >= 100) return fmt::format("{:.1f}", v);
  if (a >= 1) return fmt::format("{:.3f}", v);
  return fmt::format("{:.4g}", v);
}

void add_cost(nlohmann::json& j, double usd_per_hour, double output_tok_s) {
  if (usd_per_hour <= 0) return;
  j["usd_per_hour"] = usd_per_hour;
  j["usd_per_million_output_tokens"] = usd_per_million_tokens(usd_per_hour, output_tok_s);
}

bool has_cost(const nlohmann::json& results) {
  for (const nlohmann::json& r : results)
    if (r.contains("usd_per_million_output_tokens")) return true;
  return false;
}

std::string cost_cell(const nlohmann::json& r) {
  return r.contains("usd_per_million_output_tokens")
             ? fmt::format(" ${:.2f} |", number(r, "usd_per_million_output_tokens"))
             : std::string(" - |");
}

struct MetricSpec {
  const char* name;
  bool higher_is_better;
};

// What `bench compare` compares, in display order.
const std::vector<MetricSpec>& compared_metrics(const std::string& bench) {
  static const std::vector<MetricSpec> latency = {
      {"avg_latency_s", false}, {"std_latency_s", false}, {"p50_latency_s", false}, {"p90_latency_s", false},
      {"p99_latency_s", false}, {"output_tok_s", true},   {"ttft_ms_mean", false},  {"tpot_ms_mean", false},
      {"usd_per_million_output_tokens", false}};
  static const std::vector<MetricSpec> throughput = {
      {"requests_per_s", true}, {"total_tok_s", true},  {"output_tok_s", true},    {"ttft_ms_mean", false},
      {"tpot_ms_mean", false},  {"e2e_s_mean", false},  {"preemptions", false},    {"prefix_hit_rate", true},
      {"usd_per_million_output_tokens", false}};
  // bench serve: the same percentiles appear in both reports only when both asked for them; the
  // pairing below skips metrics one report lacks.
  static const std::vector<MetricSpec> serve = {
      {"request_throughput", true}, {"output_throughput", true}, {"total_token_throughput", true},
      {"goodput", true},            {"failed", false},           {"ttft_ms_mean", false},
      {"ttft_ms_median", false},    {"ttft_ms_p99", false},      {"tpot_ms_mean", false},
      {"tpot_ms_median", false},    {"tpot_ms_p99", false},      {"itl_ms_mean", false},
      {"itl_ms_p99", false},        {"e2el_ms_mean", false},     {"e2el_ms_median", false},
      {"e2el_ms_p99", false}};
  if (bench == "serve") return serve;
  return bench == "latency" ? latency : throughput;
}

// The entry a result stands for, so the same entry of two reports can be paired.
std::string entry_key(const std::string& bench, const nlohmann::json& r) {
  if (bench == "latency") return fmt::format("batch_size={}", r.value("batch_size", int64_t{0}));
  if (bench == "serve") {
    const int64_t concurrency = r.value("concurrency", int64_t{0});
    const nlohmann::json rate = r.value("request_rate", nlohmann::json("inf"));
    return fmt::format("concurrency={} rate={}", concurrency > 0 ? std::to_string(concurrency) : "unbounded",
                       rate.is_number() ? fmt::format("{:g}", rate.get<double>()) : rate.dump());
  }
  return fmt::format("scenario={} ({}/{})", r.value("scenario", std::string("?")), number(r, "input_len"),
                     r.value("output_len", int64_t{0}));
}

}  // namespace

std::string utc_timestamp() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

nlohmann::json bench_machine_json(int threads) {
  const CpuFeatures& cpu = cpu_features();
  nlohmann::json j = {{"cpu_model", cpu.model_name}, {"logical_cores", cpu.logical_cores}, {"threads", threads},
                      {"isa", isa_name(active_isa())}, {"features", cpu.names()}};
  std::optional<MachineLimits> limits = cached_machine_limits(threads);
  j["limits"] = limits ? machine_limits_to_json(*limits) : nlohmann::json(nullptr);
  return j;
}

nlohmann::json bench_model_json(const std::string& spec, const DecoderModel& model) {
  const Checkpoint& checkpoint = model.checkpoint();
  const ModelConfig& c = checkpoint.config;
  uint64_t weight_bytes = 0;
  std::map<std::string, int> dtype_counts;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    weight_bytes += tensor.nbytes;
    ++dtype_counts[dtype_name(tensor.dtype)];
  }
  return {{"spec", spec},
          {"arch", c.arch},
          {"name", c.name},
          {"parameters", c.parameter_count()},
          {"context_length", c.context_length},
          {"vocab_size", c.vocab_size},
          {"weight_bytes", weight_bytes},
          {"tensor_dtypes", dtype_counts}};
}

nlohmann::json engine_options_json(const EngineOptions& o, int64_t kv_cache_capacity_tokens) {
  return {{"max_num_seqs", o.max_num_seqs},
          {"max_num_batched_tokens", o.max_num_batched_tokens},
          {"block_size", o.block_size},
          {"kv_dtype", kv_cache_dtype_name(o.kv_dtype)},  // as --kv-dtype spells it
          {"kv_cache_bytes", o.kv_cache_bytes},
          {"kv_cache_memory_fraction", o.kv_cache_bytes > 0 ? 0.0 : o.kv_cache_memory_fraction},
          {"kv_cache_capacity_tokens", kv_cache_capacity_tokens},
          {"enable_prefix_caching", o.enable_prefix_caching},
          {"enable_chunked_prefill", o.enable_chunked_prefill},
          {"scheduling_policy", o.scheduling_policy}};
}

nlohmann::json bench_report_head(const std::string& bench, const std::string& model_spec, const DecoderModel& model,
                                 int threads) {
  return {{"bench", bench},
          {"schema_version", kBenchReportSchemaVersion},
          {"anvil_version", kAnvilVersion},
          {"date", utc_timestamp()},
          {"machine", bench_machine_json(threads)},
          {"model", bench_model_json(model_spec, model)}};
}

nlohmann::json latency_batch_json(const LatencyBatchResult& batch, double usd_per_hour) {
  const LatencySummary s = batch.summary();
  nlohmann::json j = {{"batch_size", batch.batch_size},
                      {"iterations", batch.latencies_s.size()},
                      {"avg_latency_s", s.avg_latency_s},
                      {"std_latency_s", s.std_latency_s},
                      {"p50_latency_s", s.p50_latency_s},
                      {"p90_latency_s", s.p90_latency_s},
                      {"p99_latency_s", s.p99_latency_s},
                      {"output_tok_s", s.output_tok_s},
                      {"ttft_ms_mean", s.ttft_ms_mean},
                      {"ttft_ms_p50", s.ttft_ms_p50},
                      {"ttft_ms_p99", s.ttft_ms_p99},
                      {"tpot_ms_mean", s.tpot_ms_mean},
                      {"tpot_ms_p50", s.tpot_ms_p50},
                      {"tpot_ms_p99", s.tpot_ms_p99},
                      {"latencies_s", batch.latencies_s},
                      {"steps", batch.steps},
                      {"preemptions", batch.preemptions},
                      {"prefix_hit_rate", batch.prefix_hit_rate}};
  add_cost(j, usd_per_hour, s.output_tok_s);
  return j;
}

nlohmann::json throughput_result_json(const ThroughputResult& r, double usd_per_hour) {
  nlohmann::json j = {{"scenario", r.name},
                      {"input_len", r.input_len},
                      {"output_len", r.output_len},
                      {"num_prompts", r.num_prompts},
                      {"completed", r.completed},
                      {"prompt_tokens", r.prompt_tokens},
                      {"output_tokens", r.output_tokens},
                      {"elapsed_s", r.elapsed_s},
                      {"requests_per_s", r.requests_per_s},
                      {"total_tok_s", r.total_tok_s},
                      {"output_tok_s", r.output_tok_s},
                      {"ttft_ms_mean", r.ttft_ms_mean},
                      {"ttft_ms_p50", r.ttft_ms_p50},
                      {"ttft_ms_p99", r.ttft_ms_p99},
                      {"tpot_ms_mean", r.tpot_ms_mean},
                      {"tpot_ms_p50", r.tpot_ms_p50},
                      {"tpot_ms_p99", r.tpot_ms_p99},
                      {"e2e_s_mean", r.e2e_s_mean},
                      {"steps", r.steps},
                      {"preemptions", r.preemptions},
                      {"prefix_queries", r.prefix_queries},
                      {"prefix_hits", r.prefix_hits},
                      {"prefix_hit_rate", r.prefix_hit_rate},
                      {"interrupted", r.interrupted}};
  add_cost(j, usd_per_hour, r.output_tok_s);
  return j;
}

std::string latency_markdown(const nlohmann::json& results) {
  const bool cost = has_cost(results);
  std::string out = "| batch | avg latency (s) | std (s) | p50 (s) | p90 (s) | p99 (s) | output tok/s | TTFT mean (ms) "
                    "| TPOT mean (ms) |";
  out += cost ? " $/1M output tokens |\n" : "\n";
  out += "|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
  out += cost ? "---:|\n" : "\n";
  for (const nlohmann::json& r : results) {
    out += fmt::format("| {} | {} | {} | {} | {} | {} | {:.1f} | {} | {} |", r.value("batch_size", int64_t{0}),
                       short_number(number(r, "avg_latency_s")), short_number(number(r, "std_latency_s")),
                       short_number(number(r, "p50_latency_s")), short_number(number(r, "p90_latency_s")),
                       short_number(number(r, "p99_latency_s")), number(r, "output_tok_s"),
                       short_number(number(r, "ttft_ms_mean")), short_number(number(r, "tpot_ms_mean")));
    out += (cost ? cost_cell(r) : std::string()) + "\n";
  }
  return out;
}

std::string throughput_markdown(const nlohmann::json& results) {
  const bool cost = has_cost(results);
  std::string out = "| scenario | input/output | prompts | requests/s | total tok/s | output tok/s | TTFT mean (ms) | "
                    "TPOT mean (ms) | preemptions | prefix hit rate | elapsed (s) |";
  out += cost ? " $/1M output tokens |\n" : "\n";
  out += "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|";
  out += cost ? "---:|\n" : "\n";
  for (const nlohmann::json& r : results) {
    const std::string completed = r.value("completed", int64_t{0}) == r.value("num_prompts", int64_t{0})
                                      ? fmt::format("{}", r.value("num_prompts", int64_t{0}))
                                      : fmt::format("{} of {}", r.value("completed", int64_t{0}),
                                                    r.value("num_prompts", int64_t{0}));
    out += fmt::format("| {} | {:g}/{} | {} | {} | {:.1f} | {:.1f} | {} | {} | {} | {:.1f}% | {} |",
                       r.value("scenario", std::string("?")), std::round(number(r, "input_len") * 10) / 10,
                       r.value("output_len", int64_t{0}), completed, short_number(number(r, "requests_per_s")),
                       number(r, "total_tok_s"), number(r, "output_tok_s"), short_number(number(r, "ttft_ms_mean")),
                       short_number(number(r, "tpot_ms_mean")), r.value("preemptions", int64_t{0}),
                       100.0 * number(r, "prefix_hit_rate"), short_number(number(r, "elapsed_s")));
    out += (cost ? cost_cell(r) : std::string()) + "\n";
  }
  return out;
}

std::vector<LineChart> latency_charts(const nlohmann::json& results) {
  auto series = [&](const std::string& name, const char* key, double scale = 1.0) {
    PlotSeries s;
    s.name = name;
    for (const nlohmann::json& r : results) {
      s.x.push_back(number(r, "batch_size"));
      s.y.push_back(number(r, key) * scale);
    }
    return s;
  };
  LineChart latency;
  latency.title = "Latency vs batch size";
  latency.x_label = "batch size";
  latency.y_label = "latency (s)";
  latency.log2_x = true;
  latency.series = {series("avg", "avg_latency_s"), series("p50", "p50_latency_s"), series("p90", "p90_latency_s"),
                    series("p99", "p99_latency_s")};
  LineChart throughput;
  throughput.title = "Output throughput vs batch size";
  throughput.x_label = "batch size";
  throughput.y_label = "output tokens/s";
  throughput.log2_x = true;
  throughput.series = {series("output tok/s", "output_tok_s")};
  LineChart per_token;
  per_token.title = "TTFT and TPOT vs batch size";
  per_token.x_label = "batch size";
  per_token.y_label = "ms";
  per_token.log2_x = true;
  per_token.series = {series("TTFT mean", "ttft_ms_mean"), series("TPOT mean", "tpot_ms_mean")};
  return {latency, throughput, per_token};
}

Result<nlohmann::json> read_bench_report(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the report");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded()) return Status::error(path + ": not valid JSON");
  if (!j.is_object() || !j.contains("bench") || !j["bench"].is_string() || !j.contains("results") ||
      !j["results"].is_array())
    return Status::error(path + ": not a benchmark report (expected \"bench\" and \"results\", as --output-json writes)");
  const std::string bench = j["bench"];
  if (bench != "latency" && bench != "throughput" && bench != "serve")
    return Status::error(path + ": bench compare reads latency, throughput and serve reports, not '" + bench + "'");
  return j;
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  if (!out) return Status::error(path + ": cannot write");
  out << text;
  out.flush();
  if (!out) return Status::error(path + ": write failed");
  return Status::ok();
}

Result<std::vector<MetricComparison>> compare_bench_reports(const nlohmann::json& a, const nlohmann::json& b) {
  const std::string bench = a.value("bench", std::string());
  if (bench != b.value("bench", std::string()))
    return Status::error(fmt::format("the reports are of different benchmarks ({} and {})", bench,
                                     b.value("bench", std::string())));
  std::map<std::string, const nlohmann::json*> b_entries;
  for (const nlohmann::json& r : b["results"]) b_entries[entry_key(bench, r)] = &r;
  std::vector<MetricComparison> rows;
  bool matched = false;
  for (const nlohmann::json& ra : a["results"]) {
    const std::string key = entry_key(bench, ra);
    auto it = b_entries.find(key);
    if (it == b_entries.end()) continue;
    matched = true;
    const nlohmann::json& rb = *it->second;
    for (const MetricSpec& m : compared_metrics(bench)) {
      if (!ra.contains(m.name) || !rb.contains(m.name) || !ra[m.name].is_number() || !rb[m.name].is_number())
        continue;
      MetricComparison c;
      c.key = key;
      c.metric = m.name;
      c.a = ra[m.name].get<double>();
      c.b = rb[m.name].get<double>();
      if (c.a != 0) c.ratio = c.b / c.a;
      c.higher_is_better = m.higher_is_better;
      rows.push_back(c);
    }
  }
  if (!matched)
    return Status::error(bench == "latency" ? "the reports share no batch size"
                         : bench == "serve" ? "the reports share no concurrency level and request rate"
                                            : "the reports share no scenario");
  return rows;
}

std::string comparison_markdown(const std::vector<MetricComparison>& rows, const std::string& a_name,
                                const std::string& b_name) {
  std::string out = fmt::format("| entry | metric | A | B | B/A | |\n|---|---|---:|---:|---:|---|\n");
  for (const MetricComparison& r : rows) {
    std::string verdict;
    if (r.ratio) {
      // Within 1% reads as noise on a CPU; beyond it, say which way is good for this metric.
      if (std::fabs(*r.ratio - 1.0) < 0.01) verdict = "same";
      else verdict = ((*r.ratio > 1.0) == r.higher_is_better) ? "better" : "worse";
    }
    auto value = [](double v) { return std::fabs(v) >= 1000 ? fmt::format("{:.1f}", v) : fmt::format("{:.4g}", v); };
    out += fmt::format("| {} | {} | {} | {} | {} | {} |\n", r.key, r.metric, value(r.a), value(r.b),
                       r.ratio ? fmt::format("{:.3f}", *r.ratio) : std::string("-"), verdict);
  }
  out += fmt::format("\nA = {}\nB = {}\n", a_name, b_name);
  return out;
}

}  // namespace anvil
