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

}  // namespace anvil
