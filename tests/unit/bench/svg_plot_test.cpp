// SVG charts: well-formed XML, one group per series, escaped text, ticks, degenerate input.
#include "bench/svg_plot.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

namespace anvil {
namespace {

// A small well-formedness check: every element closes in order, attributes are quoted.
bool well_formed(const std::string& xml, std::string& why) {
  std::vector<std::string> open;
  size_t i = 0;
  while ((i = xml.find('<', i)) != std::string::npos) {
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) {
      why = "unterminated tag";
      return false;
    }
    std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) {
      why = "empty tag";
      return false;
    }
    if (tag[0] == '?' || tag[0] == '!') continue;
    size_t quotes = 0;
    for (char ch : tag) quotes += ch == '"';
    if (quotes % 2) {
      why = "unbalanced quotes in <" + tag + ">";
      return false;
    }
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) {
        why = "</" + name + "> closes " + (open.empty() ? std::string("nothing") : "<" + open.back() + ">");
        return false;
      }
      open.pop_back();
      continue;
    }
    if (tag.back() == '/') continue;
    open.push_back(tag.substr(0, tag.find_first_of(" \n\t")));
  }
  if (!open.empty()) {
    why = "<" + open.back() + "> never closed";
    return false;
  }
  return true;
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t i = text.find(what); i != std::string::npos; i = text.find(what, i + 1)) ++n;
  return n;
}

LineChart latency_like_chart() {
  LineChart c;
  c.title = "Latency vs batch size <tiny & fast>";
  c.x_label = "batch size";
  c.y_label = "latency (s)";
  c.log2_x = true;
  c.series = {{"avg", {1, 2, 4, 8}, {0.5, 0.6, 0.9, 1.7}}, {"p99", {1, 2, 4, 8}, {0.55, 0.7, 1.0, 2.1}}};
  return c;
}

TEST(SvgPlot, ChartIsWellFormedWithOneGroupPerSeries) {
  LineChart throughput;
  throughput.title = "Output throughput";
  throughput.series = {{"tok/s", {1, 2, 4, 8}, {10, 19, 35, 60}}};
  const std::string svg = render_svg({latency_like_chart(), throughput}, 2, "run <A>");
  std::string why;
  EXPECT_TRUE(well_formed(svg, why)) << why;
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(count(svg, "<g class=\"series\""), 3u);
  EXPECT_EQ(count(svg, "<polyline"), 3u);
  EXPECT_EQ(count(svg, "<circle"), 12u);
  EXPECT_NE(svg.find("data-name=\"avg\""), std::string::npos);
  EXPECT_NE(svg.find("data-name=\"p99\""), std::string::npos);
  EXPECT_NE(svg.find("&lt;tiny &amp; fast&gt;"), std::string::npos);  // escaped title
  EXPECT_EQ(svg.find("<tiny"), std::string::npos);
  EXPECT_NE(svg.find(">batch size</text>"), std::string::npos);
  EXPECT_NE(svg.find(">latency (s)</text>"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(svg.find("inf"), std::string::npos);
  // Log2 x axis: ticks at the powers of two.
  for (const char* tick : {">1</text>", ">2</text>", ">4</text>", ">8</text>"})
    EXPECT_NE(svg.find(tick), std::string::npos) << tick;
  // Two 520 x 360 panels side by side under a 28-pixel caption.
  EXPECT_NE(svg.find("width=\"1040\" height=\"388\""), std::string::npos);
  EXPECT_NE(svg.find(">run &lt;A&gt;</text>"), std::string::npos);
}

TEST(SvgPlot, DegenerateInputsStillRender) {
  LineChart empty;
  empty.title = "nothing";
  LineChart one_point;
  one_point.log2_x = true;
  one_point.series = {{"only", {4}, {2.5}}};
  LineChart with_nan;
  with_nan.series = {{"gappy", {1, 2, 3}, {1.0, std::nan(""), 0.0}}};
  const std::string svg = render_svg({empty, one_point, with_nan});
  std::string why;
  EXPECT_TRUE(well_formed(svg, why)) << why;
  EXPECT_NE(svg.find("no data"), std::string::npos);
  EXPECT_EQ(svg.find("nan"), std::string::npos);
  EXPECT_EQ(count(svg, "<circle"), 3u);  // the NaN point is skipped
}

TEST(SvgPlot, NiceTicks) {
  EXPECT_EQ(nice_ticks(0, 7.3), (std::vector<double>{0, 2, 4, 6, 8}));
  const std::vector<double> unit = nice_ticks(0, 1);
  ASSERT_EQ(unit.size(), 6u);
  EXPECT_NEAR(unit[1], 0.2, 1e-12);
  EXPECT_NEAR(unit.back(), 1.0, 1e-12);
  EXPECT_EQ(nice_ticks(0, 100), (std::vector<double>{0, 20, 40, 60, 80, 100}));
  const std::vector<double> flat = nice_ticks(3, 3);
  EXPECT_GE(flat.size(), 2u);
  EXPECT_LE(flat.front(), 3.0);
  EXPECT_GE(flat.back(), 3.0);
}

}  // namespace
}  // namespace anvil
