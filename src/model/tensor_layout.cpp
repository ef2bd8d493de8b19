// The canonical tensor list of the Llama-family architectures.
#include "model/tensor_layout.h"

namespace anvil {

std::vector<RequiredTensor> required_tensors(const ModelConfig& c) {
  const int64_t q_rows = c.n_heads * c.head_dim, kv_rows = c.n_kv_heads * c.head_dim;
  std::vector<RequiredTensor> list;
  list.push_back({"token_embd.weight", {c.vocab_size, c.dim}});
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    const std::string p = "blk." + std::to_string(layer) + ".";
    list.push_back({p + "attn_norm.weight", {c.dim}});
    list.push_back({p + "attn_q.weight", {q_rows, c.dim}});
    list.push_back({p + "attn_k.weight", {kv_rows, c.dim}});
    list.push_back({p + "attn_v.weight", {kv_rows, c.dim}});
    if (c.attn_qkv_bias) {
      list.push_back({p + "attn_q.bias", {q_rows}});
      list.push_back({p + "attn_k.bias", {kv_rows}});
      list.push_back({p + "attn_v.bias", {kv_rows}});
    }
    list.push_back({p + "attn_output.weight", {c.dim, q_rows}});
    list.push_back({p + "ffn_norm.weight", {c.dim}});
    list.push_back({p + "ffn_gate.weight", {c.hidden_dim, c.dim}});
    list.push_back({p + "ffn_up.weight", {c.hidden_dim, c.dim}});
    list.push_back({p + "ffn_down.weight", {c.dim, c.hidden_dim}});
  }
  list.push_back({"output_norm.weight", {c.dim}});
  if (!c.tied_embeddings) list.push_back({"output.weight", {c.vocab_size, c.dim}});
  return list;
}

}  // namespace anvil
