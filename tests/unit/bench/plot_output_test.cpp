// Plot files: the SVG renders to a PNG of the right size; bad SVG and bad paths give errors.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "bench/plot_output.h"
#include "bench/svg_plot.h"

namespace anvil {
namespace {

// Width and height from a PNG's IHDR chunk (bytes 16..23, big-endian).
std::pair<uint32_t, uint32_t> png_size(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char header[24] = {};
  in.read(reinterpret_cast<char*>(header), sizeof(header));
  EXPECT_EQ(std::string(reinterpret_cast<char*>(header) + 1, 3), "PNG");
  auto be32 = [&](int at) {
    return (uint32_t(header[at]) << 24) | (uint32_t(header[at + 1]) << 16) | (uint32_t(header[at + 2]) << 8) |
           uint32_t(header[at + 3]);
  };
  return {be32(16), be32(20)};
}

TEST(PlotOutput, WritesSvgAndPngOfTheChart) {
  const std::filesystem::path dir = std::filesystem::temp_directory_path() / "anvil_plot_output_test";
  std::filesystem::create_directories(dir);
  LineChart chart;
  chart.title = "output tok/s";
  chart.x_label = "batch size";
  chart.y_label = "tok/s";
  chart.series.push_back({"anvil", {1, 2, 4, 8}, {60, 110, 190, 240}});
  const std::string svg = render_svg({chart}, 0, "caption", 520, 360);
  Result<std::vector<std::string>> paths = write_plot_files((dir / "latency.svg").string(), svg);
  ASSERT_TRUE(paths) << paths.status().message();
  ASSERT_EQ(paths->size(), 2u);
  EXPECT_EQ((*paths)[1], (dir / "latency.png").string());
  EXPECT_GT(std::filesystem::file_size((*paths)[0]), 100u);
  const auto [w, h] = png_size((*paths)[1]);
  EXPECT_GE(w, 1000u);  // 520 px panel at scale 2
  EXPECT_GE(h, 700u);
  std::filesystem::remove_all(dir);
}

TEST(PlotOutput, BadInputIsAnError) {
  const std::string dir = std::filesystem::temp_directory_path().string();
  EXPECT_FALSE(render_svg_to_png("<svg not closed", dir + "/anvil_bad.png"));
  EXPECT_FALSE(write_plot_files(dir + "/plot.txt", "<svg/>"));
  const std::string svg = render_svg({}, 0, "", 100, 100);
  EXPECT_FALSE(render_svg_to_png(svg, "/nonexistent-dir/x.png"));
}

}  // namespace
}  // namespace anvil
