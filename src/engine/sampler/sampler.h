// Sampler: turns one row of logits into a token id under a request's sampling parameters.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "anvil/status.h"

namespace anvil {

struct SamplingParams {
  float temperature = 0.8f;        // 0: greedy (argmax, lowest id on ties)
  int64_t top_k = 40;              // <= 0: off
  float top_p = 0.95f;             // 1: off
  float min_p = 0.05f;             // 0: off; keeps tokens with p >= min_p * p_max
  float repetition_penalty = 1.0f; // 1: off; CTRL-style, on tokens seen in the context
  float presence_penalty = 0.0f;   // OpenAI-style, on generated tokens
  float frequency_penalty = 0.0f;  // OpenAI-style, on generated tokens
  int64_t penalty_last_n = 64;     // window of the repetition penalty (-1: whole context)
  uint64_t seed = 0;

  Status validate() const;  // clear messages for negative temperature, top_p outside (0, 1], ...
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // logits are modified (penalties, temperature). context: prompt + generated ids so far;
  // generated_count: how many of its last ids were generated (penalties apply to those).
  int32_t sample(std::span<float> logits, std::span<const int32_t> context, int64_t generated_count);

 private:
  void apply_penalties(std::span<float> logits, std::span<const int32_t> context, int64_t generated_count) const;

  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused across calls
};

int32_t argmax(std::span<const float> logits);

}  // namespace anvil
