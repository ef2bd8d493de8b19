// SVG line charts: data space -> pixel space per panel, then plain <line>/<polyline>/<text> elements.
#include "bench/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace anvil {
namespace {

// Colour-blind-friendly (Okabe-Ito) palette, cycled.
const char* const kColors[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"};

std::string escape_xml(const std::string& text) {
  std::string out;
  for (char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += ch;
    }
  }
  return out;
}

std::string tick_label(double v) {
  if (v == 0) return "0";
  const double a = std::fabs(v);
  if (a >= 1e6 || a < 1e-3) return fmt::format("{:.3g}", v);
  std::string s = fmt::format("{:.6f}", v);
  s.erase(s.find_last_not_of('0') + 1);  // "2.500000" -> "2.5", "100.000000" -> "100."
  if (s.back() == '.') s.pop_back();
  return s;
}

bool usable(double x, double y, bool log_x) { return std::isfinite(x) && std::isfinite(y) && (!log_x || x > 0); }

// One axis' data range -> pixel range.
struct Axis {
  double lo = 0, hi = 1;
  bool log2 = false;
  double pixel_lo = 0, pixel_hi = 1;
  double map(double v) const {
    const double a = log2 ? std::log2(lo) : lo, b = log2 ? std::log2(hi) : hi, t = log2 ? std::log2(v) : v;
    return pixel_lo + (t - a) / (b - a) * (pixel_hi - pixel_lo);
  }
};

void render_chart(std::string& svg, const LineChart& chart, double left, double top, double width, double height) {
  const double margin_left = 70, margin_right = 20, margin_top = 36, margin_bottom = 50;
  const double plot_x0 = left + margin_left, plot_x1 = left + width - margin_right;
  const double plot_y0 = top + margin_top, plot_y1 = top + height - margin_bottom;  // y0 is the top edge

  svg += fmt::format("<g class=\"chart\">\n<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"15\" "
                     "font-weight=\"bold\">{}</text>\n",
                     left + width / 2, top + 22, escape_xml(chart.title));
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const PlotSeries& s : chart.series)
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!usable(s.x[i], s.y[i], chart.log2_x)) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
  svg += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\" fill=\"none\" "
                     "stroke=\"#444\"/>\n",
                     plot_x0, plot_y0, plot_x1 - plot_x0, plot_y1 - plot_y0);
  if (!std::isfinite(x_lo)) {
    svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" fill=\"#888\">no data</text>\n</g>\n",
                       (plot_x0 + plot_x1) / 2, (plot_y0 + plot_y1) / 2);
    return;
  }

  // Ranges: y from 0 (these are times and rates), a one-point range widened so it has an extent.
  if (chart.y_from_zero) y_lo = std::min(y_lo, 0.0);
  if (y_hi <= y_lo) y_hi = y_lo + (y_lo == 0 ? 1.0 : std::fabs(y_lo) * 0.5);
  std::vector<double> y_ticks = nice_ticks(y_lo, y_hi);
  Axis y{std::min(y_lo, y_ticks.front()), std::max(y_hi, y_ticks.back()), false, plot_y1, plot_y0};
  std::vector<double> x_ticks;
  Axis x;
  x.log2 = chart.log2_x;
  x.pixel_lo = plot_x0 + 12;  // points off the frame
  x.pixel_hi = plot_x1 - 12;
  if (chart.log2_x) {
    const double a = std::floor(std::log2(x_lo)), b = std::ceil(std::log2(x_hi));
    x.lo = std::exp2(a);
    x.hi = std::exp2(std::max(b, a + 1));
    for (double e = a; e <= std::log2(x.hi) + 1e-9; ++e) x_ticks.push_back(std::exp2(e));
  } else {
    if (x_hi <= x_lo) {
      x_lo -= 1;
      x_hi += 1;
    }
    x_ticks = nice_ticks(x_lo, x_hi);
    x.lo = std::min(x_lo, x_ticks.front());
    x.hi = std::max(x_hi, x_ticks.back());
  }

  svg += "<g class=\"axes\" font-size=\"11\" fill=\"#333\">\n";
  for (double t : y_ticks) {
    const double py = y.map(t);
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                       plot_x0, py, plot_x1, py, plot_x0 - 6, py + 4, escape_xml(tick_label(t)));
  }
  for (double t : x_ticks) {
    const double px = x.map(t);
    svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"#444\"/>"
                       "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                       px, plot_y1, px, plot_y1 + 5, px, plot_y1 + 18, escape_xml(tick_label(t)));
  }
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"12\">{}</text>\n",
                     (plot_x0 + plot_x1) / 2, plot_y1 + 38, escape_xml(chart.x_label));
  svg += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\" font-size=\"12\" "
                     "transform=\"rotate(-90 {:.1f} {:.1f})\">{}</text>\n</g>\n",
                     left + 16, (plot_y0 + plot_y1) / 2, left + 16, (plot_y0 + plot_y1) / 2,
                     escape_xml(chart.y_label));

  for (size_t si = 0; si < chart.series.size(); ++si) {
    const PlotSeries& s = chart.series[si];
    const char* color = kColors[si % std::size(kColors)];
    std::string points, markers;
    for (size_t i = 0; i < std::min(s.x.size(), s.y.size()); ++i) {
      if (!usable(s.x[i], s.y[i], chart.log2_x)) continue;
      const double px = x.map(s.x[i]), py = y.map(s.y[i]);
      points += fmt::format("{}{:.1f},{:.1f}", points.empty() ? "" : " ", px, py);
      markers += fmt::format("<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\"/>", px, py);
    }
    svg += fmt::format("<g class=\"series\" data-name=\"{}\" fill=\"{}\">\n<polyline fill=\"none\" stroke=\"{}\" "
                       "stroke-width=\"{}\" points=\"{}\"/>\n{}\n</g>\n",
                       escape_xml(s.name), color, color, s.draw_line ? 2 : 0, points, markers);
  }

  // Legend: top-left corner of the plot area, on a white box so lines under it stay readable.
  if (!chart.series.empty()) {
    size_t longest = 0;
    for (const PlotSeries& s : chart.series) longest = std::max(longest, s.name.size());
    const double box_w = 34 + 6.5 * static_cast<double>(longest), row_h = 16;
    const double bx = plot_x0 + 8, by = plot_y0 + 8;
    svg += fmt::format("<g class=\"legend\" font-size=\"11\">\n<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" "
                       "height=\"{:.1f}\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n",
                       bx, by, box_w, row_h * static_cast<double>(chart.series.size()) + 6);
    for (size_t si = 0; si < chart.series.size(); ++si) {
      const double ry = by + 3 + row_h * (static_cast<double>(si) + 0.5);
      const char* color = kColors[si % std::size(kColors)];
      svg += fmt::format("<line x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\" stroke=\"{}\" "
                         "stroke-width=\"2\"/><text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n",
                         bx + 6, ry, bx + 24, ry, color, bx + 30, ry + 4, escape_xml(chart.series[si].name));
    }
    svg += "</g>\n";
  }
  svg += "</g>\n";
}

}  // namespace

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(std::isfinite(lo) && std::isfinite(hi))) return {0.0, 1.0};
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) {
    hi = lo + 1;
  }
  const double raw = (hi - lo) / std::max(1, target);
  const double magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  double step = magnitude * 10;
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * magnitude >= raw) {
      step = m * magnitude;
      break;
    }
  std::vector<double> ticks;
  const double first = std::floor(lo / step + 1e-9) * step, last = std::ceil(hi / step - 1e-9) * step;
  for (int i = 0; first + i * step <= last + step * 1e-6 && i < 100; ++i) {
    const double t = first + i * step;
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);  // no "-0" or 1e-17 labels
  }
  return ticks;
}

std::string render_svg(const std::vector<LineChart>& charts, int columns, const std::string& caption,
                       int panel_width, int panel_height) {
  const int n = std::max<int>(1, static_cast<int>(charts.size()));
  const int cols = columns > 0 ? std::min(columns, n) : n;
  const int rows = (n + cols - 1) / cols;
  const int caption_height = caption.empty() ? 0 : 28;
  const int width = cols * panel_width, height = rows * panel_height + caption_height;
  std::string svg = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" "
      "height=\"{}\" viewBox=\"0 0 {} {}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      width, height, width, height);
  if (!caption.empty())
    svg += fmt::format("<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"13\" fill=\"#333\">{}</text>\n",
                       width / 2, escape_xml(caption));
  for (size_t i = 0; i < charts.size(); ++i) {
    const int col = static_cast<int>(i) % cols, row = static_cast<int>(i) / cols;
    render_chart(svg, charts[i], col * panel_width, caption_height + row * panel_height, panel_width, panel_height);
  }
  svg += "</svg>\n";
  return svg;
}

}  // namespace anvil
