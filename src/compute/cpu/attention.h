// Causal attention of one query head over a contiguous range of cached keys and values.
#pragma once

#include <cstdint>

namespace anvil {

// q: head_dim floats. keys/values: row j of the cache starts at keys + j * row_stride (the
// caller offsets the pointers to its KV head). Attends to cache rows [first, last] inclusive.
// scores: scratch of at least last - first + 1 floats. out: head_dim floats.
void attend_one_head(const float* q, const float* keys, const float* values, int64_t row_stride,
                     int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out);

}  // namespace anvil
