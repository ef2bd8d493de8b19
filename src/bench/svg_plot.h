// A small dependency-free SVG line-chart writer for benchmark reports: axes with "nice" ticks,
// axis labels, a title, several series with markers and a legend; several charts side by side.
#pragma once

#include <string>
#include <vector>

namespace anvil {

struct PlotSeries {
  std::string name;
  std::vector<double> x, y;  // same length; non-finite points are skipped
  bool draw_line = true;     // false: markers only (a scatter of unordered points)
};

struct LineChart {
  std::string title;
  std::string x_label, y_label;
  std::vector<PlotSeries> series;
  bool log2_x = false;  // batch sizes 1, 2, 4 ... 256 spread evenly; needs x > 0
  bool y_from_zero = true;
};

// Tick positions covering [lo, hi] at a 1-2-5 x 10^k step, about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// The charts in a grid of `columns` (0: all in one row), each panel_width x panel_height pixels,
// under `caption` (the run's model and shape; none when empty). Text is XML-escaped; a chart
// without points shows "no data".
std::string render_svg(const std::vector<LineChart>& charts, int columns = 0, const std::string& caption = "",
                       int panel_width = 520, int panel_height = 360);

}  // namespace anvil
