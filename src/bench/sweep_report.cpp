// Sweep report rendering: Markdown tables, the JSON report, and the Pareto SVG.
#include "bench/sweep_report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <map>

#include "anvil/version.h"
#include "bench/bench_report.h"
#include "bench/plot_output.h"
#include "bench/sweep_placeholders.h"
#include "bench/sweep_record.h"
#include "bench/svg_plot.h"

namespace anvil {
namespace {

using nlohmann::json;

std::string rate(double v) { return std::fabs(v) >= 100 ? fmt::format("{:.0f}", v) : fmt::format("{:.1f}", v); }
std::string ms(double v) {
  if (std::fabs(v) >= 100) return fmt::format("{:.0f}", v);
  return std::fabs(v) >= 1 ? fmt::format("{:.2f}", v) : fmt::format("{:.3g}", v);
}
// Dollars: cents from 10 cents up, three significant digits below (tiny models cost fractions of a cent).
std::string usd(double v) { return std::fabs(v) >= 0.1 ? fmt::format("${:.2f}", v) : fmt::format("${:.3g}", v); }

bool is_server(const SweepRun& run) { return run.kind == SweepRunKind::Server; }
// "batch 4" (in-process) or "4 users" (server).
std::string load_name(const SweepRun& run, int64_t load) {
  return is_server(run) ? fmt::format("{} user{}", load, load == 1 ? "" : "s") : fmt::format("batch {}", load);
}
std::string load_short(const SweepRun& run, int64_t load) { return fmt::format("{}{}", is_server(run) ? "c" : "b", load); }

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

// A list item; lines after the first (a server log's tail) go in a code block under it.
std::string note_item(const std::string& note) {
  const size_t newline = note.find('\n');
  std::string item = "- " + note.substr(0, newline) + "\n";
  if (newline == std::string::npos) return item;
  item += "  ```\n";
  size_t start = newline + 1;
  while (start <= note.size()) {
    const size_t end = std::min(note.find('\n', start), note.size());
    std::string line = note.substr(start, end - start);
    if (line.rfind("  ", 0) == 0) line = line.substr(2);
    item += "  " + line + "\n";
    start = end + 1;
  }
  return item + "  ```\n";
}

std::string price_text(const SweepRun& run) {
  if (!run.usd_per_hour) return "-";
  return run.instance.empty() ? usd(*run.usd_per_hour) : fmt::format("{} ({})", usd(*run.usd_per_hour), run.instance);
}

json optional_number(const std::optional<double>& v) { return v ? json(*v) : json(nullptr); }

json pick_json(const SweepReportInput& in, const std::optional<SweepPick>& pick, const char* value_key) {
  if (!pick) return nullptr;
  const SweepRun& run = in.runs[pick->run];
  json j = {{"run_id", run.id}, {"label", run.label()}, {"load", pick->load}, {value_key, pick->value}};
  const SweepRunSummary& s = in.analysis.runs[pick->run];
  if (s.cost && s.cost->load == pick->load) {
    j["usd_per_hour"] = s.cost->usd_per_hour;
    j["output_tok_s"] = s.cost->output_tok_s;
  }
  if (s.per_user_tok_s_1_user && pick->load == 1 && std::string(value_key) == "ms_per_token")
    j["per_user_tok_s"] = *s.per_user_tok_s_1_user;
  return j;
}

std::string recommendation_lines(const SweepReportInput& in) {
  const SweepAnalysis& a = in.analysis;
  std::string out;
  if (const auto& p = a.most_cost_effective) {
    const SweepRun& run = in.runs[p->run];
    const CostQuote& q = *a.runs[p->run].cost;
    out += fmt::format("- **Most cost-effective**: {} (run {}): {} per 1M output tokens at {} ({}/hour, {} output "
                       "tok/s, {:.0f} tokens per dollar)\n",
                       run.label(), run.id, usd(q.usd_per_million_output_tokens), load_name(run, q.load),
                       usd(q.usd_per_hour), rate(q.output_tok_s), q.output_tokens_per_usd);
  } else {
    out += "- **Most cost-effective**: none (no run has both a price and a measurement at the cost load)\n";
  }
  if (const auto& p = a.highest_throughput) {
    const SweepRun& run = in.runs[p->run];
    out += fmt::format("- **Highest throughput**: {} (run {}): {} output tok/s at {}\n", run.label(), run.id,
                       rate(p->value), load_name(run, p->load));
  } else {
    out += "- **Highest throughput**: none (no run produced tokens)\n";
  }
  if (const auto& p = a.lowest_latency) {
    const SweepRun& run = in.runs[p->run];
    out += fmt::format("- **Lowest latency**: {} (run {}): {} ms/token median at 1 user ({} tok/s per user)\n",
                       run.label(), run.id, ms(p->value), rate(*a.runs[p->run].per_user_tok_s_1_user));
  } else {
    out += "- **Lowest latency**: none (no run was measured at 1 user)\n";
  }
  return out;
}

}  // namespace

SweepReportInput collect_sweep_report(const SweepConfig& config, const std::vector<SweepRun>& runs,
                                      const SweepStore& store, std::optional<int64_t> cost_at_load,
                                      nlohmann::json machine) {
  SweepReportInput in;
  in.name = config.name;
  in.config_path = config.source;
  in.date = utc_timestamp();
  in.machine = std::move(machine);
  in.cost_at_load = cost_at_load;
  for (const SweepRun& run : runs) {
    std::optional<json> record = store.load(run.id);
    if (!record) {
      ++in.pending;
      continue;
    }
    in.runs.push_back(run);
    in.outcomes.push_back(sweep_outcome(run, *record));
  }
  in.analysis = analyze_sweep(in.outcomes, cost_at_load);
  return in;
}

Result<std::vector<std::string>> write_sweep_report(const SweepStore& store, const SweepReportInput& input) {
  const std::vector<std::pair<std::string, std::string>> files = {
      {store.path("report.md"), sweep_markdown(input)},
      {store.path("report.json"), sweep_report_json(input).dump(2) + "\n"}};
  std::vector<std::string> paths;
  for (const auto& [path, text] : files) {
    ANVIL_RETURN_IF_ERROR(write_text_file(path, text));
    paths.push_back(path);
  }
  ANVIL_ASSIGN_OR_RETURN(std::vector<std::string> plot, write_plot_files(store.path("pareto.svg"), sweep_pareto_svg(input)));
  paths.insert(paths.end(), plot.begin(), plot.end());
  return paths;
}

std::string sweep_plan_markdown(const std::vector<SweepRun>& runs, const SweepStore& store,
                                const std::string& anvil_path) {
  size_t finished = 0;
  std::string md =
      "| # | run | group | kind | model | weights | kv | threads | tp | gemm tuning | loads | $/hour | status |\n"
      "|---:|---|---|---|---|---|---|---:|---:|---|---|---:|---|\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const SweepRun& r = runs[i];
    const bool done = store.is_finished(r.id);
    finished += done;
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} {} | {} | {} |\n", i + 1, r.id, r.group,
                      is_server(r) ? "server" : "in-process", r.model_spec, r.weight_scheme, r.kv_dtype, r.threads,
                      r.tensor_parallel, r.gemm_tuning ? "on" : "off", is_server(r) ? "concurrency" : "batch",
                      fmt::join(r.loads(), ","), price_text(r), done ? "finished" : "to run");
  }
  bool any_server = false;
  for (const SweepRun& r : runs) {
    if (!is_server(r)) continue;
    any_server = true;
    std::map<std::string, std::string> values = sweep_placeholder_values(r, 0, anvil_path);
    values["port"] = "PORT";
    Result<std::string> command = substitute_placeholders(r.server->command, values);
    md += fmt::format("\nrun {} server: {}", r.id, command ? *command : command.status().message());
  }
  md += fmt::format("\n{} runs, {} finished in {}, {} to run{}\n", runs.size(), finished, store.dir(),
                    runs.size() - finished, any_server ? " (PORT: a free port picked per run)" : "");
  return md;
}

