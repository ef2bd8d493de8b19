// Shared layer helpers every architecture's graph is made of (llama.cpp's build_norm /
// build_attn / build_ffn): each works on a packed batch of n_tokens rows, the chunks of one or
// several sequences (ForwardBatch) one after the other.
#pragma once

#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "model/forward_batch.h"
#include "model/kv_store.h"
#include "model/linear_observer.h"
#include "model/model_config.h"
#include "model/transformer_weights.h"

namespace anvil {

// Scratch activations for one forward call, sized for n_tokens.
struct ForwardScratch {
  ForwardScratch(const ModelConfig& c, int64_t n_tokens);
  int64_t n_tokens = 0;
  std::vector<float> hidden;    // (n_tokens, dim): the residual stream
  std::vector<float> normed;    // (n_tokens, dim)
  std::vector<float> q;         // (n_tokens, n_heads*head_dim)
  std::vector<float> k;         // (n_tokens, n_kv_heads*head_dim)
  std::vector<float> v;         // (n_tokens, n_kv_heads*head_dim)
  std::vector<float> attn_out;  // (n_tokens, n_heads*head_dim)
  std::vector<float> gate;      // (n_tokens, hidden_dim)
  std::vector<float> up;        // (n_tokens, hidden_dim)
  std::vector<float> proj;      // (n_tokens, dim): output of wo / w_down before the residual add
  LinearInputObserver* observer = nullptr;  // calibration only: sees every linear layer's input

  // Sizes every buffer for n_tokens rows of this model. Capacity is kept, so a scratch reused
  // across forward calls allocates (and zero-fills) only when a call is larger than any before:
  // a fresh 512-token scratch is ~54 MB of page faults and zeroing, ~4% of a Llama-3.2-1B prefill.
  void resize(const ModelConfig& c, int64_t n_tokens);
};

// The calling thread's forward scratch, resized for n_tokens (one per thread: the engine thread,
// a benchmark's thread). Contents are left from the previous call; every layer writes before it reads.
ForwardScratch& thread_forward_scratch(const ModelConfig& c, int64_t n_tokens);

// out[t] = rmsnorm(in[t]) * weight for every token row.
void build_norm(const float* in, const std::vector<float>& weight, float eps, int64_t n_tokens, int64_t dim,
                float* out);

// Self-attention of a layer for every chunk of the batch: q/k/v projections over all rows
// (+bias), RoPE at each token's position, K/V rows written to the store through the chunk's block
// table, causal (optionally sliding-window) GQA attention per chunk, output projection.
// Reads scratch.normed, writes scratch.proj.
void build_attention(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, int64_t layer,
                     const ForwardBatch& batch, const KvStoreView& kv, ForwardScratch& scratch);

// SwiGLU feed-forward: w_down(silu(w_gate x) * w_up x). Reads scratch.normed, writes scratch.proj.
void build_ffn(ThreadPool& pool, const LayerWeights& lw, int64_t layer, int64_t hidden_dim, ForwardScratch& scratch);

// One pre-norm decoder layer on scratch.hidden, in place: x += attn(norm(x)); x += ffn(norm(x)).
void build_decoder_layer(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, int64_t layer,
                         const ForwardBatch& batch, const KvStoreView& kv, ForwardScratch& scratch);

}  // namespace anvil
