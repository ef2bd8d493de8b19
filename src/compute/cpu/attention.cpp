// Attention driver: kernel choice per ISA, work items of one or many problems over the threads,
// split-KV merge; the reference.
#include "compute/cpu/attention.h"

#include <algorithm>
#include <atomic>
#include <cassert>
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

KvElem kv_elem_of(DType dtype) {
  switch (dtype) {
    case DType::F16: return KvElem::F16;
    case DType::BF16: return KvElem::BF16;
    case DType::F8_E4M3: return KvElem::F8_E4M3;
    case DType::I8: return KvElem::I8;
    default: assert(dtype == DType::F32); return KvElem::F32;
  }
}

// Cache row of sequence position j.
int64_t cache_row(const AttentionProblem& p, int64_t j) {
  return p.block_table == nullptr ? j : static_cast<int64_t>(p.block_table[j / p.block_size]) * p.block_size + j % p.block_size;
}

int64_t kv_head_stride(const AttentionProblem& p) { return p.kv_head_stride > 0 ? p.kv_head_stride : p.head_dim; }
int64_t block_stride(const AttentionProblem& p) {
  return p.block_stride > 0 ? p.block_stride : p.block_size * p.kv_stride;
}

// Elements from p.keys to sequence position j's KV head k (AttentionProblem::keys).
int64_t kv_offset(const AttentionProblem& p, int64_t j, int64_t k) {
  const int64_t head = k * kv_head_stride(p);
  if (p.block_table == nullptr) return j * p.kv_stride + head;
  return static_cast<int64_t>(p.block_table[j / p.block_size]) * block_stride(p) + j % p.block_size * p.kv_stride + head;
}

// How one problem is cut into work items: (query block x KV head x key split).
struct ProblemPlan {
  int64_t group, bq, n_blocks, rows_max, splits;
  int64_t part_o, part_ml;  // offsets of its split partials (splits > 1) in the shared buffers
};

// Slot of a split partial within its problem's share: query block, then KV head, then split.
int64_t partial_slot(const ProblemPlan& plan, int64_t n_kv_heads, int64_t block, int64_t kv_head, int64_t split) {
  return (block * n_kv_heads + kv_head) * plan.splits + split;
}

// One work item; items of all problems are sorted by decreasing cost (later query blocks see more
// keys under the causal mask) so that the long ones start first.
struct WorkItem {
  int64_t cost;
  int32_t problem;
  int32_t block, kv_head, split;
};

}  // namespace

void attention(ThreadPool& pool, const AttentionProblem& p) { attention_batch(pool, {&p, 1}); }

