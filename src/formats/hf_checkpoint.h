// Hugging Face model directories: config.json plus model.safetensors (or shards with an index).
#pragma once

#include <string>

#include "anvil/status.h"
#include "core/progress.h"
#include "model/checkpoint.h"
#include "model/model_config.h"

namespace anvil {

// True when `path` is a directory holding config.json (how a loader tells HF dirs from files).
bool is_hf_checkpoint_dir(const std::string& path);

// Parses the text of a config.json (model_type llama, mistral or qwen2). `path` names the file in
// messages. Sets rope_style = NeoX (HF keeps q/k rows in rotate-half order); leaves name empty and
// attn_qkv_bias false, since those come from the directory and the weights.
Result<ModelConfig> parse_hf_config(const std::string& json_text, const std::string& path);

// Loads a model directory: config.json, model.safetensors or model.safetensors.index.json with
// its shards (all memory-mapped and kept in checkpoint.storage; tensors are views, not copies),
// and the chat template of tokenizer_config.json. Tensors get canonical (GGUF) names; every
// tensor the config requires is checked for presence and shape. q/k weights are kept as stored
// (rope_style NeoX). The vocabulary comes from tokenizer.json when there is one.
// Quantized checkpoints (config.json quantization_config: compressed-tensors FP8 / INT8 / INT4,
// AutoGPTQ and AutoAWQ int4; src/formats/hf_quantized.h) load their linear layers as F8_E4M3, I8
// or I4 with scales; repacking them is the work `progress` reports, in bytes of the source tensors.
Result<Checkpoint> load_hf_checkpoint(const std::string& dir, const ProgressCallback& progress = {});

// Writes `checkpoint` (F32/F16/BF16 tensors) as config.json + model.safetensors (+ a
// tokenizer_config.json holding the chat template, when there is one) under `dir`, creating it.
// Interleaved q/k rows are permuted to HF's rotate-half order, so the result loads back as NeoX.
Status write_hf_checkpoint(const Checkpoint& checkpoint, const std::string& dir);

// Tensor name mapping: "blk.3.attn_q.weight" <-> "model.layers.3.self_attn.q_proj.weight".
// Each returns an empty string for names outside the mapping.
std::string hf_tensor_name(const std::string& canonical_name);
std::string canonical_tensor_name(const std::string& hf_name);

}  // namespace anvil
