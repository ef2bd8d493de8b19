// Benchmark reports: per-batch JSON figures on a synthetic timeline, Markdown, charts, comparison.
#include "bench/bench_report.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "test_paths.h"

namespace anvil {
namespace {

// Three iterations of batch size 2 at 1, 2 and 3 s; each request's first token at 100 ms and its
// 10th (last) at the iteration's end.
LatencyBatchResult synthetic_batch() {
  LatencyBatchResult b;
  b.batch_size = 2;
  b.output_len = 10;
  b.latencies_s = {1.0, 2.0, 3.0};
  for (double latency : b.latencies_s)
    for (int r = 0; r < 2; ++r) b.requests.push_back({0.1, latency, 8, 10});
  b.steps = 30;
  return b;
}

TEST(BenchReport, LatencyBatchJsonHasTheDocumentedFigures) {
  const nlohmann::json j = latency_batch_json(synthetic_batch(), 1.55);
  EXPECT_EQ(j["batch_size"], 2);
  EXPECT_EQ(j["iterations"], 3);
  EXPECT_DOUBLE_EQ(j["avg_latency_s"].get<double>(), 2.0);
  EXPECT_NEAR(j["std_latency_s"].get<double>(), 0.816496580927726, 1e-12);  // numpy.std([1,2,3])
  EXPECT_DOUBLE_EQ(j["p50_latency_s"].get<double>(), 2.0);
  EXPECT_NEAR(j["p90_latency_s"].get<double>(), 2.8, 1e-12);
  EXPECT_NEAR(j["p99_latency_s"].get<double>(), 2.98, 1e-12);
  EXPECT_DOUBLE_EQ(j["output_tok_s"].get<double>(), 10.0);  // 2 x 10 tokens / 2 s
  EXPECT_NEAR(j["ttft_ms_mean"].get<double>(), 100.0, 1e-9);
  // TPOT per request: (latency - 0.1) / 9, i.e. 0.1, 0.2111, 0.3222 s; mean 0.2111 s.
  EXPECT_NEAR(j["tpot_ms_mean"].get<double>(), (0.9 + 1.9 + 2.9) / 3 / 9 * 1e3, 1e-9);
  EXPECT_EQ(j["latencies_s"].size(), 3u);
  EXPECT_NEAR(j["usd_per_million_output_tokens"].get<double>(), 1.55 / 36000.0 * 1e6, 1e-9);
  for (const char* key : {"batch_size", "avg_latency_s", "std_latency_s", "p50_latency_s", "p90_latency_s",
                          "p99_latency_s", "output_tok_s", "ttft_ms_mean", "tpot_ms_mean"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_FALSE(latency_batch_json(synthetic_batch()).contains("usd_per_million_output_tokens"));
}

TEST(BenchReport, MarkdownAndCharts) {
  nlohmann::json results = nlohmann::json::array({latency_batch_json(synthetic_batch())});
  const std::string table = latency_markdown(results);
  EXPECT_NE(table.find("| batch | avg latency (s) |"), std::string::npos);
  EXPECT_NE(table.find("| 2 | 2.000 | 0.8165 | 2.000 | 2.800 | 2.980 | 10.0 | 100.0 | 211.1 |"), std::string::npos) << table;
  const std::vector<LineChart> charts = latency_charts(results);
  ASSERT_EQ(charts.size(), 3u);
  EXPECT_EQ(charts[0].series.size(), 4u);
  EXPECT_EQ(charts[0].series[0].x, std::vector<double>{2.0});
  EXPECT_EQ(charts[1].series[0].y, std::vector<double>{10.0});

  ThroughputResult t;
  t.name = "chat";
  t.input_len = 128;
  t.output_len = 128;
  t.num_prompts = t.completed = 4;
  t.requests_per_s = 0.5;
  t.output_tok_s = 64;
  const nlohmann::json tj = throughput_result_json(t);
  EXPECT_EQ(tj["scenario"], "chat");
  const std::string ttable = throughput_markdown(nlohmann::json::array({tj}));
  EXPECT_NE(ttable.find("| chat | 128/128 | 4 | 0.5 |"), std::string::npos) << ttable;
}

TEST(BenchReport, TimestampIsIsoUtc) {
  EXPECT_TRUE(std::regex_match(utc_timestamp(), std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)"))) << utc_timestamp();
}

nlohmann::json latency_report(std::vector<std::pair<int, double>> batches) {
  nlohmann::json results = nlohmann::json::array();
  for (auto [b, latency] : batches)
    results.push_back({{"batch_size", b}, {"avg_latency_s", latency}, {"output_tok_s", b * 10 / latency}});
  return {{"bench", "latency"}, {"results", results}};
}

TEST(BenchReport, CompareMatchesBatchSizesAndGivesRatios) {
  const nlohmann::json a = latency_report({{1, 1.0}, {2, 2.0}});
  const nlohmann::json b = latency_report({{2, 1.0}, {4, 3.0}});
  Result<std::vector<MetricComparison>> rows = compare_bench_reports(a, b);
  ASSERT_TRUE(rows) << rows.status().message();
  ASSERT_EQ(rows->size(), 2u);  // batch size 2 only: avg latency and output tok/s
  EXPECT_EQ((*rows)[0].key, "batch_size=2");
  EXPECT_EQ((*rows)[0].metric, "avg_latency_s");
  EXPECT_DOUBLE_EQ(*(*rows)[0].ratio, 0.5);
  EXPECT_EQ((*rows)[1].metric, "output_tok_s");
  EXPECT_DOUBLE_EQ(*(*rows)[1].ratio, 2.0);
  const std::string table = comparison_markdown(*rows, "a.json", "b.json");
  EXPECT_NE(table.find("| batch_size=2 | avg_latency_s | 2 | 1 | 0.500 | better |"), std::string::npos) << table;
  EXPECT_NE(table.find("| batch_size=2 | output_tok_s | 10 | 20 | 2.000 | better |"), std::string::npos) << table;

  EXPECT_FALSE(compare_bench_reports(a, latency_report({{8, 1.0}})));  // nothing shared
  nlohmann::json t = {{"bench", "throughput"}, {"results", nlohmann::json::array()}};
  Result<std::vector<MetricComparison>> mixed = compare_bench_reports(a, t);
  ASSERT_FALSE(mixed);
  EXPECT_NE(mixed.status().message().find("different benchmarks"), std::string::npos);
}

// Serve reports pair by concurrency and request rate; an unbounded level and "inf" read clearly.
TEST(BenchReport, CompareServeReportsByConcurrencyAndRate) {
  auto serve = [](double output_throughput, double ttft_p99) {
    return nlohmann::json{{"bench", "serve"},
                          {"results", {{{"concurrency", 8}, {"request_rate", "inf"},
                                        {"output_throughput", output_throughput}, {"ttft_ms_p99", ttft_p99}},
                                       {{"concurrency", 0}, {"request_rate", 4.0}, {"output_throughput", 1.0}}}}};
  };
  Result<std::vector<MetricComparison>> rows = compare_bench_reports(serve(100, 50), serve(110, 40));
  ASSERT_TRUE(rows) << rows.status().message();
  ASSERT_EQ(rows->size(), 3u);
  EXPECT_EQ((*rows)[0].key, "concurrency=8 rate=\"inf\"");
  EXPECT_EQ((*rows)[0].metric, "output_throughput");
  EXPECT_DOUBLE_EQ(*(*rows)[0].ratio, 1.1);
  EXPECT_TRUE((*rows)[0].higher_is_better);
  EXPECT_EQ((*rows)[1].metric, "ttft_ms_p99");
  EXPECT_FALSE((*rows)[1].higher_is_better);
  EXPECT_EQ((*rows)[2].key, "concurrency=unbounded rate=4");
}

TEST(BenchReport, ReadRejectsWhatIsNotAReport) {
  const std::filesystem::path dir = testing::scratch_dir("bench_report_test");
  ASSERT_TRUE(write_text_file((dir / "bad.json").string(), "{not json"));
  ASSERT_TRUE(write_text_file((dir / "other.json").string(), "{\"x\": 1}"));
  ASSERT_TRUE(write_text_file((dir / "good.json").string(), latency_report({{1, 1.0}}).dump()));
  EXPECT_FALSE(read_bench_report((dir / "bad.json").string()));
  EXPECT_FALSE(read_bench_report((dir / "other.json").string()));
  EXPECT_FALSE(read_bench_report((dir / "missing.json").string()));
  EXPECT_TRUE(read_bench_report((dir / "good.json").string()));
}

}  // namespace
}  // namespace anvil