void attention_batch(ThreadPool& pool, std::span<const AttentionProblem> problems) {
  const FlashKernel kernel = select_kernel();
  const int64_t n_problems = static_cast<int64_t>(problems.size());
  std::vector<ProblemPlan> plans(n_problems);
  int64_t unsplit_items = 0;
  for (int64_t i = 0; i < n_problems; ++i) {
    const AttentionProblem& p = problems[i];
    ProblemPlan& plan = plans[i];
    if (p.n_tokens <= 0) continue;  // n_blocks 0: no items
    assert(p.block_table == nullptr || p.block_size > 0);
    plan.group = p.n_heads / p.n_kv_heads;
    plan.bq = query_block(plan.group, p.n_tokens);
    plan.n_blocks = (p.n_tokens + plan.bq - 1) / plan.bq;
    plan.rows_max = plan.bq * plan.group;
    unsplit_items += p.n_kv_heads * plan.n_blocks;
  }

  // Split-KV when heads and blocks of all problems together leave threads idle and a problem has a
  // long context (decode).
  const int64_t want = 2 * static_cast<int64_t>(pool.thread_count());
  int64_t n_items = 0, part_o_floats = 0, part_ml_floats = 0, n_merges = 0;
  size_t scratch_floats = 0;
  for (int64_t i = 0; i < n_problems; ++i) {
    const AttentionProblem& p = problems[i];
    ProblemPlan& plan = plans[i];
    if (plan.n_blocks == 0) continue;
    int64_t splits = p.kv_splits;
    if (splits <= 0) {
      const int64_t keys = p.first_position + p.n_tokens - first_visible(p.first_position, p.window);
      splits = keys >= 512 && unsplit_items < want ? std::min((want + unsplit_items - 1) / unsplit_items, keys / 256) : 1;
    }
    plan.splits = std::max<int64_t>(splits, 1);
    const int64_t tasks = p.n_kv_heads * plan.n_blocks;
    n_items += tasks * plan.splits;
    if (plan.splits > 1) {
      plan.part_o = part_o_floats;
      plan.part_ml = part_ml_floats;
      part_o_floats += tasks * plan.splits * plan.rows_max * p.head_dim;
      part_ml_floats += 2 * tasks * plan.splits * plan.rows_max;
      n_merges += tasks;
    }
    scratch_floats = std::max<size_t>(scratch_floats, flash_scratch_floats(p.head_dim, plan.rows_max));
  }
  if (n_items == 0) return;

  std::vector<WorkItem> items;
  items.reserve(n_items);
  for (int64_t i = 0; i < n_problems; ++i) {
    const AttentionProblem& p = problems[i];
    const ProblemPlan& plan = plans[i];
    for (int64_t block = plan.n_blocks - 1; block >= 0; --block) {
      const int64_t t0 = block * plan.bq, nt = std::min(plan.bq, p.n_tokens - t0);
      const int64_t last = p.first_position + t0 + nt - 1;
      const int64_t keys = last + 1 - first_visible(p.first_position + t0, p.window);
      const int64_t cost = nt * plan.group * ((keys + plan.splits - 1) / plan.splits) * p.head_dim;
      for (int64_t kv_head = 0; kv_head < p.n_kv_heads; ++kv_head)
        for (int64_t split = 0; split < plan.splits; ++split)
          items.push_back({cost, static_cast<int32_t>(i), static_cast<int32_t>(block), static_cast<int32_t>(kv_head),
                           static_cast<int32_t>(split)});
    }
  }
  if (n_problems > 1)
    std::stable_sort(items.begin(), items.end(), [](const WorkItem& a, const WorkItem& b) { return a.cost > b.cost; });

  std::vector<float> part_o(part_o_floats), part_ml(part_ml_floats);
  std::atomic<int64_t> next{0};
  pool.run([&](int, int) {
    thread_local std::vector<float> scratch;
    scratch.resize(std::max(scratch.size(), scratch_floats));
    for (int64_t index = next.fetch_add(1); index < n_items; index = next.fetch_add(1)) {
      const WorkItem& item = items[index];
      const AttentionProblem& p = problems[item.problem];
      const ProblemPlan& plan = plans[item.problem];
      const int64_t hd = p.head_dim, group = plan.group, kv_head = item.kv_head;
      const int64_t t0 = item.block * plan.bq, nt = std::min(plan.bq, p.n_tokens - t0);
      const int64_t pos0 = p.first_position + t0;
      const size_t elem_bytes = dtype_info(p.kv_dtype).block_bytes;
      FlashArgs a{};
      a.q = p.q + t0 * p.q_stride + kv_head * group * hd;
      a.q_stride = p.q_stride;
      a.keys = static_cast<const char*>(p.keys) + kv_head * kv_head_stride(p) * elem_bytes;
      a.values = static_cast<const char*>(p.values) + kv_head * kv_head_stride(p) * elem_bytes;
      a.kv_stride = p.kv_stride;
      a.block_stride = block_stride(p);
      a.kv_elem = kv_elem_of(p.kv_dtype);
      assert((p.kv_dtype == DType::F8_E4M3 || p.kv_dtype == DType::I8) == (p.key_scales != nullptr));
      if (p.key_scales != nullptr) {
        assert(p.value_scales != nullptr);
        a.key_scales = p.key_scales + kv_head;
        a.value_scales = p.value_scales + kv_head;
        a.scale_stride = p.n_kv_heads;
      }
      a.block_table = p.block_table;
      a.block_size = p.block_size;
      a.head_dim = hd;
      a.group = group;
      a.n_tokens = nt;
      a.first_position = pos0;
      a.window = p.window;
      a.scale = p.scale;
      a.scratch = scratch.data();
      a.key_begin = first_visible(pos0, p.window);
      a.key_end = pos0 + nt;
      if (plan.splits > 1) {
        // Equal shares of the block's key range, in whole tiles.
        const int64_t share = round_up((a.key_end - a.key_begin + plan.splits - 1) / plan.splits, kKeyTile);
        a.key_begin = std::min(a.key_end, a.key_begin + item.split * share);
        a.key_end = std::min(a.key_end, a.key_begin + share);
        const int64_t slot = partial_slot(plan, p.n_kv_heads, item.block, kv_head, item.split);
        a.part_o = part_o.data() + plan.part_o + slot * plan.rows_max * hd;
        a.part_m = part_ml.data() + plan.part_ml + 2 * slot * plan.rows_max;
        a.part_l = a.part_m + plan.rows_max;
      } else {
        a.out = p.out + t0 * p.out_stride + kv_head * group * hd;
        a.out_stride = p.out_stride;
      }
      kernel(a);
    }
  });
  if (n_merges == 0) return;

  // Log-sum-exp merge: out = sum_s e^(m_s - m) o_s / sum_s e^(m_s - m) l_s, m = max_s m_s.
  struct MergeTask {
    int32_t problem;
    int32_t block, kv_head;
  };
  std::vector<MergeTask> merges;
  merges.reserve(n_merges);
  for (int64_t i = 0; i < n_problems; ++i)
    if (plans[i].n_blocks > 0 && plans[i].splits > 1)
      for (int64_t block = 0; block < plans[i].n_blocks; ++block)
        for (int64_t kv_head = 0; kv_head < problems[i].n_kv_heads; ++kv_head)
          merges.push_back({static_cast<int32_t>(i), static_cast<int32_t>(block), static_cast<int32_t>(kv_head)});
  pool.parallel_for(n_merges, [&](int64_t begin, int64_t end) {
    std::vector<float> acc;
    for (int64_t task = begin; task < end; ++task) {
      const MergeTask& merge = merges[task];
      const AttentionProblem& p = problems[merge.problem];
      const ProblemPlan& plan = plans[merge.problem];
      const int64_t hd = p.head_dim, group = plan.group, rows_max = plan.rows_max, splits = plan.splits;
      acc.resize(hd);
      const int64_t first_slot = partial_slot(plan, p.n_kv_heads, merge.block, merge.kv_head, 0);
      const float* ml = part_ml.data() + plan.part_ml;
      const float* po = part_o.data() + plan.part_o;
      const int64_t t0 = merge.block * plan.bq, nt = std::min(plan.bq, p.n_tokens - t0);
      for (int64_t r = 0; r < nt * group; ++r) {
        float m = -INFINITY;
        for (int64_t s = 0; s < splits; ++s) m = std::max(m, ml[2 * (first_slot + s) * rows_max + r]);
        std::fill(acc.begin(), acc.end(), 0.0f);
        float l = 0.0f;
        for (int64_t s = 0; s < splits; ++s) {
          const int64_t slot = first_slot + s;
          const float ms = ml[2 * slot * rows_max + r], ls = ml[(2 * slot + 1) * rows_max + r];
          if (ls == 0.0f) continue;  // a split that saw no key of this row
          const float w = std::exp(ms - m);
          l += w * ls;
          axpy(w, po + (slot * rows_max + r) * hd, acc.data(), hd);
        }
        const int64_t t = r / group, g = r % group;
        float* dst = p.out + (t0 + t) * p.out_stride + (merge.kv_head * group + g) * hd;
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        for (int64_t d = 0; d < hd; ++d) dst[d] = acc[d] * inv;
      }
    }
  });
}

