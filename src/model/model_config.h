// ModelConfig: the hyperparameters of a decoder-only transformer, whatever file they came from.
#pragma once

#include <cstdint>
#include <string>

namespace anvil {

// How RoPE pairs the dimensions of a head. GGUF "llama" weights and Meta/llama2.c checkpoints
// rotate adjacent pairs (x[2i], x[2i+1]); Hugging Face checkpoints and GGUF "qwen2" rotate
// halves (x[i], x[i + d/2]). The two are the same model with q/k rows permuted, so a loader
// keeps the weights as stored and records which style they need.
enum class RopeStyle { Interleaved, NeoX };

enum class RopeScalingType { None, Linear, Llama3 };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::None;
  float factor = 1.0f;              // Linear and Llama3
  float low_freq_factor = 1.0f;     // Llama3
  float high_freq_factor = 4.0f;    // Llama3
  int64_t original_context = 8192;  // Llama3: original_max_position_embeddings
};

struct ModelConfig {
  std::string arch;          // architecture registry key: "llama", "qwen2"
  std::string name;          // human-readable (general.name, preset name, directory name)
  int64_t vocab_size = 0;
  int64_t dim = 0;           // d_model (n_embd, hidden_size)
  int64_t hidden_dim = 0;    // FFN width (n_ff, intermediate_size)
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;
  int64_t head_dim = 0;      // usually dim / n_heads
  int64_t context_length = 0;
  float rms_norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeStyle rope_style = RopeStyle::Interleaved;
  RopeScaling rope_scaling;
  int64_t sliding_window = 0;   // 0: full attention (Mistral v0.1: 4096)
  bool tied_embeddings = false; // output projection reuses token_embd.weight
  bool attn_qkv_bias = false;   // Qwen2
  int32_t bos_token_id = -1;
  int32_t eos_token_id = -1;

  // Parameters of the matmuls plus embeddings, for reports (counts the tied matrix once).
  int64_t parameter_count() const;
  // Parameters that take part in matrix multiplications per token (an untied embedding table is
  // a lookup, not a matmul): the N of "forward FLOPs per token ~ 2 N".
  int64_t matmul_parameter_count() const;
};

}  // namespace anvil
