// LinearInputObserver: an optional hook that sees the activations entering a layer's linear
// weights (what calibrated quantizers, GPTQ and SmoothQuant, learn from). Null in inference.
#pragma once

#include <cstdint>

namespace anvil {

// The four distinct inputs of a Llama layer's linear weights. Weights that share an input share
// one site: q/k/v read the attention norm's output, gate/up the FFN norm's output.
enum class LinearInputSite {
  AttnQkv,    // attn_norm(x) -> attn_q, attn_k, attn_v      (n_tokens, dim)
  AttnOutput, // attention output -> attn_output             (n_tokens, n_heads*head_dim)
  FfnGateUp,  // ffn_norm(x) -> ffn_gate, ffn_up              (n_tokens, dim)
  FfnDown,    // silu(gate) * up -> ffn_down                 (n_tokens, hidden_dim)
};
constexpr int kLinearInputSites = 4;

class LinearInputObserver {
 public:
  // x: (n_tokens, cols) floats, row-major, exactly what the weights at `site` multiply. Called on
  // the thread that runs the forward pass (not from pool workers), before those matmuls.
  virtual void observe(int64_t layer, LinearInputSite site, const float* x, int64_t n_tokens, int64_t cols) = 0;

 protected:
  ~LinearInputObserver() = default;
};

}  // namespace anvil
