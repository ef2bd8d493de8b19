// Sampling pipeline (llama.cpp/vLLM order): penalties -> temperature -> top-k -> top-p -> min-p -> draw.
#include "engine/sampler/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>

#include "compute/cpu/vector_ops.h"

namespace anvil {

Status SamplingParams::validate() const {
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    return Status::error(fmt::format("temperature must be >= 0, got {}", temperature));
  if (!(top_p > 0.0f && top_p <= 1.0f)) return Status::error(fmt::format("top_p must be in (0, 1], got {}", top_p));
  if (!(min_p >= 0.0f && min_p <= 1.0f)) return Status::error(fmt::format("min_p must be in [0, 1], got {}", min_p));
  if (!(repetition_penalty > 0.0f) || !std::isfinite(repetition_penalty))
    return Status::error(fmt::format("repetition_penalty must be > 0, got {}", repetition_penalty));
  if (!std::isfinite(presence_penalty) || !std::isfinite(frequency_penalty))
    return Status::error("presence_penalty and frequency_penalty must be finite");
  return Status::ok();
}

int32_t argmax(std::span<const float> logits) {
  // Vectorized maximum, then its first index: same answer as the scan below when logits[0] is
  // not NaN (NaNs never win either way).
  const int64_t n = static_cast<int64_t>(logits.size());
  if (n > 0 && !std::isnan(logits[0])) {
    const float best_value = max_f32(logits.data(), n);
    for (int64_t i = 0; i < n; ++i)
      if (logits[i] == best_value) return static_cast<int32_t>(i);
  }
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = static_cast<int32_t>(i);
  return best;
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

void Sampler::apply_penalties(std::span<float> logits, std::span<const int32_t> context,
                              int64_t generated_count) const {
  if (params_.repetition_penalty != 1.0f) {
    const int64_t window = params_.penalty_last_n < 0 ? static_cast<int64_t>(context.size())
                                                      : std::min<int64_t>(params_.penalty_last_n, context.size());
    std::vector<bool> seen(logits.size(), false);
    for (int64_t i = static_cast<int64_t>(context.size()) - window; i < static_cast<int64_t>(context.size()); ++i) {
      const int32_t id = context[i];
      if (id < 0 || id >= static_cast<int32_t>(logits.size()) || seen[id]) continue;
      seen[id] = true;
      logits[id] = logits[id] > 0 ? logits[id] / params_.repetition_penalty : logits[id] * params_.repetition_penalty;
    }
  }
  if (params_.presence_penalty != 0.0f || params_.frequency_penalty != 0.0f) {
    std::unordered_map<int32_t, int64_t> counts;
    const int64_t start = static_cast<int64_t>(context.size()) - std::min<int64_t>(generated_count, context.size());
    for (int64_t i = start; i < static_cast<int64_t>(context.size()); ++i) ++counts[context[i]];
    for (const auto& [id, count] : counts) {
      if (id < 0 || id >= static_cast<int32_t>(logits.size())) continue;
      logits[id] -= params_.presence_penalty + params_.frequency_penalty * static_cast<float>(count);
    }
  }
}

int32_t Sampler::sample(std::span<float> logits, std::span<const int32_t> context, int64_t generated_count) {
  apply_penalties(logits, context, generated_count);
  if (params_.temperature == 0.0f) return argmax(logits);

  candidates_.clear();
  for (size_t i = 0; i < logits.size(); ++i)
    candidates_.emplace_back(logits[i] / params_.temperature, static_cast<int32_t>(i));
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = params_.top_k;
    std::partial_sort(candidates_.begin(), candidates_.begin() + keep, candidates_.end(), by_logit);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), by_logit);
  }
  candidates_.resize(keep);

  // Softmax over the survivors (sorted, so the first is the max).
  const float max_logit = candidates_[0].first;
  double total = 0.0;
  for (auto& [value, id] : candidates_) {
    value = std::exp(value - max_logit);
    total += value;
  }
  for (auto& candidate : candidates_) candidate.first = static_cast<float>(candidate.first / total);

  if (params_.top_p < 1.0f) {
    double cumulative = 0.0;
    size_t i = 0;
    for (; i < candidates_.size(); ++i) {
      cumulative += candidates_[i].first;
      if (cumulative >= params_.top_p) break;
    }
    candidates_.resize(std::min(candidates_.size(), i + 1));
  }
  if (params_.min_p > 0.0f) {
    const float threshold = params_.min_p * candidates_[0].first;
    size_t i = 1;
    while (i < candidates_.size() && candidates_[i].first >= threshold) ++i;
    candidates_.resize(i);
  }

  double mass = 0.0;
  for (const auto& candidate : candidates_) mass += candidate.first;
  std::uniform_real_distribution<double> uniform(0.0, mass);
  double r = uniform(rng_);
  for (const auto& [p, id] : candidates_) {
    if (r < p) return id;
    r -= p;
  }
  return candidates_.back().second;
}

}  // namespace anvil
