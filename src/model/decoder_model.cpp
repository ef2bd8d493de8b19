// DecoderModel: argument checks around the architecture's forward function.
#include "model/decoder_model.h"

#include <fmt/format.h>

namespace anvil {

Result<std::unique_ptr<DecoderModel>> DecoderModel::create(std::shared_ptr<const Checkpoint> checkpoint) {
  const ArchSpec* arch = find_arch(checkpoint->config.arch);
  if (!arch)
    return Status::error(fmt::format("{}: unknown architecture '{}'; anvil supports: {}", checkpoint->source,
                                     checkpoint->config.arch, supported_arch_names()));
  ANVIL_ASSIGN_OR_RETURN(TransformerWeights weights, TransformerWeights::bind(*checkpoint));
  std::unique_ptr<DecoderModel> model(new DecoderModel());
  model->checkpoint_ = std::move(checkpoint);
  model->arch_ = arch;
  model->weights_ = std::move(weights);
  return model;
}

SequenceKvCache DecoderModel::make_cache(int64_t capacity) const {
  const ModelConfig& c = config();
  return SequenceKvCache(c.n_layers, capacity, c.n_kv_heads * c.head_dim);
}

Status DecoderModel::forward(std::span<const int32_t> tokens, SequenceKvCache& cache, ThreadPool& pool,
                             float* logits, bool all_logits) const {
  const ModelConfig& c = config();
  if (tokens.empty()) return Status::error("forward: no tokens to run");
  for (int32_t id : tokens)
    if (id < 0 || id >= c.vocab_size)
      return Status::error(fmt::format("token id {} is out of range for a vocabulary of {}", id, c.vocab_size));
  const int64_t end = cache.length() + static_cast<int64_t>(tokens.size());
  if (end > c.context_length)
    return Status::error(fmt::format("{} tokens exceed the model's context length of {}", end, c.context_length));
  if (end > cache.capacity())
    return Status::error(fmt::format("{} tokens exceed the KV cache capacity of {}", end, cache.capacity()));
  arch_->forward(pool, c, weights_, tokens, cache, logits, all_logits);
  return Status::ok();
}

}  // namespace anvil
