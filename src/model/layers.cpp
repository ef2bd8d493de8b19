// Shared transformer layer helpers.
#include "model/layers.h"

#include <algorithm>
#include <cmath>

#include "compute/cpu/attention.h"
#include "compute/cpu/matmul.h"
#include "compute/cpu/rope.h"
#include "compute/cpu/vector_ops.h"

namespace anvil {

ForwardScratch::ForwardScratch(const ModelConfig& c, int64_t n) { resize(c, n); }

void ForwardScratch::resize(const ModelConfig& c, int64_t n) {
  n_tokens = n;
  hidden.resize(n * c.dim);
  normed.resize(n * c.dim);
  q.resize(n * c.n_heads * c.head_dim);
  k.resize(n * c.n_kv_heads * c.head_dim);
  v.resize(n * c.n_kv_heads * c.head_dim);
  attn_out.resize(n * c.n_heads * c.head_dim);
  gate.resize(n * c.hidden_dim);
  up.resize(n * c.hidden_dim);
  proj.resize(n * c.dim);
}

ForwardScratch& thread_forward_scratch(const ModelConfig& c, int64_t n) {
  thread_local ForwardScratch scratch(c, 0);
  scratch.resize(c, n);
  return scratch;
}

void build_norm(const float* in, const std::vector<float>& weight, float eps, int64_t n_tokens, int64_t dim,
                float* out) {
  for (int64_t t = 0; t < n_tokens; ++t) rms_norm(in + t * dim, weight.data(), out + t * dim, dim, eps);
}

void build_attention(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, int64_t layer,
                     const ForwardBatch& batch, const KvStoreView& kv, ForwardScratch& s) {
  const LayerWeights& lw = w.layers[layer];
  const int64_t n = s.n_tokens, hd = c.head_dim;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  const MatmulOutput qkv[] = {{lw.wq, s.q.data()}, {lw.wk, s.k.data()}, {lw.wv, s.v.data()}};
  if (s.observer) s.observer->observe(layer, LinearInputSite::AttnQkv, s.normed.data(), n, c.dim);
  matmul_shared_input(pool, qkv, s.normed.data(), n);
  float cos_table[1024], sin_table[1024];  // head_dim <= 2048 is checked at model creation
  void* const key_base = kv.keys[layer];
  void* const value_base = kv.values[layer];
  float* const key_scales = kv.key_scales.empty() ? nullptr : kv.key_scales[layer];  // fp8 / int8 only
  float* const value_scales = kv.value_scales.empty() ? nullptr : kv.value_scales[layer];
  std::vector<AttentionProblem> problems;
  problems.reserve(batch.chunks.size());
  int64_t t = 0;  // row of the chunk's first token in the batch
  for (const SequenceChunk& chunk : batch.chunks) {
    for (int64_t i = 0; i < chunk.n_tokens; ++i) {
      const int64_t row = t + i;
      if (!lw.bq.empty()) {
        add_inplace(s.q.data() + row * q_dim, lw.bq.data(), q_dim);
        add_inplace(s.k.data() + row * kv_dim, lw.bk.data(), kv_dim);
        add_inplace(s.v.data() + row * kv_dim, lw.bv.data(), kv_dim);
      }
      // One angle table per token serves its q and k heads.
      const int64_t position = chunk.first_position + i;
      rope_angles(position, w.rope_inv_freq.data(), hd / 2, cos_table, sin_table);
      apply_rope_table(s.q.data() + row * q_dim, c.n_heads, hd, cos_table, sin_table, c.rope_style);
      apply_rope_table(s.k.data() + row * kv_dim, c.n_kv_heads, hd, cos_table, sin_table, c.rope_style);
      const int64_t cache_row = chunk.block_table[position / kv.block_size] * kv.block_size + position % kv.block_size;
      store_kv_row(kv, key_base, key_scales, cache_row, s.k.data() + row * kv_dim);
      store_kv_row(kv, value_base, value_scales, cache_row, s.v.data() + row * kv_dim);
    }
    // Flash attention over the chunk's cache rows: threads over (KV head x query block), or
    // split-KV for a long decode; each GQA group shares its K/V loads. Sliding window W: a
    // query sees itself and the W-1 positions before it.
    AttentionProblem& problem = problems.emplace_back();
    problem.q = s.q.data() + t * q_dim;
    problem.q_stride = q_dim;
    problem.keys = key_base;
    problem.values = value_base;
    problem.kv_stride = kv.head_major ? hd : kv_dim;
    problem.kv_head_stride = kv.head_major ? kv.block_size * hd : hd;
    problem.block_stride = kv.block_size * kv_dim;
    problem.kv_dtype = kv.dtype;
    problem.key_scales = key_scales;
    problem.value_scales = value_scales;
    problem.block_table = chunk.block_table.data();
    problem.block_size = kv.block_size;
    problem.out = s.attn_out.data() + t * q_dim;
    problem.out_stride = q_dim;
    problem.n_tokens = chunk.n_tokens;
    problem.n_heads = c.n_heads;
    problem.n_kv_heads = c.n_kv_heads;
    problem.head_dim = hd;
    problem.first_position = chunk.first_position;
    problem.window = c.sliding_window > 0 ? c.sliding_window : 0;
    problem.scale = 1.0f / std::sqrt(static_cast<float>(hd));
    t += chunk.n_tokens;
  }
  // All sequences' attention in one dispatch, so many short decodes keep every thread busy.
  attention_batch(pool, problems);
  if (s.observer) s.observer->observe(layer, LinearInputSite::AttnOutput, s.attn_out.data(), n, q_dim);
  matmul(pool, *lw.wo, s.attn_out.data(), n, s.proj.data());
}

void build_ffn(ThreadPool& pool, const LayerWeights& lw, int64_t layer, int64_t hidden_dim, ForwardScratch& s) {
  const int64_t n = s.n_tokens;
  const MatmulOutput gate_up[] = {{lw.w_gate, s.gate.data()}, {lw.w_up, s.up.data()}};
  if (s.observer) s.observer->observe(layer, LinearInputSite::FfnGateUp, s.normed.data(), n, lw.w_gate->cols());
  matmul_shared_input(pool, gate_up, s.normed.data(), n);
  silu_mul_inplace(s.gate.data(), s.up.data(), n * hidden_dim);
  if (s.observer) s.observer->observe(layer, LinearInputSite::FfnDown, s.gate.data(), n, hidden_dim);
  matmul(pool, *lw.w_down, s.gate.data(), n, s.proj.data());
}

void build_decoder_layer(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, int64_t layer,
                         const ForwardBatch& batch, const KvStoreView& kv, ForwardScratch& s) {
  const LayerWeights& lw = w.layers[layer];
  const int64_t n = s.n_tokens;
  build_norm(s.hidden.data(), lw.attn_norm, c.rms_norm_eps, n, c.dim, s.normed.data());
  build_attention(pool, c, w, layer, batch, kv, s);
  add_inplace(s.hidden.data(), s.proj.data(), n * c.dim);

  build_norm(s.hidden.data(), lw.ffn_norm, c.rms_norm_eps, n, c.dim, s.normed.data());
  build_ffn(pool, lw, layer, c.hidden_dim, s);
  add_inplace(s.hidden.data(), s.proj.data(), n * c.dim);
}

}  // namespace anvil
