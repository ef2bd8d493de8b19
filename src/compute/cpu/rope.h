// Rotary position embedding applied in place to the heads of one token.
#pragma once

#include <cstdint>

#include "model/model_config.h"

namespace anvil {

// x: n_heads consecutive vectors of head_dim floats. inv_freq[i] (i < head_dim/2) is the
// angular frequency of pair i (already divided by any scaling divisor).
// Interleaved rotates (x[2i], x[2i+1]); NeoX rotates (x[i], x[i + head_dim/2]).
void apply_rope(float* x, int64_t n_heads, int64_t head_dim, int64_t position, const float* inv_freq,
                RopeStyle style);

// The two halves of apply_rope, so that one angle table serves q, k and every layer of a token:
// cos_table/sin_table[i] = cos/sin(position * inv_freq[i]) for i < pairs (= head_dim / 2).
void rope_angles(int64_t position, const float* inv_freq, int64_t pairs, float* cos_table, float* sin_table);
// Rotation with a precomputed table; vectorized per active_isa() (scalar/AVX2/AVX-512).
void apply_rope_table(float* x, int64_t n_heads, int64_t head_dim, const float* cos_table, const float* sin_table,
                      RopeStyle style);

// The plain scalar rotation, kept as the tests' reference.
void apply_rope_reference(float* x, int64_t n_heads, int64_t head_dim, const float* cos_table,
                          const float* sin_table, RopeStyle style);

}  // namespace anvil
