// Checkpoint: a model's config, vocabulary and weights by canonical name, from any file format.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "model/model_config.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Canonical tensor names are GGUF's (llama.cpp's) names, so every reader maps to one namespace:
//   token_embd.weight      (vocab, dim)
//   output_norm.weight     (dim)
//   output.weight          (vocab, dim)            absent when tied_embeddings
//   rope_freqs.weight      (head_dim/2)            optional: per-frequency divisors (Llama 3.1)
//   blk.N.attn_norm.weight (dim)
//   blk.N.attn_q.weight    (n_heads*head_dim, dim)     + blk.N.attn_q.bias when attn_qkv_bias
//   blk.N.attn_k.weight    (n_kv_heads*head_dim, dim)  + blk.N.attn_k.bias
//   blk.N.attn_v.weight    (n_kv_heads*head_dim, dim)  + blk.N.attn_v.bias
//   blk.N.attn_output.weight (dim, n_heads*head_dim)
//   blk.N.ffn_norm.weight  (dim)
//   blk.N.ffn_gate.weight  (hidden_dim, dim)
//   blk.N.ffn_up.weight    (hidden_dim, dim)
//   blk.N.ffn_down.weight  (dim, hidden_dim)
// q/k rows are as stored in the source file; config.rope_style says which RoPE pairing they need.
// How `anvil quantize` produced the weights (GGUF metadata anvil.quantization.*, see
// docs/FORMATS.md); an empty scheme for checkpoints it did not write.
struct QuantizationInfo {
  std::string scheme;       // "fp8", "fp8-dynamic", "w8a8", "w8a8-smoothquant", "w4a16-rtn", "w4a16-gptq", "q8_0", ...
  std::string granularity;  // "per-channel", "per-tensor", "group" or "block" (GGML types)
  int64_t group_size = 0;   // elements per scale along a row; 0 for whole rows
  bool symmetric = true;
  std::optional<double> smoothquant_alpha;  // w8a8-smoothquant: the migration strength it used
  bool act_order = false;                   // w4a16-gptq: quantized in activation order
  bool dynamic_groups = false;              // ... with groups in that order (weights carry input orders)
  // fp8-dynamic: every F8_E4M3 weight's QuantScales::activations (a file records it once for all;
  // the GGUF loader sets it on each F8_E4M3 weight it reads).
  ActivationQuant activations = ActivationQuant::None;
};

// Weights of the scaled types (F8_E4M3, I8, I4) carry their scales in Tensor::quant; files store
// them as companion tensors (NAME_scale, NAME_zero), which never appear in `tensors`.
struct Checkpoint {
  ModelConfig config;
  Vocab vocab;
  std::map<std::string, Tensor> tensors;
  std::string source;  // path or "dummy:<preset>", for messages
  QuantizationInfo quantization;
  // Keeps the bytes behind `tensors` alive (memory maps, owned buffers).
  std::vector<std::shared_ptr<const void>> storage;
  // Read-only file mappings among `storage` (GGUF, safetensors), as (start, bytes): pages there can be dropped
  // from this process and come back from the file, which repack_weights_for_decode does once it
  // no longer reads a tensor's bytes.
  std::vector<std::pair<const std::byte*, size_t>> file_mappings;

  const Tensor* find(const std::string& name) const {
    auto it = tensors.find(name);
    return it == tensors.end() ? nullptr : &it->second;
  }
  // Whether the layer matrices are f32 (what "auto" KV dtypes follow: kv_cache_dtype_for).
  bool has_f32_layer_weights() const {
    const Tensor* q = find("blk.0.attn_q.weight");
    return q != nullptr && q->dtype == DType::F32;
  }
};

}  // namespace anvil