std::string sweep_markdown(const SweepReportInput& in) {
  const SweepAnalysis& a = in.analysis;
  std::string md = fmt::format("# anvil bench sweep: {}\n\n", in.name);
  md += fmt::format("Config `{}`, {}, {} ({} logical cores). ", in.config_path, in.date,
                    in.machine.value("cpu_model", std::string("unknown CPU")), in.machine.value("logical_cores", 0));
  md += in.cost_at_load ? fmt::format("Costs are quoted at concurrency / batch {}.\n\n", *in.cost_at_load)
                        : std::string("Costs are quoted at each run's highest measured concurrency / batch.\n\n");

  md += "## Runs\n\n";
  md += "Output tok/s per load: bN = batch of N requests (in-process), cN = N concurrent users (server). Per-user "
        "speed and ms/token are at 1 user (batch 1 / concurrency 1).\n\n";
  md += "| run | configuration | output tok/s by load | per-user tok/s | ms/token (median) | $/hour | $/1M output "
        "tokens |\n|---|---|---|---:|---:|---:|---:|\n";
  for (size_t i = 0; i < in.runs.size(); ++i) {
    const SweepRun& run = in.runs[i];
    const SweepOutcome& o = in.outcomes[i];
    const SweepRunSummary& s = a.runs[i];
    if (!o.ok) {
      md += fmt::format("| {} | {} | failed: {} | - | - | {} | - |\n", run.id, run.label(), first_line(o.error),
                        price_text(run));
      continue;
    }
    std::string by_load;
    for (const SweepPoint& p : o.points)
      by_load += fmt::format("{}{}: {}", by_load.empty() ? "" : ", ", load_short(run, p.load), rate(p.output_tok_s));
    const std::string cost =
        s.cost ? fmt::format("{} ({})", usd(s.cost->usd_per_million_output_tokens), load_short(run, s.cost->load)) : "-";
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {} |\n", run.id, run.label(), by_load,
                      s.per_user_tok_s_1_user ? rate(*s.per_user_tok_s_1_user) : "-",
                      s.ms_per_token_1_user ? ms(*s.ms_per_token_1_user) : "-", price_text(run), cost);
  }
  if (in.pending > 0)
    md += fmt::format("\n{} more run{} not measured yet (the sweep was interrupted): run the same command again to "
                      "finish {}.\n",
                      in.pending, in.pending == 1 ? " is" : "s are", in.pending == 1 ? "it" : "them");

  md += "\n## Recommendations\n\n" + recommendation_lines(in);

  md += "\n## Pareto front: throughput per device vs per-user speed\n\n";
  md += "Points no other (configuration, load) beats on both; throughput per device = output tok/s / tensor-parallel "
        "degree. Plot: pareto.svg (and pareto.png).\n\n";
  md += "| run | configuration | load | output tok/s per device | per-user tok/s |\n|---|---|---|---:|---:|\n";
  for (const ParetoPoint& p : a.pareto_front) {
    const SweepRun& run = in.runs[p.run];
    md += fmt::format("| {} | {} | {} | {} | {} |\n", run.id, run.label(), load_name(run, p.load),
                      rate(p.throughput_per_device), rate(p.per_user_tok_s));
  }
  if (!a.notes.empty()) {
    md += "\n## Notes\n\n";
    for (const std::string& note : a.notes) md += note_item(note);
  }
  return md;
}

