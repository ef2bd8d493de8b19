// Sweep analysis on synthetic results with known answers: cost quotes, the three
// recommendations, the Pareto front, and the points read from bench results.
#include "bench/sweep_analysis.h"

#include <gtest/gtest.h>

#include "bench/bench_stats.h"
#include "bench/cost_model.h"
#include "bench/sweep_record.h"

namespace anvil {
namespace {

SweepPoint point(int64_t load, double tok_s, double per_user, std::optional<double> tpot_ms) {
  SweepPoint p;
  p.load = load;
  p.output_tok_s = tok_s;
  p.per_user_tok_s = per_user;
  p.tpot_ms_median = tpot_ms;
  return p;
}

SweepOutcome outcome(const std::string& id, std::optional<double> price, std::vector<SweepPoint> points) {
  SweepOutcome o;
  o.run_id = id;
  o.label = id;
  o.usd_per_hour = price;
  o.ok = true;
  o.points = std::move(points);
  return o;
}

TEST(CostModel, PricePerMillionTokens) {
  // $1.55/hour at 71 tok/s: 71 * 3600 = 255,600 tokens per hour -> $6.06 per million.
  std::optional<CostQuote> q = quote_cost(1.55, 4, 71.0);
  ASSERT_TRUE(q);
  EXPECT_NEAR(q->usd_per_million_output_tokens, 6.06, 0.005);
  EXPECT_NEAR(q->usd_per_million_output_tokens, usd_per_million_tokens(1.55, 71.0), 1e-12);
  EXPECT_NEAR(q->output_tokens_per_usd, 71.0 * 3600 / 1.55, 1e-9);
  EXPECT_NEAR(q->output_tokens_per_usd * q->usd_per_million_output_tokens, 1e6, 1e-6);
  EXPECT_EQ(q->load, 4);
  EXPECT_FALSE(quote_cost(0, 1, 71.0));
  EXPECT_FALSE(quote_cost(1.55, 1, 0.0));
  EXPECT_EQ(output_tokens_per_usd(1.0, 0.0), 0.0);
}

TEST(CostModel, QuoteLoadIsTheRequestedOrTheHighestMeasured) {
  const std::vector<int64_t> loads = {1, 5, 20, 10};
  EXPECT_EQ(cost_quote_load(loads, std::nullopt), 20);
  EXPECT_EQ(cost_quote_load(loads, 5), 5);
  EXPECT_FALSE(cost_quote_load(loads, 4));
  EXPECT_FALSE(cost_quote_load(std::vector<int64_t>{}, std::nullopt));
}

// Three deployments with known answers:
//   cheap:  $0.50/h, peaks at 200 tok/s (load 8): $0.694/1M, slow per user (40 ms/token at 1 user)
//   fast:   $4.00/h, 1 user at 10 ms/token, peaks at 600 tok/s (load 8): $1.85/1M
//   free:   no price, 1 user at 8 ms/token but only 100 tok/s at most
std::vector<SweepOutcome> three_deployments() {
  return {outcome("cheap", 0.5, {point(1, 25, 25, 40.0), point(8, 200, 25, 40.0)}),
          outcome("fast", 4.0, {point(1, 100, 100, 10.0), point(8, 600, 75, 13.3)}),
          outcome("free", std::nullopt, {point(1, 125, 125, 8.0), point(2, 100, 50, 20.0)})};
}

TEST(SweepAnalysis, PicksTheThreeRecommendations) {
  const std::vector<SweepOutcome> outcomes = three_deployments();
  const SweepAnalysis a = analyze_sweep(outcomes, std::nullopt);
  ASSERT_TRUE(a.most_cost_effective && a.highest_throughput && a.lowest_latency);
  EXPECT_EQ(a.most_cost_effective->run, 0u);
  EXPECT_EQ(a.most_cost_effective->load, 8);
  EXPECT_NEAR(a.most_cost_effective->value, 0.5 / (200 * 3600.0) * 1e6, 1e-9);
  EXPECT_EQ(a.highest_throughput->run, 1u);
  EXPECT_EQ(a.highest_throughput->load, 8);
  EXPECT_DOUBLE_EQ(a.highest_throughput->value, 600);
  EXPECT_EQ(a.lowest_latency->run, 2u);  // unpriced runs still rank on latency and throughput
  EXPECT_DOUBLE_EQ(a.lowest_latency->value, 8.0);
  ASSERT_EQ(a.runs.size(), 3u);
  EXPECT_FALSE(a.runs[2].cost);
  EXPECT_DOUBLE_EQ(*a.runs[1].ms_per_token_1_user, 10.0);
  EXPECT_DOUBLE_EQ(*a.runs[1].per_user_tok_s_1_user, 100.0);
  ASSERT_EQ(a.notes.size(), 1u);
  EXPECT_NE(a.notes[0].find("run free (free): no price"), std::string::npos) << a.notes[0];
}

TEST(SweepAnalysis, CostAtAChosenConcurrency) {
  const std::vector<SweepOutcome> outcomes = three_deployments();
  // At load 1: cheap costs 0.5 / (25 * 3600) * 1e6 = $5.56, fast 4 / (100 * 3600) * 1e6 = $11.1.
  const SweepAnalysis at1 = analyze_sweep(outcomes, 1);
  ASSERT_TRUE(at1.most_cost_effective);
  EXPECT_EQ(at1.most_cost_effective->run, 0u);
  EXPECT_EQ(at1.most_cost_effective->load, 1);
  EXPECT_NEAR(at1.runs[1].cost->usd_per_million_output_tokens, 4.0 / (100 * 3600.0) * 1e6, 1e-9);
  // Nobody priced measured load 2: no pick, and each priced run says why it is left out.
  const SweepAnalysis at2 = analyze_sweep(outcomes, 2);
  EXPECT_FALSE(at2.most_cost_effective);
  int not_measured = 0;
  for (const std::string& note : at2.notes) not_measured += note.find("load 2 was not measured") != std::string::npos;
  EXPECT_EQ(not_measured, 2);
}

TEST(SweepAnalysis, FailedRunsAndMissingSingleUserPointsAreLeftOut) {
  std::vector<SweepOutcome> outcomes = three_deployments();
  SweepOutcome failed;
  failed.run_id = failed.label = "broken";
  failed.error = "the server command exited with code 1";
  outcomes.push_back(failed);
  outcomes.push_back(outcome("big-batch", 1.0, {point(4, 1000, 10, 100.0)}));
  const SweepAnalysis a = analyze_sweep(outcomes, std::nullopt);
  EXPECT_EQ(a.highest_throughput->run, 4u);
  EXPECT_EQ(a.lowest_latency->run, 2u);
  bool failed_note = false, latency_note = false;
  for (const std::string& note : a.notes) {
    failed_note |= note.find("run broken (broken) failed: the server command exited") != std::string::npos;
    latency_note |= note.find("big-batch") != std::string::npos && note.find("latency ranking") != std::string::npos;
  }
  EXPECT_TRUE(failed_note);
  EXPECT_TRUE(latency_note);
  for (const ParetoPoint& p : a.points) EXPECT_NE(p.run, 3u);
}

TEST(SweepAnalysis, ParetoFrontOfKnownPoints) {
  // (throughput per device, per-user speed) points: cheap (25,25) (200,25); fast (100,100)
  // (600,75); free (125,125) (100,50); big-batch (1000,10). The front is free@1 (125,125),
  // fast@8 (600,75), big-batch@4 (1000,10); every other point has one of them above and right.
  std::vector<SweepOutcome> outcomes = three_deployments();
  outcomes.push_back(outcome("big-batch", 1.0, {point(4, 1000, 10, 100.0)}));
  const SweepAnalysis a = analyze_sweep(outcomes, std::nullopt);
  EXPECT_EQ(a.points.size(), 7u);
  ASSERT_EQ(a.pareto_front.size(), 3u);
  EXPECT_EQ(a.pareto_front[0].run, 2u);
  EXPECT_EQ(a.pareto_front[0].load, 1);
  EXPECT_EQ(a.pareto_front[1].run, 1u);
  EXPECT_EQ(a.pareto_front[1].load, 8);
  EXPECT_EQ(a.pareto_front[2].run, 3u);
  EXPECT_EQ(a.pareto_front[2].load, 4);
}

TEST(SweepAnalysis, ParetoFrontSortsAndKeepsTies) {
  const std::vector<ParetoPoint> points = {
      {0, 1, 10, 100}, {0, 2, 18, 90}, {1, 1, 18, 80},  // (18, 80) is dominated by (18, 90)
      {1, 4, 30, 40},  {2, 1, 30, 40},                  // an exact tie: both stay
      {2, 8, 25, 20},                                   // dominated by (30, 40)
  };
  const std::vector<ParetoPoint> front = pareto_front(points);
  ASSERT_EQ(front.size(), 4u);
  EXPECT_DOUBLE_EQ(front[0].throughput_per_device, 10);
  EXPECT_DOUBLE_EQ(front[1].throughput_per_device, 18);
  EXPECT_DOUBLE_EQ(front[1].per_user_tok_s, 90);
  EXPECT_DOUBLE_EQ(front[2].throughput_per_device, 30);
  EXPECT_DOUBLE_EQ(front[3].throughput_per_device, 30);
  EXPECT_TRUE(pareto_front(std::vector<ParetoPoint>{}).empty());
}

TEST(SweepAnalysis, ThroughputPerDeviceDividesByTensorParallelDegree) {
  SweepOutcome o = outcome("tp2", 2.0, {point(1, 300, 300, 3.3)});
  o.devices = 2;
  const SweepAnalysis a = analyze_sweep(std::vector<SweepOutcome>{o}, std::nullopt);
  ASSERT_EQ(a.points.size(), 1u);
  EXPECT_DOUBLE_EQ(a.points[0].throughput_per_device, 150);
  EXPECT_DOUBLE_EQ(a.highest_throughput->value, 300);  // the deployment's throughput
}

TEST(SweepRecord, PointsFromLatencyAndServeResults) {
  const nlohmann::json latency = nlohmann::json::parse(R"([
    {"batch_size": 1, "avg_latency_s": 2.0, "output_tok_s": 64.0, "tpot_ms_p50": 15.0, "ttft_ms_p50": 100.0},
    {"batch_size": 4, "avg_latency_s": 4.0, "output_tok_s": 128.0, "tpot_ms_p50": 30.0, "ttft_ms_p50": 200.0}])");
  const std::vector<SweepPoint> in_process = points_from_latency_results(latency, 128);
  ASSERT_EQ(in_process.size(), 2u);
  EXPECT_EQ(in_process[1].load, 4);
  EXPECT_DOUBLE_EQ(in_process[0].per_user_tok_s, 64.0);   // 128 tokens / 2 s
  EXPECT_DOUBLE_EQ(in_process[1].per_user_tok_s, 32.0);   // 128 tokens / 4 s
  EXPECT_DOUBLE_EQ(*in_process[1].tpot_ms_median, 30.0);

