// anvil bench quant: figures, table, JSON rows and charts of a run.
#include "bench/quant_bench_report.h"

#include <fmt/format.h>

#include <cmath>
#include <regex>

namespace anvil {
namespace {

constexpr double kGiB = 1073741824.0;

std::string cell(const std::optional<double>& value, const char* format, bool meaningful = true) {
  if (!meaningful) return "n/a";
  if (!value || !std::isfinite(*value)) return "-";
  return fmt::format(fmt::runtime(format), *value);
}

nlohmann::json optional_json(const std::optional<double>& value) {
  if (!value || !std::isfinite(*value)) return nullptr;
  return *value;
}

// A short legend name for the base: "base (F32)", or the mix of its linear weights' types.
std::string base_label(const QuantBenchRow& row) {
  if (row.weight_types.size() == 1) return "base (" + row.weight_types.begin()->first + ")";
  return "base";
}

}  // namespace

double delta_ppl_percent(double ppl, double ppl_base) { return ppl_base > 0 ? 100.0 * (ppl / ppl_base - 1.0) : 0.0; }

double bits_per_weight(uint64_t bytes, int64_t elements) {
  return elements > 0 ? 8.0 * static_cast<double>(bytes) / static_cast<double>(elements) : 0.0;
}

double decode_gb_s(double tg_tok_s, uint64_t bytes_per_token) {
  return tg_tok_s * static_cast<double>(bytes_per_token) / 1e9;
}

std::optional<double> percent_of_bandwidth(double gb_s, double bandwidth_gbs) {
  if (!(bandwidth_gbs > 0)) return std::nullopt;
  return 100.0 * gb_s / bandwidth_gbs;
}

QuantBenchFigures quant_bench_figures(const QuantBenchRow& row, const QuantBenchReportContext& context) {
  QuantBenchFigures f;
  f.scheme = row.is_base ? base_label(row) : row.scheme;
  f.is_base = row.is_base;
  f.bits_per_weight = bits_per_weight(row.size.linear_bytes, row.size.linear_elements);
  f.weight_gib = static_cast<double>(row.size.total_bytes) / kGiB;
  if (row.is_base && row.base_ppl) {
    // The base against itself: KLD 0 and full agreement by definition.
    if (context.ppl_meaningful) {
      f.ppl = row.base_ppl->ppl;
      f.ppl_stderr = row.base_ppl->ppl_stderr;
      f.delta_ppl_percent = 0.0;
      f.delta_ppl_percent_stderr = 0.0;
    }
    f.kld_mean = 0.0;
    f.kld_p99 = 0.0;
    f.top1_percent = 100.0;
  }
  if (!row.is_base && row.kld) {
    const KlDivergenceResult& k = *row.kld;
    if (context.ppl_meaningful) {
      f.ppl = k.ppl;
      f.ppl_stderr = k.ppl_stderr;
      // exp(mean NLL(Q) - mean NLL(base)) is PPL(Q) / PPL(base) over the same positions.
      f.delta_ppl_percent = 100.0 * (k.ppl_ratio - 1.0);
      f.delta_ppl_percent_stderr = 100.0 * k.ppl_ratio_stderr;
    }
    f.kld_mean = k.kld_mean;
    f.kld_p99 = k.kld_p99;
    f.top1_percent = 100.0 * k.top1_agreement;
  }
  if (row.speed) {
    if (row.speed->prompt.tokens > 0 && !row.speed->prompt.seconds.empty())
      f.pp_tok_s = row.speed->prompt.mean_tokens_per_second();
    if (row.speed->generate.tokens > 0 && !row.speed->generate.seconds.empty()) {
      f.tg_tok_s = row.speed->generate.mean_tokens_per_second();
      f.tg_gb_s = decode_gb_s(*f.tg_tok_s, row.size.decode_bytes_per_token);
      f.tg_bandwidth_percent = percent_of_bandwidth(*f.tg_gb_s, context.bandwidth_gbs);
    }
  }
  return f;
}

std::vector<QuantBenchFigures> quant_bench_figures(const QuantBenchResult& result,
                                                   const QuantBenchReportContext& context) {
  std::vector<QuantBenchFigures> rows;
  rows.push_back(quant_bench_figures(result.base, context));
  for (const QuantBenchRow& row : result.schemes) rows.push_back(quant_bench_figures(row, context));
  return rows;
}

std::string quant_bench_markdown(const std::vector<QuantBenchFigures>& rows) {
  bool ppl_meaningful = false;
  for (const QuantBenchFigures& r : rows) ppl_meaningful = ppl_meaningful || r.ppl.has_value();
  std::string out =
      "| scheme | bits/weight | weight GiB | PPL | ΔPPL % | KLD mean | KLD p99 | top-1 % | pp tok/s | tg tok/s | "
      "tg GB/s (% of BW) |\n"
      "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const QuantBenchFigures& r : rows) {
    std::string delta = cell(r.delta_ppl_percent, "{:+.2f}", ppl_meaningful);
    if (ppl_meaningful && r.delta_ppl_percent && r.delta_ppl_percent_stderr && !r.is_base)
      delta += fmt::format(" ± {:.2f}", *r.delta_ppl_percent_stderr);
    std::string gb = cell(r.tg_gb_s, "{:.2f}");
    if (r.tg_gb_s && r.tg_bandwidth_percent) gb += fmt::format(" ({:.1f}%)", *r.tg_bandwidth_percent);
    out += fmt::format("| {} | {:.2f} | {:.4g} | {} | {} | {} | {} | {} | {} | {} | {} |\n", r.scheme,
                       r.bits_per_weight, r.weight_gib, cell(r.ppl, "{:.4f}", ppl_meaningful), delta,
                       cell(r.kld_mean, "{:.6f}"), cell(r.kld_p99, "{:.6f}"), cell(r.top1_percent, "{:.2f}"),
                       cell(r.pp_tok_s, "{:.1f}"), cell(r.tg_tok_s, "{:.1f}"), gb);
  }
  return out;
}

