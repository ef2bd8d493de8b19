// Sweep run records: building them, and turning bench results and records into points.
#include "bench/sweep_record.h"

#include <cmath>

#include "anvil/version.h"
#include "bench/bench_report.h"

namespace anvil {
namespace {

double number(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::optional<double> positive(const nlohmann::json& j, const char* key) {
  const double v = number(j, key);
  return std::isfinite(v) && v > 0 ? std::optional<double>(v) : std::nullopt;
}

nlohmann::json optional_json(const std::optional<double>& v) { return v ? nlohmann::json(*v) : nlohmann::json(nullptr); }

nlohmann::json record_head(const SweepRun& run, const char* status, double elapsed_s) {
  return {{"schema_version", kSweepRecordSchemaVersion},
          {"run_id", run.id},
          {"status", status},
          {"anvil_version", kAnvilVersion},
          {"date", utc_timestamp()},
          {"label", run.label()},
          {"group", run.group},
          {"run", sweep_run_measurement_json(run)},
          {"elapsed_s", elapsed_s}};
}

}  // namespace

std::vector<SweepPoint> points_from_latency_results(const nlohmann::json& results, int64_t output_len) {
  std::vector<SweepPoint> points;
  for (const nlohmann::json& r : results) {
    SweepPoint p;
    p.load = r.value("batch_size", int64_t{0});
    p.output_tok_s = number(r, "output_tok_s");
    const double latency = number(r, "avg_latency_s");
    p.per_user_tok_s = latency > 0 ? static_cast<double>(output_len) / latency : 0.0;
    p.tpot_ms_median = positive(r, "tpot_ms_p50");
    p.ttft_ms_median = positive(r, "ttft_ms_p50");
    points.push_back(p);
  }
  return points;
}

std::vector<SweepPoint> points_from_serve_results(const nlohmann::json& results) {
  std::vector<SweepPoint> points;
  for (const nlohmann::json& r : results) {
    if (r.value("completed", int64_t{0}) < 1) continue;
    SweepPoint p;
    p.load = r.value("concurrency", int64_t{0});
    p.output_tok_s = number(r, "output_throughput");
    p.tpot_ms_median = positive(r, "tpot_ms_median");
    p.ttft_ms_median = positive(r, "ttft_ms_median");
    p.per_user_tok_s = p.tpot_ms_median ? 1000.0 / *p.tpot_ms_median : 0.0;
    points.push_back(p);
  }
  return points;
}

nlohmann::json sweep_points_json(const std::vector<SweepPoint>& points) {
  nlohmann::json out = nlohmann::json::array();
  for (const SweepPoint& p : points)
    out.push_back({{"load", p.load},
                   {"output_tok_s", p.output_tok_s},
                   {"per_user_tok_s", p.per_user_tok_s},
                   {"tpot_ms_median", optional_json(p.tpot_ms_median)},
                   {"ttft_ms_median", optional_json(p.ttft_ms_median)}});
  return out;
}

std::vector<SweepPoint> sweep_points_from_json(const nlohmann::json& points) {
  std::vector<SweepPoint> out;
  if (!points.is_array()) return out;
  for (const nlohmann::json& j : points) {
    if (!j.is_object()) continue;
    SweepPoint p;
    p.load = j.value("load", int64_t{0});
    p.output_tok_s = number(j, "output_tok_s");
    p.per_user_tok_s = number(j, "per_user_tok_s");
    p.tpot_ms_median = positive(j, "tpot_ms_median");
    p.ttft_ms_median = positive(j, "ttft_ms_median");
    out.push_back(p);
  }
  return out;
}

nlohmann::json sweep_ok_record(const SweepRun& run, const std::vector<SweepPoint>& points, double elapsed_s) {
  nlohmann::json record = record_head(run, "ok", elapsed_s);
  record["load_kind"] = run.kind == SweepRunKind::Server ? "concurrency" : "batch_size";
  record["points"] = sweep_points_json(points);
  return record;
}

nlohmann::json sweep_failed_record(const SweepRun& run, const std::string& error, double elapsed_s) {
  nlohmann::json record = record_head(run, "failed", elapsed_s);
  record["error"] = error;
  return record;
}

SweepOutcome sweep_outcome(const SweepRun& run, const nlohmann::json& record) {
  SweepOutcome o;
  o.run_id = run.id;
  o.label = run.label();
  o.devices = run.tensor_parallel;
  o.usd_per_hour = run.usd_per_hour;
  o.ok = record.value("status", std::string()) == "ok";
  if (!o.ok) {
    o.error = record.value("error", std::string("no record"));
    return o;
  }
  o.points = sweep_points_from_json(record.value("points", nlohmann::json::array()));
  return o;
}

}  // namespace anvil