json sweep_report_json(const SweepReportInput& in) {
  const SweepAnalysis& a = in.analysis;
  json runs = json::array();
  for (size_t i = 0; i < in.runs.size(); ++i) {
    const SweepRun& run = in.runs[i];
    const SweepOutcome& o = in.outcomes[i];
    const SweepRunSummary& s = a.runs[i];
    json j = {{"run_id", run.id},
              {"label", run.label()},
              {"group", run.group},
              {"kind", is_server(run) ? "server" : "in_process"},
              {"load_kind", is_server(run) ? "concurrency" : "batch_size"},
              {"run", sweep_run_measurement_json(run)},
              {"status", o.ok ? "ok" : "failed"},
              {"error", o.ok ? json(nullptr) : json(o.error)},
              {"usd_per_hour", optional_number(run.usd_per_hour)},
              {"instance", run.instance.empty() ? json(nullptr) : json(run.instance)},
              {"points", sweep_points_json(o.points)},
              {"peak", s.peak ? json{{"load", s.peak->load}, {"output_tok_s", s.peak->output_tok_s}} : json(nullptr)},
              {"per_user_tok_s_1_user", optional_number(s.per_user_tok_s_1_user)},
              {"ms_per_token_1_user", optional_number(s.ms_per_token_1_user)},
              {"cost", nullptr}};
    if (s.cost)
      j["cost"] = {{"load", s.cost->load},
                   {"output_tok_s", s.cost->output_tok_s},
                   {"usd_per_hour", s.cost->usd_per_hour},
                   {"usd_per_million_output_tokens", s.cost->usd_per_million_output_tokens},
                   {"output_tokens_per_usd", s.cost->output_tokens_per_usd}};
    runs.push_back(std::move(j));
  }
  json front = json::array();
  for (const ParetoPoint& p : a.pareto_front)
    front.push_back({{"run_id", in.runs[p.run].id},
                     {"label", in.runs[p.run].label()},
                     {"load", p.load},
                     {"load_kind", is_server(in.runs[p.run]) ? "concurrency" : "batch_size"},
                     {"throughput_per_device", p.throughput_per_device},
                     {"per_user_tok_s", p.per_user_tok_s}});
  return {{"bench", "sweep"},
          {"schema_version", kSweepRecordSchemaVersion},
          {"anvil_version", kAnvilVersion},
          {"date", in.date},
          {"machine", in.machine},
          {"sweep", {{"name", in.name}, {"config", in.config_path}}},
          {"cost_at_concurrency", in.cost_at_load ? json(*in.cost_at_load) : json(nullptr)},
          {"runs", runs},
          {"pending_runs", in.pending},
          {"recommendations",
           {{"most_cost_effective", pick_json(in, a.most_cost_effective, "usd_per_million_output_tokens")},
            {"highest_throughput", pick_json(in, a.highest_throughput, "output_tok_s")},
            {"lowest_latency", pick_json(in, a.lowest_latency, "ms_per_token")}}},
          {"pareto_front", front},
          {"notes", a.notes}};
}

std::string sweep_pareto_svg(const SweepReportInput& in) {
  PlotSeries all;
  all.name = "every (configuration, load)";
  all.draw_line = false;
  for (const ParetoPoint& p : in.analysis.points) {
    all.x.push_back(p.per_user_tok_s);
    all.y.push_back(p.throughput_per_device);
  }
  PlotSeries front;
  front.name = "Pareto front";
  for (const ParetoPoint& p : in.analysis.pareto_front) {
    front.x.push_back(p.per_user_tok_s);
    front.y.push_back(p.throughput_per_device);
  }
  LineChart chart;
  chart.title = "Throughput per device vs per-user speed";
  chart.x_label = "per-user speed (output tok/s per user)";
  chart.y_label = "throughput per device (output tok/s)";
  chart.series = {all, front};
  chart.y_from_zero = true;
  const std::string caption = fmt::format("anvil bench sweep: {} ({} runs), {}", in.name, in.runs.size(), in.date);
  return render_svg({chart}, 1, caption, 720, 480);
}

}  // namespace anvil
