// anvil bench quant reports: the figures of each row (ΔPPL %, bits per weight, decode GB/s and its
// share of the measured bandwidth), the Markdown table, the JSON rows and the charts.
// The JSON schema is documented in docs/BENCHMARKS.md; change both together.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench/quant_bench.h"
#include "bench/svg_plot.h"

namespace anvil {

// 100 * (ppl / ppl_base - 1).
double delta_ppl_percent(double ppl, double ppl_base);
// Bits per weight of `elements` weights stored in `bytes` (scales included); 0 without weights.
double bits_per_weight(uint64_t bytes, int64_t elements);
// Decode traffic: tokens/s x bytes each token reads, in GB/s (1e9 bytes).
double decode_gb_s(double tg_tok_s, uint64_t bytes_per_token);
// 100 * gb_s / bandwidth_gbs; none when no bandwidth is known (<= 0).
std::optional<double> percent_of_bandwidth(double gb_s, double bandwidth_gbs);

struct QuantBenchReportContext {
  bool ppl_meaningful = true;  // false for random-weight presets: PPL and ΔPPL are left out
  double bandwidth_gbs = 0;    // the cached measured read bandwidth; 0: unknown
};

// One table row. Empty optionals: not measured, or not meaningful.
struct QuantBenchFigures {
  std::string scheme;
  bool is_base = false;
  double bits_per_weight = 0, weight_gib = 0;
  std::optional<double> ppl, ppl_stderr, delta_ppl_percent, delta_ppl_percent_stderr;
  std::optional<double> kld_mean, kld_p99, top1_percent;
  std::optional<double> pp_tok_s, tg_tok_s, tg_gb_s, tg_bandwidth_percent;
};

QuantBenchFigures quant_bench_figures(const QuantBenchRow& row, const QuantBenchReportContext& context);
// The base first, then every scheme row of the result.
std::vector<QuantBenchFigures> quant_bench_figures(const QuantBenchResult& result,
                                                   const QuantBenchReportContext& context);

// | scheme | bits/weight | weight GiB | PPL | ΔPPL % | KLD mean | KLD p99 | top-1 % | pp tok/s | tg tok/s |
// tg GB/s (% of BW) |, "n/a" where a figure is not meaningful, "-" where it was not measured.
std::string quant_bench_markdown(const std::vector<QuantBenchFigures>& rows);

// One entry of the report's `base` or `results`.
nlohmann::json quant_bench_row_json(const QuantBenchRow& row, const QuantBenchFigures& figures);

// ΔPPL % (real models) and mean KLD against bits per weight, and decode tok/s (when measured):
// each row one labelled point (a markers-only series).
std::vector<LineChart> quant_bench_charts(const std::vector<QuantBenchFigures>& rows, bool ppl_meaningful);

// render_svg() of the charts, with each chart's legend moved to the corner of its plot that covers
// the fewest points (render_svg puts it top-left, where these charts keep their low-bit points).
std::string render_quant_bench_svg(const std::vector<LineChart>& charts, const std::string& caption);

// The notes a reader needs under the table: fallbacks, random weights, the bandwidth's source.
std::vector<std::string> quant_bench_notes(const QuantBenchResult& result, const QuantBenchReportContext& context);

}  // namespace anvil
