// Plot files: every chart is written as SVG (exact, scalable) and as PNG beside it (for chat
// tools, issue trackers and slides that do not show SVG).
#pragma once

#include <string>
#include <vector>

#include "anvil/status.h"

namespace anvil {

// Renders SVG text to a PNG file at `scale` x its pixel size (librsvg + cairo). Fails with a
// message on SVG that does not parse or a file that cannot be written.
Status render_svg_to_png(const std::string& svg, const std::string& png_path, double scale = 2.0);

// Writes `svg` to svg_path (which must end in .svg) and the PNG to the same path ending in .png.
// Returns both paths, SVG first.
Result<std::vector<std::string>> write_plot_files(const std::string& svg_path, const std::string& svg);

}  // namespace anvil
