// Shared transformer layer helpers.
#include "model/layers.h"

#include <algorithm>
#include <cmath>

#include "compute/cpu/attention.h"
#include "compute/cpu/matmul.h"
#include "compute/cpu/rope.h"
#include "compute/cpu/vector_ops.h"

namespace anvil {

ForwardScratch::ForwardScratch(const ModelConfig& c, int64_t n)
    : n_tokens(n), hidden(n * c.dim), normed(n * c.dim), q(n * c.n_heads * c.head_dim),
      k(n * c.n_kv_heads * c.head_dim), v(n * c.n_kv_heads * c.head_dim), attn_out(n * c.n_heads * c.head_dim),
      gate(n * c.hidden_dim), up(n * c.hidden_dim), proj(n * c.dim) {}

void build_norm(const float* in, const std::vector<float>& weight, float eps, int64_t n_tokens, int64_t dim,
                float* out) {
  for (int64_t t = 0; t < n_tokens; ++t) rms_norm(in + t * dim, weight.data(), out + t * dim, dim, eps);
}

void build_attention(ThreadPool& pool, const ModelConfig& c, const TransformerWeights& w, int64_t layer,
                     int64_t first_position, SequenceKvCache& cache, ForwardScratch& s) {
  const LayerWeights& lw = w.layers[layer];
  const int64_t n = s.n_tokens, hd = c.head_dim;
  const int64_t q_dim = c.n_heads * hd, kv_dim = c.n_kv_heads * hd;
  matmul(pool, *lw.wq, s.normed.data(), n, s.q.data());
  matmul(pool, *lw.wk, s.normed.data(), n, s.k.data());
  matmul(pool, *lw.wv, s.normed.data(), n, s.v.data());
  for (int64_t t = 0; t < n; ++t) {
    if (!lw.bq.empty()) {
      add_inplace(s.q.data() + t * q_dim, lw.bq.data(), q_dim);
      add_inplace(s.k.data() + t * kv_dim, lw.bk.data(), kv_dim);
      add_inplace(s.v.data() + t * kv_dim, lw.bv.data(), kv_dim);
    }
    const int64_t position = first_position + t;
    apply_rope(s.q.data() + t * q_dim, c.n_heads, hd, position, w.rope_inv_freq.data(), c.rope_style);
    apply_rope(s.k.data() + t * kv_dim, c.n_kv_heads, hd, position, w.rope_inv_freq.data(), c.rope_style);
    std::copy_n(s.k.data() + t * kv_dim, kv_dim, cache.keys(layer, position));
    std::copy_n(s.v.data() + t * kv_dim, kv_dim, cache.values(layer, position));
  }

  // One task per (token, query head); a query head reads the KV head of its group (GQA).
  const int64_t group = c.n_heads / c.n_kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const float* keys = cache.keys(layer, 0);
  const float* values = cache.values(layer, 0);
  pool.parallel_for(n * c.n_heads, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(first_position + n);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t t = task / c.n_heads, head = task % c.n_heads;
      const int64_t position = first_position + t;
      // Sliding window W: a query sees itself and the W-1 positions before it.
      const int64_t first = c.sliding_window > 0 ? std::max<int64_t>(0, position - c.sliding_window + 1) : 0;
      const int64_t kv_offset = (head / group) * hd;
      attend_one_head(s.q.data() + t * q_dim + head * hd, keys + kv_offset, values + kv_offset, kv_dim, first,
                      position, hd, scale, scores.data(), s.attn_out.data() + t * q_dim + head * hd);
    }
  });
  matmul(pool, *lw.wo, s.attn_out.data(), n, s.proj.data());
}

void build_ffn(ThreadPool& pool, const LayerWeights& lw, int64_t hidden_dim, ForwardScratch& s) {
  const int64_t n = s.n_tokens;
  matmul(pool, *lw.w_gate, s.normed.data(), n, s.gate.data());
  matmul(pool, *lw.w_up, s.normed.data(), n, s.up.data());
  silu_mul_inplace(s.gate.data(), s.up.data(), n * hidden_dim);
  matmul(pool, *lw.w_down, s.gate.data(), n, s.proj.data());
}

}  // namespace anvil
