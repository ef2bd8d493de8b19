// RoPE kernels: the angle table once per token, then a rotation vectorized for the active ISA.
#include "compute/cpu/rope.h"

#include <cmath>

#include "compute/cpu/isa.h"

namespace anvil {

namespace {

// The rotation loops are written so that GCC vectorizes them (contiguous halves for NeoX, an
// interleaved load/store group of 2 for Interleaved); the body is inlined into one wrapper per
// target below, so each ISA gets its own vector code from the same source.
__attribute__((always_inline)) inline void rotate_body(float* __restrict x, int64_t n_heads, int64_t head_dim,
                                                       const float* __restrict cos_table,
                                                       const float* __restrict sin_table, RopeStyle style) {
  const int64_t pairs = head_dim / 2;
  for (int64_t h = 0; h < n_heads; ++h) {
    float* __restrict v = x + h * head_dim;
    if (style == RopeStyle::Interleaved) {
      for (int64_t i = 0; i < pairs; ++i) {  // hot loop
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cos_table[i] - x1 * sin_table[i];
        v[2 * i + 1] = x0 * sin_table[i] + x1 * cos_table[i];
      }
    } else {
      float* __restrict a = v;
      float* __restrict b = v + pairs;
      for (int64_t i = 0; i < pairs; ++i) {  // hot loop
        const float x0 = a[i], x1 = b[i];
        a[i] = x0 * cos_table[i] - x1 * sin_table[i];
        b[i] = x0 * sin_table[i] + x1 * cos_table[i];
      }
    }
  }
}

__attribute__((target("avx2,fma"))) void rotate_avx2(float* x, int64_t n_heads, int64_t head_dim, const float* c,
                                                     const float* s, RopeStyle style) {
  rotate_body(x, n_heads, head_dim, c, s, style);
}

__attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl"))) void rotate_avx512(float* x, int64_t n_heads,
                                                                                 int64_t head_dim, const float* c,
                                                                                 const float* s, RopeStyle style) {
  rotate_body(x, n_heads, head_dim, c, s, style);
}

}  // namespace

void rope_angles(int64_t position, const float* inv_freq, int64_t pairs, float* cos_table, float* sin_table) {
  for (int64_t i = 0; i < pairs; ++i) {
    const float angle = static_cast<float>(position) * inv_freq[i];
    cos_table[i] = std::cos(angle);
    sin_table[i] = std::sin(angle);
  }
}

void apply_rope_reference(float* x, int64_t n_heads, int64_t head_dim, const float* cos_table,
                          const float* sin_table, RopeStyle style) {
  const int64_t pairs = head_dim / 2;
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

void apply_rope_table(float* x, int64_t n_heads, int64_t head_dim, const float* cos_table, const float* sin_table,
                      RopeStyle style) {
  const Isa isa = active_isa();
  if (isa >= Isa::Avx512) {
    rotate_avx512(x, n_heads, head_dim, cos_table, sin_table, style);
  } else if (isa >= Isa::Avx2) {
    rotate_avx2(x, n_heads, head_dim, cos_table, sin_table, style);
  } else {
    apply_rope_reference(x, n_heads, head_dim, cos_table, sin_table, style);
  }
}

void apply_rope(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const float* inv_freq,
                RopeStyle style) {
  float cos_table[1024], sin_table[1024];  // head_dim <= 2048 is checked at model creation
  rope_angles(position, inv_freq, head_dim / 2, cos_table, sin_table);
  apply_rope_table(x, n_heads, head_dim, cos_table, sin_table, style);
}

}  // namespace anvil
