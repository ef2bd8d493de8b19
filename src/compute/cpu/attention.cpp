// Attention driver: kernel choice per ISA, work split over threads, split-KV merge; the reference.
#include "compute/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <vector>

#include "compute/cpu/attention_kernels.h"
#include "compute/cpu/isa.h"
#include "compute/cpu/vector_ops.h"

namespace anvil {

using namespace attention_detail;

namespace {

FlashKernel select_kernel() {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa >= Isa::Avx512) return flash_kernel_avx512();
  if (isa >= Isa::Avx2) return flash_kernel_avx2();
#endif
  return flash_kernel_scalar();
}

// Query tokens per block: about 64 query rows (tokens x group heads) fill the register tiles
// and amortize each K/V tile load, while keeping the accumulators (rows x head_dim) in L1/L2.
int64_t query_block(int64_t group, int64_t n_tokens) { return std::clamp<int64_t>(64 / group, 1, n_tokens); }

int64_t first_visible(int64_t position, int64_t window) {
  return window > 0 ? std::max<int64_t>(0, position - window + 1) : 0;
}

}  // namespace

void attention(ThreadPool& pool, const AttentionProblem& p) {
  if (p.n_tokens <= 0) return;
  const FlashKernel kernel = select_kernel();
  const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
  const int64_t bq = query_block(group, p.n_tokens);
  const int64_t n_blocks = (p.n_tokens + bq - 1) / bq;
  const int64_t rows_max = bq * group;

  int64_t splits = p.kv_splits;
  if (splits <= 0) {
    // Split-KV when heads and blocks alone leave threads idle on a long context (decode).
    const int64_t keys = p.first_position + p.n_tokens - first_visible(p.first_position, p.window);
    const int64_t items = p.n_kv_heads * n_blocks, want = 2 * static_cast<int64_t>(pool.thread_count());
    splits = keys >= 512 && items < want ? std::min((want + items - 1) / items, keys / 256) : 1;
    splits = std::max<int64_t>(splits, 1);
  }
  const int64_t n_items = p.n_kv_heads * n_blocks * splits;
  std::vector<float> part_o, part_ml;
  if (splits > 1) {
    part_o.resize(n_items * rows_max * hd);
    part_ml.resize(2 * n_items * rows_max);
  }

  // Items in decreasing cost: later query blocks see more keys under the causal mask.
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    thread_local std::vector<float> scratch;
    scratch.resize(std::max<size_t>(scratch.size(), flash_scratch_floats(hd, rows_max)));
    for (int64_t item = next.fetch_add(1); item < n_items; item = next.fetch_add(1)) {
      const int64_t block = n_blocks - 1 - item / (p.n_kv_heads * splits);
      const int64_t kv_head = item / splits % p.n_kv_heads, split = item % splits;
      const int64_t t0 = block * bq, nt = std::min(bq, p.n_tokens - t0);
      const int64_t pos0 = p.first_position + t0;
      FlashArgs a{};
      a.q = p.q + t0 * p.q_stride + kv_head * group * hd;
      a.q_stride = p.q_stride;
      a.keys = p.keys + kv_head * hd;
      a.values = p.values + kv_head * hd;
      a.kv_stride = p.kv_stride;
      a.head_dim = hd;
      a.group = group;
      a.n_tokens = nt;
      a.first_position = pos0;
      a.window = p.window;
      a.scale = p.scale;
      a.scratch = scratch.data();
      a.key_begin = first_visible(pos0, p.window);
      a.key_end = pos0 + nt;
      if (splits > 1) {
        // Equal shares of the block's key range, in whole tiles.
        const int64_t share = round_up((a.key_end - a.key_begin + splits - 1) / splits, kKeyTile);
        a.key_begin = std::min(a.key_end, a.key_begin + split * share);
        a.key_end = std::min(a.key_end, a.key_begin + share);
        a.part_o = part_o.data() + item * rows_max * hd;
        a.part_m = part_ml.data() + 2 * item * rows_max;
        a.part_l = a.part_m + rows_max;
      } else {
        a.out = p.out + t0 * p.out_stride + kv_head * group * hd;
        a.out_stride = p.out_stride;
      }
      kernel(a);
    }
  });
  if (splits == 1) return;

  // Log-sum-exp merge: out = sum_s e^(m_s - m) o_s / sum_s e^(m_s - m) l_s, m = max_s m_s.
  pool.parallel_for(p.n_kv_heads * n_blocks, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(hd);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t block = n_blocks - 1 - task / p.n_kv_heads, kv_head = task % p.n_kv_heads;
      const int64_t first_item = task * splits;  // the same ordering as the items above
      const int64_t t0 = block * bq, nt = std::min(bq, p.n_tokens - t0);
      for (int64_t r = 0; r < nt * group; ++r) {
        float m = -INFINITY;
        for (int64_t s = 0; s < splits; ++s) m = std::max(m, part_ml[2 * (first_item + s) * rows_max + r]);
        std::fill(acc.begin(), acc.end(), 0.0f);
        float l = 0.0f;
        for (int64_t s = 0; s < splits; ++s) {
          const int64_t item = first_item + s;
          const float ms = part_ml[2 * item * rows_max + r], ls = part_ml[(2 * item + 1) * rows_max + r];
          if (ls == 0.0f) continue;  // a split that saw no key of this row
          const float w = std::exp(ms - m);
          l += w * ls;
          axpy(w, part_o.data() + (item * rows_max + r) * hd, acc.data(), hd);
        }
        const int64_t t = r / group, g = r % group;
        float* dst = p.out + (t0 + t) * p.out_stride + (kv_head * group + g) * hd;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int64_t d = 0; d < hd; ++d) dst[d] = acc[d] * inv;
      }
    }
  });
}

void attention_reference(const AttentionProblem& p) {
  const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
  std::vector<float> scores(p.first_position + p.n_tokens);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t position = p.first_position + t;
    for (int64_t h = 0; h < p.n_heads; ++h) {
      const int64_t kv_offset = (h / group) * hd;
      attend_one_head(p.q + t * p.q_stride + h * hd, p.keys + kv_offset, p.values + kv_offset, p.kv_stride,
                      first_visible(position, p.window), position, hd, p.scale, scores.data(),
                      p.out + t * p.out_stride + h * hd);
    }
  }
}

void attend_one_head(const float* q, const float* keys, const float* values, int64_t row_stride,
                     int64_t first, int64_t last, int64_t head_dim, float scale, float* scores, float* out) {
  const int64_t n = last - first + 1;
  for (int64_t j = 0; j < n; ++j) scores[j] = dot_f32(q, keys + (first + j) * row_stride, head_dim) * scale;
  softmax_reference(scores, n);
  std::memset(out, 0, head_dim * sizeof(float));
  for (int64_t j = 0; j < n; ++j) axpy(scores[j], values + (first + j) * row_stride, out, head_dim);
}

}  // namespace anvil
