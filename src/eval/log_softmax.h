// Row math of scoring: log-softmax over one vocabulary row.
#pragma once

#include <cstdint>
#include <span>

namespace anvil {

// out[i] = logits[i] - max - log(sum_j exp(logits[j] - max)). The normalizer is summed in double,
// so a 128K-entry row loses nothing to accumulation; each value is rounded to float once.
// `out` may be `logits` itself (the scorer converts its logits in place). Sizes must match.
void log_softmax(std::span<const float> logits, std::span<float> out);

}  // namespace anvil
