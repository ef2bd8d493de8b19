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
  const int64_t end = cache.length() + static_cast<int64_t>(tokens.size());
  if (end > c.context_length)
    return Status::error(fmt::format("{} tokens exceed the model's context length of {}", end, c.context_length));
  if (end > cache.capacity())
    return Status::error(fmt::format("{} tokens exceed the KV cache capacity of {}", end, cache.capacity()));
  static const int32_t kOnlyBlock[1] = {0};
  ForwardBatch batch;
  batch.tokens.assign(tokens.begin(), tokens.end());
  SequenceChunk& chunk = batch.chunks.emplace_back();
  chunk.first_position = cache.length();
  chunk.n_tokens = static_cast<int64_t>(tokens.size());
  chunk.block_table = kOnlyBlock;
  chunk.want_logits = true;
  chunk.all_logits = all_logits;
  ANVIL_RETURN_IF_ERROR(forward_batch(batch, cache.view(), pool, logits));
  cache.set_length(end);
  return Status::ok();
}

Status DecoderModel::forward_batch(const ForwardBatch& batch, const KvStoreView& kv, ThreadPool& pool,
                                   float* logits) const {
  const ModelConfig& c = config();
  if (batch.chunks.empty()) return Status::error("forward: no sequences to run");
  if (kv.kv_dim != c.n_kv_heads * c.head_dim || static_cast<int64_t>(kv.keys.size()) != c.n_layers ||
      static_cast<int64_t>(kv.values.size()) != c.n_layers || kv.block_size <= 0)
    return Status::error("forward: the KV store does not match the model's shape");
  if (!is_kv_cache_dtype(kv.dtype))
    return Status::error(
        fmt::format("forward: KV cache dtype {} is not supported (f32, f16, bf16, fp8, int8)", dtype_name(kv.dtype)));
  if (kv.head_major && (kv.n_kv_heads != c.n_kv_heads || kv.block_size < 1))
    return Status::error("forward: the head-major KV store does not match the model's KV heads");
  if (kv_dtype_has_scales(kv.dtype) &&
      (kv.n_kv_heads != c.n_kv_heads || static_cast<int64_t>(kv.key_scales.size()) != c.n_layers ||
       static_cast<int64_t>(kv.value_scales.size()) != c.n_layers))
    return Status::error("forward: the KV store has no scales for its fp8/int8 rows");
  for (int32_t id : batch.tokens)
    if (id < 0 || id >= c.vocab_size)
      return Status::error(fmt::format("token id {} is out of range for a vocabulary of {}", id, c.vocab_size));
  int64_t total = 0;
  for (const SequenceChunk& chunk : batch.chunks) {
    if (chunk.n_tokens <= 0 || chunk.first_position < 0) return Status::error("forward: a chunk has no tokens");
    const int64_t end = chunk.first_position + chunk.n_tokens;
    if (end > c.context_length)
      return Status::error(fmt::format("{} tokens exceed the model's context length of {}", end, c.context_length));
    const int64_t blocks = (end + kv.block_size - 1) / kv.block_size;
    if (static_cast<int64_t>(chunk.block_table.size()) < blocks)
      return Status::error(fmt::format("forward: a block table of {} blocks cannot hold {} positions",
                                       chunk.block_table.size(), end));
    for (int64_t b = 0; b < blocks; ++b)
      if (chunk.block_table[b] < 0 || chunk.block_table[b] >= kv.n_blocks)
        return Status::error(fmt::format("forward: block {} is outside the KV store's {} blocks",
                                         chunk.block_table[b], kv.n_blocks));
    total += chunk.n_tokens;
  }
  if (total != static_cast<int64_t>(batch.tokens.size()))
    return Status::error("forward: the chunks do not add up to the batch's tokens");
  arch_->forward(pool, c, weights_, batch, kv, logits);
  return Status::ok();
}

}  // namespace anvil
