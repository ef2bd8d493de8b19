// Serving metrics on synthetic timelines with known answers (vLLM's definitions), and --slo parsing.
#include "bench/serve_metrics.h"

#include <gtest/gtest.h>

#include <vector>

namespace anvil {
namespace {

// A successful request sent at `start_s`: chunks at `chunks` (seconds after the send), the
// response over at `e2el_s`, with the server's usage.
ServeRequestRecord request(std::vector<double> chunks, double e2el_s, int64_t prompt_tokens, int64_t output_tokens,
                           double start_s = 0) {
  ServeRequestRecord r;
  r.start_s = start_s;
  r.chunk_arrivals_s = std::move(chunks);
  r.e2el_s = e2el_s;
  r.usage_prompt_tokens = prompt_tokens;
  r.usage_completion_tokens = output_tokens;
  r.success = true;
  return r;
}

ServiceLevelObjectives slo(std::optional<double> ttft, std::optional<double> tpot, std::optional<double> e2el) {
  ServiceLevelObjectives s;
  s.ttft_ms = ttft;
  s.tpot_ms = tpot;
  s.e2el_ms = e2el;
  return s;
}

ServeRequestRecord failed(const std::string& error) {
  ServeRequestRecord r;
  r.error = error;
  r.e2el_s = 0.01;
  return r;
}

TEST(ServeMetrics, TtftTpotItlE2elOfOneRequest) {
  // First chunk after 100 ms, then one token every 20 ms: 5 tokens, last at 180 ms, end at 181 ms.
  const ServeRequestMetrics m = request_metrics(request({0.100, 0.120, 0.140, 0.160, 0.180}, 0.181, 16, 5));
  EXPECT_NEAR(m.ttft_ms, 100.0, 1e-9);
  ASSERT_TRUE(m.tpot_ms.has_value());
  EXPECT_NEAR(*m.tpot_ms, (181.0 - 100.0) / 4.0, 1e-9);  // (e2el - ttft) / (output_tokens - 1)
  ASSERT_EQ(m.itl_ms.size(), 4u);
  for (double itl : m.itl_ms) EXPECT_NEAR(itl, 20.0, 1e-9);
  EXPECT_NEAR(m.e2el_ms, 181.0, 1e-9);
  EXPECT_EQ(m.prompt_tokens, 16);
  EXPECT_EQ(m.output_tokens, 5);
  EXPECT_TRUE(m.usage_from_server);
}

TEST(ServeMetrics, OneTokenOutputHasNoTpotAndStaysOutOfTheMean) {
  const ServeRequestMetrics one = request_metrics(request({0.05}, 0.06, 8, 1));
  EXPECT_FALSE(one.tpot_ms.has_value());
  EXPECT_TRUE(one.itl_ms.empty());
  const std::vector<ServeRequestRecord> records = {request({0.05}, 0.06, 8, 1),
                                                   request({0.1, 0.2, 0.3}, 0.3, 8, 3)};
  const ServeRunMetrics run = compute_run_metrics(records, 1.0, std::vector<double>{50}, {});
  EXPECT_NEAR(run.tpot_ms.mean, 100.0, 1e-9);  // only the 3-token request: (300 - 100) / 2
  EXPECT_NEAR(run.ttft_ms.mean, 75.0, 1e-9);   // both requests have a TTFT
}

TEST(ServeMetrics, ChunkCarryingSeveralTokensIsOneItlGap) {
  // 6 tokens in 3 chunks (1 + 3 + 2 tokens): ITL has 2 entries, the gaps as they were; TPOT
  // still spreads the decode time over all 5 tokens after the first.
  const ServeRequestMetrics m = request_metrics(request({0.1, 0.19, 0.25}, 0.25, 4, 6));
  ASSERT_EQ(m.itl_ms.size(), 2u);
  EXPECT_NEAR(m.itl_ms[0], 90.0, 1e-9);
  EXPECT_NEAR(m.itl_ms[1], 60.0, 1e-9);
  ASSERT_TRUE(m.tpot_ms.has_value());
  EXPECT_NEAR(*m.tpot_ms, 150.0 / 5.0, 1e-9);
}

TEST(ServeMetrics, WithoutUsageCountsContentChunks) {
  ServeRequestRecord r = request({0.1, 0.2, 0.3, 0.4}, 0.4, 0, 0);
  r.usage_prompt_tokens.reset();
  r.usage_completion_tokens.reset();
  r.known_prompt_tokens = 12;  // a token-id prompt's length
  const ServeRequestMetrics m = request_metrics(r);
  EXPECT_FALSE(m.usage_from_server);
  EXPECT_EQ(m.output_tokens, 4);
  EXPECT_EQ(m.prompt_tokens, 12);
  EXPECT_NEAR(*m.tpot_ms, 100.0, 1e-9);
  const std::vector<ServeRequestRecord> records = {r, request({0.1}, 0.1, 3, 1)};
  const ServeRunMetrics run = compute_run_metrics(records, 1.0, {}, {});
  EXPECT_FALSE(run.usage_from_server);  // one request lacked usage
  EXPECT_EQ(run.total_output_tokens, 5);
  EXPECT_EQ(run.total_input_tokens, 15);
  // Usage wins over the chunk count when the server sends it.
  EXPECT_EQ(request_metrics(request({0.1, 0.2}, 0.2, 5, 7)).output_tokens, 7);
}

TEST(ServeMetrics, ThroughputOverTheRunDurationCountsOnlySuccesses) {
  const std::vector<ServeRequestRecord> records = {request({0.1, 0.2}, 0.2, 10, 20), request({0.1, 0.2}, 0.2, 30, 40),
                                                   failed("HTTP 500: boom")};
  const ServeRunMetrics run = compute_run_metrics(records, 2.0, {}, {});
  EXPECT_EQ(run.completed, 2);
  EXPECT_EQ(run.failed, 1);
  EXPECT_EQ(run.total_input_tokens, 40);
  EXPECT_EQ(run.total_output_tokens, 60);
  EXPECT_DOUBLE_EQ(run.request_throughput, 1.0);
  EXPECT_DOUBLE_EQ(run.output_throughput, 30.0);
  EXPECT_DOUBLE_EQ(run.total_token_throughput, 50.0);
  ASSERT_EQ(run.errors.size(), 1u);
  EXPECT_EQ(run.errors[0].first, "HTTP 500: boom");
  EXPECT_EQ(run.errors[0].second, 1);
  EXPECT_FALSE(run.goodput.has_value());  // no SLO
}

TEST(ServeMetrics, PercentilesMedianAndStdFollowNumpy) {
  std::vector<ServeRequestRecord> records;
  for (double ttft : {0.010, 0.020, 0.030, 0.040}) records.push_back(request({ttft}, ttft, 1, 1));
  const std::vector<double> percentiles = {50, 90, 99, 99.9};
  const ServeRunMetrics run = compute_run_metrics(records, 1.0, percentiles, {});
  EXPECT_NEAR(run.ttft_ms.mean, 25.0, 1e-9);
  EXPECT_NEAR(run.ttft_ms.median, 25.0, 1e-9);
  EXPECT_NEAR(run.ttft_ms.std, 11.180339887498949, 1e-9);  // numpy.std([10,20,30,40])
  ASSERT_EQ(run.ttft_ms.percentiles.size(), 4u);
  EXPECT_NEAR(run.ttft_ms.percentiles[1].second, 37.0, 1e-9);  // numpy.percentile(.., 90)
  EXPECT_NEAR(run.ttft_ms.percentiles[2].second, 39.7, 1e-9);
  const nlohmann::json j = run_metrics_json(run);
  for (const char* key : {"ttft_ms_mean", "ttft_ms_median", "ttft_ms_std", "ttft_ms_p50", "ttft_ms_p90", "ttft_ms_p99",
                          "ttft_ms_p99.9", "tpot_ms_p99", "itl_ms_p99", "e2el_ms_p99", "goodput"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_TRUE(j["goodput"].is_null());
  EXPECT_EQ(percentile_key(99), "p99");
  EXPECT_EQ(percentile_key(99.9), "p99.9");
}

TEST(ServeMetrics, GoodputCountsRequestsMeetingEveryBound) {
  // a: ttft 100, tpot 20, e2el 180. b: ttft 300, tpot 20, e2el 380. c: ttft 100, tpot 60, e2el 340.
  const std::vector<ServeRequestRecord> records = {
      request({0.1, 0.12, 0.14, 0.16, 0.18}, 0.18, 1, 5), request({0.3, 0.32, 0.34, 0.36, 0.38}, 0.38, 1, 5),
      request({0.1, 0.16, 0.22, 0.28, 0.34}, 0.34, 1, 5), request({0.125}, 0.125, 1, 1) /* one token: no TPOT */};
  auto good = [&](const ServiceLevelObjectives& objectives) {
    const ServeRunMetrics run = compute_run_metrics(records, 2.0, {}, objectives);
    EXPECT_TRUE(run.goodput.has_value());
    EXPECT_DOUBLE_EQ(*run.goodput, static_cast<double>(*run.good_requests) / 2.0);
    return *run.good_requests;
  };
  EXPECT_EQ(good(slo(200.0, {}, {})), 3);    // b misses
  EXPECT_EQ(good(slo({}, 30.0, {})), 3);     // c misses; the one-token request passes
  EXPECT_EQ(good(slo({}, {}, 350.0)), 3);    // b misses
  EXPECT_EQ(good(slo({}, {}, 125.0)), 1);    // bounds are inclusive: the one-token request (125 ms) passes
  EXPECT_EQ(good(slo(200.0, 30.0, {})), 2);  // every bound must hold
  EXPECT_EQ(good(slo(1.0, {}, {})), 0);
}

TEST(ServeMetrics, EmptyRunReportsZeros) {
  const ServeRunMetrics run = compute_run_metrics({}, 0.0, std::vector<double>{99}, slo(10.0, {}, {}));
  EXPECT_EQ(run.completed, 0);
  EXPECT_EQ(run.request_throughput, 0.0);
  EXPECT_EQ(run.ttft_ms.mean, 0.0);
  EXPECT_EQ(*run.goodput, 0.0);
  EXPECT_FALSE(run.usage_from_server);
}

TEST(ServeMetrics, RecordJsonHasTheJsonlFields) {
  ServeRequestRecord r = request({0.1, 0.2}, 0.25, 7, 2, 1.5);
  r.index = 3;
  const nlohmann::json j = request_record_json(r, 4);
  EXPECT_EQ(j["concurrency"], 4);
  EXPECT_EQ(j["request_index"], 3);
  EXPECT_NEAR(j["start_offset_ms"].get<double>(), 1500.0, 1e-9);
  EXPECT_NEAR(j["ttft_ms"].get<double>(), 100.0, 1e-9);
  EXPECT_NEAR(j["tpot_ms"].get<double>(), 150.0, 1e-9);
  EXPECT_EQ(j["itl_ms"].size(), 1u);
  EXPECT_EQ(j["prompt_tokens"], 7);
  EXPECT_EQ(j["output_tokens"], 2);
  EXPECT_TRUE(j["success"].get<bool>());
  EXPECT_TRUE(j["error"].is_null());
  const nlohmann::json f = request_record_json(failed("HTTP 503: busy"), 1);
  EXPECT_FALSE(f["success"].get<bool>());
  EXPECT_EQ(f["error"], "HTTP 503: busy");
  EXPECT_TRUE(f["ttft_ms"].is_null());
}

TEST(ServeSlo, ParsesAndRejects) {
  Result<ServiceLevelObjectives> slo = parse_slo("ttft:500,tpot:50,e2el:2000");
  ASSERT_TRUE(slo) << slo.status().message();
  EXPECT_EQ(*slo->ttft_ms, 500.0);
  EXPECT_EQ(*slo->tpot_ms, 50.0);
  EXPECT_EQ(*slo->e2el_ms, 2000.0);
  Result<ServiceLevelObjectives> partial = parse_slo("tpot:12.5");
  ASSERT_TRUE(partial);
  EXPECT_FALSE(partial->ttft_ms.has_value());
  EXPECT_EQ(*partial->tpot_ms, 12.5);
  for (const char* bad : {"", "ttft", "ttft:", "ttft:abc", "ttft:-5", "ttft:0", "itl:5", "ttft:5,ttft:6", "ttft:5,",
                          "ttft:5ms", "ttft:inf"}) {
    Result<ServiceLevelObjectives> r = parse_slo(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.status().message().find("--slo"), std::string::npos) << r.status().message();
  }
}

}  // namespace
}  // namespace anvil
