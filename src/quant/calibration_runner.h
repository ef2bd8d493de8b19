// LayerByLayerRunner: runs a model over the calibration samples one decoder layer at a time, with
// the hidden states of every sample kept between layers. This is the sequential pipeline of GPTQ
// (and llm-compressor): a layer's inputs are observed, its weights replaced (quantized), and only
// then its outputs computed, so later layers calibrate on what the quantized model will feed them.
//
//   embed ──> hidden[s] ──run_layer(0)──> hidden[s] ──run_layer(1)──> ... (s = every sample)
//                        observer sees q/k/v, o, gate/up, down inputs of the layer
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "model/layers.h"
#include "model/linear_observer.h"
#include "model/transformer_weights.h"
#include "quant/calibration.h"

namespace anvil {

class LayerByLayerRunner {
 public:
  // Binds the checkpoint's weights (they must stay in place: the runner keeps pointers to its
  // tensors, so changing a tensor's bytes or dtype in place is seen by the next run_layer; norm
  // weights are copied now) and embeds every sample. Architectures whose graph is the Llama
  // graph only (llama, qwen2).
  static Result<std::unique_ptr<LayerByLayerRunner>> create(const Checkpoint& checkpoint, const CalibrationSet& set,
                                                            ThreadPool& pool);

  int64_t n_layers() const { return config_.n_layers; }
  int64_t samples() const { return static_cast<int64_t>(hidden_.size()); }

  // Runs decoder layer `layer` over every sample, the observer (may be null) seeing the inputs of
  // its linear weights. With `advance` the outputs become the stored hidden states (the next
  // layer's inputs); without, they are dropped. Layers must advance in order 0, 1, ...
  void run_layer(int64_t layer, LinearInputObserver* observer, bool advance);

  // A sample's hidden states (seq_len, dim): the input of the next layer to advance.
  const std::vector<float>& hidden(int64_t sample) const { return hidden_[sample]; }

 private:
  LayerByLayerRunner(const ModelConfig& config, ThreadPool& pool, int64_t seq_len);

  ModelConfig config_;
  ThreadPool& pool_;
  TransformerWeights weights_;
  std::vector<std::vector<float>> hidden_;  // per sample: (seq_len, dim), the current layer's input
  ForwardScratch scratch_;
  std::vector<float> keys_, values_;        // one layer's K/V rows (seq_len, kv_dim), reused by every layer
};

}  // namespace anvil