void attention_reference(const AttentionProblem& p) {
  const int64_t group = p.n_heads / p.n_kv_heads, hd = p.head_dim;
  const DTypeInfo& info = dtype_info(p.kv_dtype);
  const int64_t n_rows = p.first_position + p.n_tokens, first_row = first_visible(p.first_position, p.window);
  // The rows of one KV head as f32 at their sequence positions, for attend_one_head.
  std::vector<float> keys(n_rows * hd), values(n_rows * hd), scores(n_rows);
  for (int64_t kv_head = 0; kv_head < p.n_kv_heads; ++kv_head) {
    for (int64_t j = first_row; j < n_rows; ++j) {
      const size_t at = static_cast<size_t>(kv_offset(p, j, kv_head)) * info.block_bytes;
      info.to_float(static_cast<const char*>(p.keys) + at, keys.data() + j * hd, hd);
      info.to_float(static_cast<const char*>(p.values) + at, values.data() + j * hd, hd);
      if (p.key_scales != nullptr) {  // F8_E4M3 / I8: codes x the row's scale, as the kernels do
        const int64_t s = cache_row(p, j) * p.n_kv_heads + kv_head;
        for (int64_t i = 0; i < hd; ++i) {
          keys[j * hd + i] *= p.key_scales[s];
          values[j * hd + i] *= p.value_scales[s];
        }
      }
    }
    for (int64_t t = 0; t < p.n_tokens; ++t) {
      const int64_t position = p.first_position + t;
      for (int64_t h = kv_head * group; h < (kv_head + 1) * group; ++h)
        attend_one_head(p.q + t * p.q_stride + h * hd, keys.data(), values.data(), hd,
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
