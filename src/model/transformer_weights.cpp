// Binding checkpoint tensors to the transformer's fields, with one clear error per problem.
#include "model/transformer_weights.h"

#include <fmt/format.h>

#include <cmath>

#include "model/rope.h"

namespace anvil {
namespace {

class Binder {
 public:
  explicit Binder(const Checkpoint& checkpoint) : checkpoint_(checkpoint) {}

  Result<const Tensor*> matrix(const std::string& name, int64_t rows, int64_t cols) {
    const Tensor* t = checkpoint_.find(name);
    if (!t) return Status::error(fmt::format("{}: missing tensor {}", checkpoint_.source, name));
    if (t->shape.size() != 2 || t->shape[0] != rows || t->shape[1] != cols)
      return Status::error(fmt::format("{}: tensor {} has shape {}, expected ({}, {})", checkpoint_.source, name,
                                       t->shape_string(), rows, cols));
    if (cols % dtype_info(t->dtype).block_elems != 0)
      return Status::error(fmt::format("{}: tensor {} has rows of {} elements, not a multiple of the {} block size",
                                       checkpoint_.source, name, cols, dtype_name(t->dtype)));
    // Every loader attaches and checks scales; this also covers checkpoints built in memory.
    ANVIL_RETURN_IF_ERROR(check_quant_scale_layout(*t).with_context(checkpoint_.source));
    return t;
  }

  // Small vectors (norms, biases) are converted to float once.
  Result<std::vector<float>> vector(const std::string& name, int64_t n) {
    const Tensor* t = checkpoint_.find(name);
    if (!t) return Status::error(fmt::format("{}: missing tensor {}", checkpoint_.source, name));
    if (t->numel() != n || t->cols() != n)
      return Status::error(fmt::format("{}: tensor {} has shape {}, expected ({},)", checkpoint_.source, name,
                                       t->shape_string(), n));
    if (dtype_has_external_scales(t->dtype))
      return Status::error(fmt::format("{}: tensor {} is {}; norms, biases and rope tables must be float", checkpoint_.source,
                                       name, dtype_name(t->dtype)));
    if (n % dtype_info(t->dtype).block_elems != 0)
      return Status::error(fmt::format("{}: tensor {} of {} elements cannot be {}", checkpoint_.source, name, n,
                                       dtype_name(t->dtype)));
    std::vector<float> out(n);
    dtype_info(t->dtype).to_float(t->data, out.data(), n);
    return out;
  }

 private:
  const Checkpoint& checkpoint_;
};

Status check_config(const Checkpoint& checkpoint) {
  const ModelConfig& c = checkpoint.config;
  auto bad = [&](const std::string& what) {
    return Status::error(fmt::format("{}: invalid model config: {}", checkpoint.source, what));
  };
  if (c.vocab_size <= 0 || c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 ||
      c.n_kv_heads <= 0 || c.head_dim <= 0)
    return bad(fmt::format("sizes must be positive (vocab {}, dim {}, hidden {}, layers {}, heads {}, kv heads {}, "
                           "head_dim {})", c.vocab_size, c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads,
                           c.head_dim));
  if (c.n_heads % c.n_kv_heads != 0)
    return bad(fmt::format("n_heads {} is not a multiple of n_kv_heads {}", c.n_heads, c.n_kv_heads));
  if (c.head_dim % 2 != 0 || c.head_dim > 2048) return bad(fmt::format("head_dim {} must be even and <= 2048", c.head_dim));
  if (c.context_length <= 0) return bad(fmt::format("context length {} must be positive", c.context_length));
  if (!(c.rms_norm_eps > 0.0f) || !(c.rope_theta > 0.0f)) return bad("rms_norm_eps and rope_theta must be positive");
  return Status::ok();
}

}  // namespace

Result<TransformerWeights> TransformerWeights::bind(const Checkpoint& checkpoint) {
  ANVIL_RETURN_IF_ERROR(check_config(checkpoint));
  const ModelConfig& c = checkpoint.config;
  const int64_t q_dim = c.n_heads * c.head_dim, kv_dim = c.n_kv_heads * c.head_dim;
  Binder bind(checkpoint);
  TransformerWeights w;
  ANVIL_ASSIGN_OR_RETURN(w.token_embd, bind.matrix("token_embd.weight", c.vocab_size, c.dim));
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    LayerWeights layer;
    ANVIL_ASSIGN_OR_RETURN(layer.attn_norm, bind.vector(p + "attn_norm.weight", c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.wq, bind.matrix(p + "attn_q.weight", q_dim, c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.wk, bind.matrix(p + "attn_k.weight", kv_dim, c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.wv, bind.matrix(p + "attn_v.weight", kv_dim, c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.wo, bind.matrix(p + "attn_output.weight", c.dim, q_dim));
    if (c.attn_qkv_bias) {
      ANVIL_ASSIGN_OR_RETURN(layer.bq, bind.vector(p + "attn_q.bias", q_dim));
      ANVIL_ASSIGN_OR_RETURN(layer.bk, bind.vector(p + "attn_k.bias", kv_dim));
      ANVIL_ASSIGN_OR_RETURN(layer.bv, bind.vector(p + "attn_v.bias", kv_dim));
    }
    ANVIL_ASSIGN_OR_RETURN(layer.ffn_norm, bind.vector(p + "ffn_norm.weight", c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.w_gate, bind.matrix(p + "ffn_gate.weight", c.hidden_dim, c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.w_up, bind.matrix(p + "ffn_up.weight", c.hidden_dim, c.dim));
    ANVIL_ASSIGN_OR_RETURN(layer.w_down, bind.matrix(p + "ffn_down.weight", c.dim, c.hidden_dim));
    w.layers.push_back(std::move(layer));
  }
  ANVIL_ASSIGN_OR_RETURN(w.output_norm, bind.vector("output_norm.weight", c.dim));
  if (c.tied_embeddings) {
    w.output = w.token_embd;
  } else {
    ANVIL_ASSIGN_OR_RETURN(w.output, bind.matrix("output.weight", c.vocab_size, c.dim));
  }

  // A stored rope_freqs.weight (GGUF Llama 3.1) wins over recomputing it from the config.
  std::vector<float> divisors;
  if (checkpoint.find("rope_freqs.weight")) {
    ANVIL_ASSIGN_OR_RETURN(divisors, bind.vector("rope_freqs.weight", c.head_dim / 2));
  } else {
    divisors = rope_frequency_divisors(c);
  }
  w.rope_inv_freq.resize(c.head_dim / 2);
  for (int64_t i = 0; i < c.head_dim / 2; ++i) {
    const double base = std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / static_cast<double>(c.head_dim));
    w.rope_inv_freq[i] = static_cast<float>(base / divisors[i]);
  }
  return w;
}

}  // namespace anvil
