// Row math of scoring: log-softmax.
#include "eval/log_softmax.h"

#include <algorithm>
#include <cmath>

namespace anvil {

void log_softmax(std::span<const float> logits, std::span<float> out) {
  if (logits.empty()) return;
  float max_logit = logits[0];
  for (float v : logits) max_logit = std::max(max_logit, v);
  double sum_exp = 0.0;
  for (float v : logits) sum_exp += std::exp(v - max_logit);
  const double log_normalizer = static_cast<double>(max_logit) + std::log(sum_exp);
  for (size_t i = 0; i < logits.size(); ++i)
    out[i] = static_cast<float>(static_cast<double>(logits[i]) - log_normalizer);
}

}  // namespace anvil
