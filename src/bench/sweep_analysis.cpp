// Sweep analysis: per-run summaries, the three recommendations and the Pareto front.
#include "bench/sweep_analysis.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace anvil {
namespace {

std::string loads_text(const std::vector<SweepPoint>& points) {
  std::vector<int64_t> loads;
  for (const SweepPoint& p : points) loads.push_back(p.load);
  return fmt::format("{}", fmt::join(loads, ","));
}

}  // namespace

std::vector<ParetoPoint> pareto_front(std::span<const ParetoPoint> points) {
  std::vector<ParetoPoint> front;
  for (const ParetoPoint& p : points) {
    const bool dominated = std::any_of(points.begin(), points.end(), [&](const ParetoPoint& q) {
      return q.throughput_per_device >= p.throughput_per_device && q.per_user_tok_s >= p.per_user_tok_s &&
             (q.throughput_per_device > p.throughput_per_device || q.per_user_tok_s > p.per_user_tok_s);
    });
    if (!dominated) front.push_back(p);
  }
  std::stable_sort(front.begin(), front.end(), [](const ParetoPoint& a, const ParetoPoint& b) {
    return a.throughput_per_device < b.throughput_per_device;
  });
  return front;
}

SweepAnalysis analyze_sweep(std::span<const SweepOutcome> outcomes, std::optional<int64_t> cost_at_load) {
  SweepAnalysis a;
  a.runs.resize(outcomes.size());
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const SweepOutcome& o = outcomes[i];
    SweepRunSummary& s = a.runs[i];
    const std::string who = fmt::format("run {} ({})", o.run_id, o.label);
    if (!o.ok) {
      a.notes.push_back(fmt::format("{} failed: {}", who, o.error));
      continue;
    }
    if (o.points.empty()) {
      a.notes.push_back(fmt::format("{} has no measurements", who));
      continue;
    }
    for (const SweepPoint& p : o.points) {
      if (!s.peak || p.output_tok_s > s.peak->output_tok_s) s.peak = p;
      if (p.load == 1 && p.tpot_ms_median && *p.tpot_ms_median > 0) {
        s.ms_per_token_1_user = p.tpot_ms_median;
        s.per_user_tok_s_1_user = p.per_user_tok_s;
      }
      a.points.push_back({i, p.load, p.output_tok_s / std::max(1, o.devices), p.per_user_tok_s});
    }
    if (!s.ms_per_token_1_user)
      a.notes.push_back(fmt::format("{}: no measurement at 1 user (loads {}): left out of the latency ranking", who,
                                    loads_text(o.points)));

    std::vector<int64_t> loads;
    for (const SweepPoint& p : o.points) loads.push_back(p.load);
    const std::optional<int64_t> load = cost_quote_load(loads, cost_at_load);
    if (!o.usd_per_hour) {
      a.notes.push_back(fmt::format("{}: no price (price_per_hour or instance): left out of the cost ranking", who));
    } else if (!load) {
      a.notes.push_back(fmt::format("{}: load {} was not measured (loads {}): left out of the cost ranking", who,
                                    cost_at_load.value_or(0), loads_text(o.points)));
    } else {
      const SweepPoint& p = *std::find_if(o.points.begin(), o.points.end(), [&](const SweepPoint& q) { return q.load == *load; });
      s.cost = quote_cost(*o.usd_per_hour, p.load, p.output_tok_s);
      if (!s.cost) a.notes.push_back(fmt::format("{}: no output tokens at load {}: left out of the cost ranking", who, p.load));
    }

    if (s.cost && (!a.most_cost_effective || s.cost->usd_per_million_output_tokens < a.most_cost_effective->value))
      a.most_cost_effective = SweepPick{i, s.cost->load, s.cost->usd_per_million_output_tokens};
    if (s.peak->output_tok_s > 0 && (!a.highest_throughput || s.peak->output_tok_s > a.highest_throughput->value))
      a.highest_throughput = SweepPick{i, s.peak->load, s.peak->output_tok_s};
    if (s.ms_per_token_1_user && (!a.lowest_latency || *s.ms_per_token_1_user < a.lowest_latency->value))
      a.lowest_latency = SweepPick{i, 1, *s.ms_per_token_1_user};
  }
  a.pareto_front = pareto_front(a.points);
  return a;
}

}  // namespace anvil
