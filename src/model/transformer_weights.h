// The weights of a decoder-only transformer, bound by name from a Checkpoint and shape-checked.
#pragma once

#include <memory>
#include <vector>

#include "anvil/status.h"
#include "model/checkpoint.h"

namespace anvil {

struct LayerWeights {
  std::vector<float> attn_norm;  // (dim)
  const Tensor* wq;              // (n_heads*head_dim, dim)
  const Tensor* wk;              // (n_kv_heads*head_dim, dim)
  const Tensor* wv;              // (n_kv_heads*head_dim, dim)
  const Tensor* wo;              // (dim, n_heads*head_dim)
  std::vector<float> bq, bk, bv; // empty without attn_qkv_bias
  std::vector<float> ffn_norm;   // (dim)
  const Tensor* w_gate;          // (hidden_dim, dim)
  const Tensor* w_up;            // (hidden_dim, dim)
  const Tensor* w_down;          // (dim, hidden_dim)
};

struct TransformerWeights {
  const Tensor* token_embd;      // (vocab, dim)
  std::vector<LayerWeights> layers;
  std::vector<float> output_norm;  // (dim)
  const Tensor* output;          // (vocab, dim); token_embd when tied
  std::vector<float> rope_inv_freq;  // (head_dim/2): theta^(-2i/head_dim) / scaling divisor

  // Binds and validates every tensor `checkpoint.config` requires (names in checkpoint.h).
  static Result<TransformerWeights> bind(const Checkpoint& checkpoint);
};

}  // namespace anvil
