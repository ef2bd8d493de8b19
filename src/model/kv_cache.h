// SequenceKvCache: keys and values of one sequence, contiguous per layer (the single-sequence
// cache of `anvil run`; the batching engine has its own paged block pool).
#pragma once

#include <cstdint>
#include <vector>

namespace anvil {

class SequenceKvCache {
 public:
  SequenceKvCache(int64_t n_layers, int64_t capacity, int64_t kv_dim)
      : capacity_(capacity), kv_dim_(kv_dim),
        keys_(static_cast<size_t>(n_layers * capacity * kv_dim)),
        values_(static_cast<size_t>(n_layers * capacity * kv_dim)) {}

  int64_t length() const { return length_; }      // positions filled
  int64_t capacity() const { return capacity_; }
  int64_t kv_dim() const { return kv_dim_; }
  void set_length(int64_t length) { length_ = length; }

  // Row `position` of layer `layer`: kv_dim floats.
  float* keys(int64_t layer, int64_t position) { return &keys_[(layer * capacity_ + position) * kv_dim_]; }
  float* values(int64_t layer, int64_t position) { return &values_[(layer * capacity_ + position) * kv_dim_]; }

 private:
  int64_t capacity_, kv_dim_, length_ = 0;
  std::vector<float> keys_;    // (layer, position, kv_dim)
  std::vector<float> values_;  // (layer, position, kv_dim)
};

}  // namespace anvil
