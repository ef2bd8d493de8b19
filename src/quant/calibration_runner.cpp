// LayerByLayerRunner: embedding once, then one decoder layer over every sample per call.
#include "quant/calibration_runner.h"

#include <fmt/format.h>

#include <algorithm>

#include "compute/cpu/matmul.h"
#include "model/arch_registry.h"

namespace anvil {

LayerByLayerRunner::LayerByLayerRunner(const ModelConfig& config, ThreadPool& pool, int64_t seq_len)
    : config_(config), pool_(pool), scratch_(config, seq_len),
      keys_(static_cast<size_t>(seq_len * config.n_kv_heads * config.head_dim)), values_(keys_.size()) {}

Result<std::unique_ptr<LayerByLayerRunner>> LayerByLayerRunner::create(const Checkpoint& checkpoint,
                                                                       const CalibrationSet& set, ThreadPool& pool) {
  const ModelConfig& c = checkpoint.config;
  const ArchSpec* arch = find_arch(c.arch);
  if (!arch || arch->forward != &llama_forward)
    return Status::error(fmt::format("{}: calibration runs the Llama layer graph; architecture '{}' is not one",
                                     checkpoint.source, c.arch));
  const int64_t seq_len = set.seq_len();
  if (set.samples.empty() || seq_len <= 0) return Status::error("calibration: no samples");
  if (seq_len > c.context_length)
    return Status::error(fmt::format("calibration samples of {} tokens exceed the model's context length of {}",
                                     seq_len, c.context_length));
  ANVIL_ASSIGN_OR_RETURN(TransformerWeights weights, TransformerWeights::bind(checkpoint));
  std::unique_ptr<LayerByLayerRunner> runner(new LayerByLayerRunner(c, pool, seq_len));
  runner->weights_ = std::move(weights);
  for (const std::vector<int32_t>& sample : set.samples) {
    if (static_cast<int64_t>(sample.size()) != seq_len)
      return Status::error("calibration: samples must all have the same length");
    std::vector<float>& hidden = runner->hidden_.emplace_back(static_cast<size_t>(seq_len * c.dim));
    for (int64_t t = 0; t < seq_len; ++t) {
      if (sample[t] < 0 || sample[t] >= c.vocab_size)
        return Status::error(fmt::format("calibration: token id {} is outside the vocabulary of {}", sample[t],
                                         c.vocab_size));
      weight_row_to_f32(*runner->weights_.token_embd, sample[t], hidden.data() + t * c.dim);
    }
  }
  return runner;
}

void LayerByLayerRunner::run_layer(int64_t layer, LinearInputObserver* observer, bool advance) {
  static const int32_t kOnlyBlock[1] = {0};
  const int64_t seq_len = scratch_.n_tokens;
  // Every sample is one whole sequence in one chunk: its K/V rows for this layer fill the one
  // block from position 0, so a single layer's worth of cache serves every layer.
  KvStoreView kv;
  kv.dtype = DType::F32;
  kv.block_size = seq_len;
  kv.kv_dim = config_.n_kv_heads * config_.head_dim;
  kv.n_blocks = 1;
  kv.keys.assign(static_cast<size_t>(config_.n_layers), keys_.data());
  kv.values.assign(static_cast<size_t>(config_.n_layers), values_.data());
  ForwardBatch batch;
  batch.tokens.assign(static_cast<size_t>(seq_len), 0);  // the layers read hidden states, not ids
  SequenceChunk& chunk = batch.chunks.emplace_back();
  chunk.first_position = 0;
  chunk.n_tokens = seq_len;
  chunk.block_table = kOnlyBlock;
  scratch_.observer = observer;
  for (std::vector<float>& hidden : hidden_) {
    std::copy(hidden.begin(), hidden.end(), scratch_.hidden.begin());
    build_decoder_layer(pool_, config_, weights_, layer, batch, kv, scratch_);
    if (advance) std::copy(scratch_.hidden.begin(), scratch_.hidden.end(), hidden.begin());
  }
  scratch_.observer = nullptr;
}

}  // namespace anvil