  const nlohmann::json serve = nlohmann::json::parse(R"([
    {"concurrency": 1, "completed": 10, "output_throughput": 59.5, "tpot_ms_median": 16.8, "ttft_ms_median": 50},
    {"concurrency": 20, "completed": 0, "output_throughput": 0.0},
    {"concurrency": 5, "completed": 10, "output_throughput": 250.0, "tpot_ms_median": 20.0}])");
  const std::vector<SweepPoint> served = points_from_serve_results(serve);
  ASSERT_EQ(served.size(), 2u);  // concurrency 20 finished nothing
  EXPECT_EQ(served[1].load, 5);
  EXPECT_NEAR(served[0].per_user_tok_s, 1000.0 / 16.8, 1e-9);
  EXPECT_DOUBLE_EQ(served[1].per_user_tok_s, 50.0);
  EXPECT_FALSE(served[1].ttft_ms_median);

  // Points survive the record's JSON.
  const std::vector<SweepPoint> back = sweep_points_from_json(sweep_points_json(served));
  ASSERT_EQ(back.size(), served.size());
  EXPECT_DOUBLE_EQ(back[0].per_user_tok_s, served[0].per_user_tok_s);
  EXPECT_EQ(back[1].load, 5);
}

}  // namespace
}  // namespace anvil
