// SequenceKvCache: keys and values of one sequence, contiguous per layer (the single-sequence
// cache of `anvil run`; the batching engine has its own paged block pool).
#pragma once

#include <cstdint>
#include <vector>

#include "model/kv_store.h"

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

  // The cache as a KV store of one block of `capacity` rows (block table {0}).
  KvStoreView view() {
    KvStoreView v;
    v.dtype = DType::F32;
    v.block_size = capacity_;
    v.kv_dim = kv_dim_;
    v.n_blocks = 1;
    const int64_t layers = capacity_ > 0 ? static_cast<int64_t>(keys_.size()) / (capacity_ * kv_dim_) : 0;
    for (int64_t l = 0; l < layers; ++l) {
      v.keys.push_back(keys(l, 0));
      v.values.push_back(values(l, 0));
    }
    return v;
  }

 private:
  int64_t capacity_, kv_dim_, length_ = 0;
  std::vector<float> keys_;    // (layer, position, kv_dim)
  std::vector<float> values_;  // (layer, position, kv_dim)
};

}  // namespace anvil