nlohmann::json quant_bench_row_json(const QuantBenchRow& row, const QuantBenchFigures& f) {
  nlohmann::json j;
  j["scheme"] = row.scheme;
  j["weight_types"] = row.weight_types;
  j["fallback_tensors"] = row.fallback_tensors;
  j["notes"] = row.notes;
  j["weight_bytes"] = row.size.total_bytes;
  j["weight_gib"] = f.weight_gib;
  j["linear_weight_bytes"] = row.size.linear_bytes;
  j["linear_weights"] = row.size.linear_elements;
  j["bits_per_weight"] = f.bits_per_weight;
  j["decode_bytes_per_token"] = row.size.decode_bytes_per_token;
  j["quantize_s"] = row.is_base ? nlohmann::json(nullptr) : nlohmann::json(row.quantize_seconds);
  j["ppl"] = optional_json(f.ppl);
  j["ppl_stderr"] = optional_json(f.ppl_stderr);
  j["delta_ppl_percent"] = optional_json(f.delta_ppl_percent);
  j["delta_ppl_percent_stderr"] = optional_json(f.delta_ppl_percent_stderr);
  j["kld_mean"] = optional_json(f.kld_mean);
  j["kld_p99"] = optional_json(f.kld_p99);
  j["top1_agreement"] = f.top1_percent ? nlohmann::json(*f.top1_percent / 100.0) : nlohmann::json(nullptr);
  j["eval_s"] = row.base_ppl || row.kld ? nlohmann::json(row.eval_seconds) : nlohmann::json(nullptr);
  if (row.kld) {
    const KlDivergenceResult& k = *row.kld;
    j["kl_divergence"] = {{"n_tokens_scored", k.n_tokens_scored},
                          {"ppl", k.ppl},
                          {"ppl_stderr", k.ppl_stderr},
                          {"ppl_base", k.ppl_base},
                          {"ppl_base_stderr", k.ppl_base_stderr},
                          {"ppl_ratio", k.ppl_ratio},
                          {"ppl_ratio_stderr", k.ppl_ratio_stderr},
                          {"ln_ppl_ratio", k.ln_ppl_ratio},
                          {"ln_ppl_ratio_stderr", k.ln_ppl_ratio_stderr},
                          {"kld_mean", k.kld_mean},
                          {"kld_stderr", k.kld_stderr},
                          {"kld_median", k.kld_median},
                          {"kld_p90", k.kld_p90},
                          {"kld_p95", k.kld_p95},
                          {"kld_p99", k.kld_p99},
                          {"kld_p999", k.kld_p999},
                          {"kld_max", k.kld_max},
                          {"kld_min", k.kld_min},
                          {"top1_agreement", k.top1_agreement},
                          {"top1_stderr", k.top1_stderr},
                          {"ln_ppl_correlation", k.ln_ppl_correlation},
                          {"dp_mean", k.dp_mean},
                          {"dp_stderr", k.dp_stderr},
                          {"dp_rms", k.dp_rms},
                          {"dp_rms_stderr", k.dp_rms_stderr},
                          {"dp_median", k.dp_median},
                          {"dp_p01", k.dp_p01},
                          {"dp_p99", k.dp_p99},
                          {"dp_min", k.dp_min},
                          {"dp_max", k.dp_max}};
  } else if (row.base_ppl) {
    j["perplexity"] = {{"n_tokens_scored", row.base_ppl->n_tokens_scored},
                       {"ppl", row.base_ppl->ppl},
                       {"ppl_stderr", row.base_ppl->ppl_stderr},
                       {"mean_nll", row.base_ppl->mean_nll}};
  }
  j["pp_tok_s"] = optional_json(f.pp_tok_s);
  j["tg_tok_s"] = optional_json(f.tg_tok_s);
  j["pp_tok_s_stddev"] = f.pp_tok_s ? nlohmann::json(row.speed->prompt.stddev_tokens_per_second()) : nlohmann::json(nullptr);
  j["tg_tok_s_stddev"] = f.tg_tok_s ? nlohmann::json(row.speed->generate.stddev_tokens_per_second()) : nlohmann::json(nullptr);
  j["tg_gb_s"] = optional_json(f.tg_gb_s);
  j["tg_bandwidth_percent"] = optional_json(f.tg_bandwidth_percent);
  return j;
}

