// DecoderModel: a loaded model ready to run forward passes (config + bound weights + graph).
#pragma once

#include <memory>
#include <span>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "model/arch_registry.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/transformer_weights.h"

namespace anvil {

class DecoderModel {
 public:
  static Result<std::unique_ptr<DecoderModel>> create(std::shared_ptr<const Checkpoint> checkpoint);

  const ModelConfig& config() const { return checkpoint_->config; }
  const Checkpoint& checkpoint() const { return *checkpoint_; }
  SequenceKvCache make_cache(int64_t capacity) const;

  // Runs `tokens` after the cache's current length and appends them to the cache.
  // logits: (n_tokens, vocab) floats when all_logits, else (vocab) for the last token.
  // Rejects out-of-vocabulary ids and overflowing the cache or the context length.
  Status forward(std::span<const int32_t> tokens, SequenceKvCache& cache, ThreadPool& pool, float* logits,
                 bool all_logits) const;

  // One batched step over several sequences (the engine's path): see ForwardBatch. logits:
  // batch.logit_rows() x vocab floats. Rejects out-of-vocabulary ids, positions past the context
  // length, block tables that do not cover a chunk or name blocks outside the store.
  Status forward_batch(const ForwardBatch& batch, const KvStoreView& kv, ThreadPool& pool, float* logits) const;

 private:
  DecoderModel() = default;
  std::shared_ptr<const Checkpoint> checkpoint_;
  const ArchSpec* arch_ = nullptr;
  TransformerWeights weights_;
};

}  // namespace anvil
