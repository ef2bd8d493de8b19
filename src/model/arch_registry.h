// The architecture registry: one table row per architecture (name, RoPE layout in GGUF, graph).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/thread_pool.h"
#include "model/forward_batch.h"
#include "model/kv_store.h"
#include "model/model_config.h"
#include "model/transformer_weights.h"

namespace anvil {

// Runs every chunk of the batch (writing its K/V rows into the store through its block table) and
// writes batch.logit_rows() rows of vocab logits, chunk after chunk. Arguments are checked by
// DecoderModel::forward_batch.
using ForwardFn = void (*)(ThreadPool& pool, const ModelConfig& config, const TransformerWeights& weights,
                           const ForwardBatch& batch, const KvStoreView& kv, float* logits);

struct ArchSpec {
  const char* name;             // general.architecture in GGUF, ModelConfig::arch
  const char* description;
  RopeStyle gguf_rope_style;    // how llama.cpp expects q/k rows of this arch in a GGUF
  ForwardFn forward;
};

const ArchSpec* find_arch(const std::string& name);
std::string supported_arch_names();  // "llama, qwen2"

// Architecture entries, one file each under model/arch/.
const ArchSpec& llama_arch_spec();
const ArchSpec& qwen2_arch_spec();

// The Llama graph, shared by every architecture that is Llama plus options (bias, window).
void llama_forward(ThreadPool& pool, const ModelConfig& config, const TransformerWeights& weights,
                   const ForwardBatch& batch, const KvStoreView& kv, float* logits);

}  // namespace anvil