std::vector<LineChart> quant_bench_charts(const std::vector<QuantBenchFigures>& rows, bool ppl_meaningful) {
  using Field = std::optional<double> QuantBenchFigures::*;
  auto chart = [&](const std::string& title, const std::string& y_label, Field field) {
    LineChart c;
    c.title = title;
    c.x_label = "bits per weight (linear layers, scales included)";
    c.y_label = y_label;
    c.log2_x = true;  // 4.5, 8.5, 16 and 32 bits spread evenly
    for (const QuantBenchFigures& r : rows) {
      if (!(r.*field) || !(r.bits_per_weight > 0)) continue;
      PlotSeries s;
      s.name = r.scheme;
      s.x = {r.bits_per_weight};
      s.y = {*(r.*field)};
      s.draw_line = false;
      c.series.push_back(std::move(s));
    }
    return c;
  };
  std::vector<LineChart> charts;
  if (ppl_meaningful) charts.push_back(chart("Perplexity cost", "ΔPPL % vs base", &QuantBenchFigures::delta_ppl_percent));
  charts.push_back(chart("KL divergence from the base", "mean KLD (nats)", &QuantBenchFigures::kld_mean));
  LineChart speed = chart("Decode speed", "tg tokens/s", &QuantBenchFigures::tg_tok_s);
  if (!speed.series.empty()) charts.push_back(std::move(speed));
  return charts;
}

namespace {

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
  bool contains(double px, double py, double margin) const {
    return px >= x - margin && px <= x + w + margin && py >= y - margin && py <= y + h + margin;
  }
};

}  // namespace

