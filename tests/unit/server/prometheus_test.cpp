// Prometheus text exposition: counters, gauges, histograms, label escaping, thread safety.
#include "server/prometheus.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace anvil::server {
namespace {

TEST(Prometheus, Numbers) {
  EXPECT_EQ(prometheus_number(3), "3");
  EXPECT_EQ(prometheus_number(0.25), "0.25");
  EXPECT_EQ(prometheus_number(1.0 / 0.0), "+Inf");
  EXPECT_EQ(prometheus_number(-1.0 / 0.0), "-Inf");
  EXPECT_EQ(prometheus_number(0.0 / 0.0), "NaN");
  EXPECT_EQ(prometheus_escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(Prometheus, CounterWithLabels) {
  MetricsRegistry registry;
  CounterFamily& requests = registry.add_counter("anvil_requests_total", "Requests by status", {"status"});
  requests.inc({"200"});
  requests.inc({"200"});
  requests.inc({"400"}, 3);
  requests.inc({"400"}, -1);  // ignored: counters only go up
  EXPECT_EQ(requests.value({"200"}), 2);
  EXPECT_EQ(registry.render(),
            "# HELP anvil_requests_total Requests by status\n"
            "# TYPE anvil_requests_total counter\n"
            "anvil_requests_total{status=\"200\"} 2\n"
            "anvil_requests_total{status=\"400\"} 3\n");
  requests.advance_to({"200"}, 1);  // never backwards
  EXPECT_EQ(requests.value({"200"}), 2);
  requests.advance_to({"200"}, 5);
  EXPECT_EQ(requests.value({"200"}), 5);
}

TEST(Prometheus, UnlabelledFamiliesShowZeroBeforeTheFirstEvent) {
  MetricsRegistry registry;
  registry.add_counter("c_total", "a counter");
  registry.add_gauge("g", "a gauge");
  registry.add_histogram("h_seconds", "a histogram", {0.1, 1});
  const std::string text = registry.render();
  EXPECT_NE(text.find("c_total 0\n"), std::string::npos);
  EXPECT_NE(text.find("g 0\n"), std::string::npos);
  EXPECT_NE(text.find("h_seconds_bucket{le=\"+Inf\"} 0\n"), std::string::npos);
  EXPECT_NE(text.find("h_seconds_count 0\n"), std::string::npos);
}

TEST(Prometheus, Gauge) {
  MetricsRegistry registry;
  GaugeFamily& running = registry.add_gauge("anvil_num_requests_running", "Running \\ requests\nnow");
  running.set(4);
  running.add({}, -1);
  EXPECT_EQ(running.value(), 3);
  EXPECT_EQ(registry.render(),
            "# HELP anvil_num_requests_running Running \\\\ requests\\nnow\n"
            "# TYPE anvil_num_requests_running gauge\n"
            "anvil_num_requests_running 3\n");
}

TEST(Prometheus, HistogramBucketsAreCumulative) {
  MetricsRegistry registry;
  HistogramFamily& ttft = registry.add_histogram("ttft_seconds", "TTFT", {0.5, 0.1, 1.0}, {"model"});
  ttft.observe({"m"}, 0.05);
  ttft.observe({"m"}, 0.1);  // on the bound: le is inclusive
  ttft.observe({"m"}, 0.7);
  ttft.observe({"m"}, 30);
  EXPECT_EQ(ttft.count({"m"}), 4u);
  EXPECT_DOUBLE_EQ(ttft.sum({"m"}), 30.85);
  EXPECT_EQ(registry.render(),
            "# HELP ttft_seconds TTFT\n"
            "# TYPE ttft_seconds histogram\n"
            "ttft_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
            "ttft_seconds_bucket{model=\"m\",le=\"0.5\"} 2\n"
            "ttft_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
            "ttft_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
            "ttft_seconds_sum{model=\"m\"} 30.85\n"
            "ttft_seconds_count{model=\"m\"} 4\n");
}

TEST(Prometheus, ConcurrentUpdates) {
  MetricsRegistry registry;
  CounterFamily& counter = registry.add_counter("c_total", "c", {"k"});
  HistogramFamily& histogram = registry.add_histogram("h", "h", {1, 2});
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        counter.inc({t % 2 ? "odd" : "even"});
        histogram.observe(i % 3);
        if (i % 100 == 0) (void)registry.render();
      }
    });
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter.value({"odd"}) + counter.value({"even"}), 8000);
  EXPECT_EQ(histogram.count(), 8000u);
}

}  // namespace
}  // namespace anvil::server
