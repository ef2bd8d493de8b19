// RoPE kernel (scalar; the angle table is computed once per token, shared by all heads).
#include "compute/cpu/rope.h"

#include <cmath>
#include <vector>

namespace anvil {

void apply_rope(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const float* inv_freq,
                RopeStyle style) {
  const int64_t pairs = head_dim / 2;
  float cos_table[1024], sin_table[1024];  // head_dim <= 2048 is checked at model creation
  for (int64_t i = 0; i < pairs; ++i) {
    const float angle = static_cast<float>(position) * inv_freq[i];
    cos_table[i] = std::cos(angle);
    sin_table[i] = std::sin(angle);
  }
  for (int64_t h = 0; h < n_heads; ++h) {
    float* v = x + h * head_dim;
    for (int64_t i = 0; i < pairs; ++i) {
      const int64_t a = style == RopeStyle::Interleaved ? 2 * i : i;
      const int64_t b = style == RopeStyle::Interleaved ? 2 * i + 1 : i + pairs;
      const float x0 = v[a], x1 = v[b];
      v[a] = x0 * cos_table[i] - x1 * sin_table[i];
      v[b] = x0 * sin_table[i] + x1 * cos_table[i];
    }
  }
}

}  // namespace anvil