std::string render_quant_bench_svg(const std::vector<LineChart>& charts, const std::string& caption) {
  const std::string svg = render_svg(charts, static_cast<int>(charts.size()), caption);
  // A stopgap until LineChart can place its legend: svg_plot writes each chart as
  // <g class="chart"> with the plot frame (the first rect drawn with stroke #444), the markers
  // (<circle cx cy>) and <g class="legend"> whose first rect is the legend box. Anything not
  // found leaves the chart as it is.
  static const std::regex frame_re(
      R"re(<rect x="([-0-9.]+)" y="([-0-9.]+)" width="([-0-9.]+)" height="([-0-9.]+)" fill="none" stroke="#444"/>)re");
  static const std::regex circle_re(R"re(<circle cx="([-0-9.]+)" cy="([-0-9.]+)")re");
  static const std::regex legend_re(
      R"re(<g class="legend"([^>]*)>\n<rect x="([-0-9.]+)" y="([-0-9.]+)" width="([-0-9.]+)" height="([-0-9.]+)")re");
  const std::string chart_tag = "<g class=\"chart\">";
  std::string out;
  size_t at = 0;
  while (true) {
    const size_t start = svg.find(chart_tag, at);
    const size_t next = start == std::string::npos ? std::string::npos : svg.find(chart_tag, start + chart_tag.size());
    if (start == std::string::npos) {
      out += svg.substr(at);
      break;
    }
    out += svg.substr(at, start - at);
    std::string chart = svg.substr(start, next == std::string::npos ? std::string::npos : next - start);
    at = next == std::string::npos ? svg.size() : next;
    std::smatch frame, legend;
    if (!std::regex_search(chart, frame, frame_re) || !std::regex_search(chart, legend, legend_re)) {
      out += chart;
      continue;
    }
    const Box plot{std::stod(frame[1]), std::stod(frame[2]), std::stod(frame[3]), std::stod(frame[4])};
    const Box box{std::stod(legend[2]), std::stod(legend[3]), std::stod(legend[4]), std::stod(legend[5])};
    std::vector<std::pair<double, double>> points;
    for (auto it = std::sregex_iterator(chart.begin(), chart.end(), circle_re); it != std::sregex_iterator(); ++it)
      points.emplace_back(std::stod((*it)[1]), std::stod((*it)[2]));
    // Corners in order of preference: top-left (where it is), top-right, bottom-right, bottom-left.
    const double inset_x = box.x - plot.x, inset_y = box.y - plot.y;
    const double right = plot.x + plot.w - inset_x - box.w, bottom = plot.y + plot.h - inset_y - box.h;
    const std::pair<double, double> corners[] = {{box.x, box.y}, {right, box.y}, {right, bottom}, {box.x, bottom}};
    size_t best = 0, best_covered = points.size() + 1;
    for (size_t c = 0; c < std::size(corners); ++c) {
      const Box moved{corners[c].first, corners[c].second, box.w, box.h};
      size_t covered = 0;
      for (const auto& [px, py] : points) covered += moved.contains(px, py, 4.0) ? 1 : 0;
      if (covered < best_covered) best = c, best_covered = covered;
    }
    if (best != 0) {
      const std::string moved_tag = fmt::format("<g class=\"legend\"{} transform=\"translate({:.1f} {:.1f})\">",
                                                legend[1].str(), corners[best].first - box.x, corners[best].second - box.y);
      const size_t tag = static_cast<size_t>(legend.position(0));
      chart.replace(tag, chart.find('>', tag) + 1 - tag, moved_tag);
    }
    out += chart;
  }
  return out;
}

std::vector<std::string> quant_bench_notes(const QuantBenchResult& result, const QuantBenchReportContext& context) {
  std::vector<std::string> notes;
  if (!context.ppl_meaningful)
    notes.push_back("random weights (dummy preset): perplexity is meaningless and left out; KLD and top-1 "
                    "agreement still measure how far each scheme moves the model's output distribution");
  for (const auto& [type, count] : result.base.weight_types)
    if (type != "F32" && type != "F16" && type != "BF16") {
      notes.push_back(fmt::format("the base is already quantized ({} linear weights are {}): the schemes start from "
                                  "its dequantized weights, and KLD is against it, not the original model",
                                  count, type));
      break;
    }
  for (const QuantBenchRow& row : result.schemes)
    notes.insert(notes.end(), row.notes.begin(), row.notes.end());
  bool speed = result.base.speed.has_value();
  if (speed && !(context.bandwidth_gbs > 0))
    notes.push_back("no measured read bandwidth is cached for this CPU and thread count, so the share of it is "
                    "left out (`anvil bench kernels` measures and caches it)");
  if (!result.base_in_memory)
    notes.push_back("the base log-probs were larger than the in-memory limit and were kept in a temporary file");
  return notes;
}

}  // namespace anvil
