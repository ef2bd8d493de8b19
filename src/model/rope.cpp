// RoPE frequency divisors (Llama 3.1 "llama3" scaling and linear scaling).
#include "model/rope.h"

#include <cmath>
#include <numbers>

namespace anvil {

std::vector<float> rope_frequency_divisors(const ModelConfig& config) {
  const int64_t pairs = config.head_dim / 2;
  std::vector<float> divisors(pairs, 1.0f);
  const RopeScaling& scaling = config.rope_scaling;
  if (scaling.type == RopeScalingType::Linear) {
    for (float& d : divisors) d = scaling.factor;
  } else if (scaling.type == RopeScalingType::Llama3) {
    // Wavelengths shorter than original_context/high_freq_factor keep their frequency, longer
    // than original_context/low_freq_factor are slowed by `factor`, and a smooth ramp between.
    const double low_freq_wavelen = scaling.original_context / scaling.low_freq_factor;
    const double high_freq_wavelen = scaling.original_context / scaling.high_freq_factor;
    for (int64_t i = 0; i < pairs; ++i) {
      const double freq = std::pow(static_cast<double>(config.rope_theta), -2.0 * i / config.head_dim);
      const double wavelen = 2.0 * std::numbers::pi / freq;
      if (wavelen < high_freq_wavelen) {
        divisors[i] = 1.0f;
      } else if (wavelen > low_freq_wavelen) {
        divisors[i] = scaling.factor;
      } else {
        const double smooth = (scaling.original_context / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        divisors[i] = static_cast<float>(1.0 / ((1.0 - smooth) / scaling.factor + smooth));
      }
    }
  }
  return divisors;
}

}  // namespace anvil
