// Flash attention (prefill tiles, split-KV decode) on every ISA path x head_dim x query and key
// counts x sliding window x GQA group x key splits x 1 and 2 threads, against a double-precision
// reference; paged caches (shuffled block tables) of f32/f16/bf16 rows and of fp8/int8 codes with
// a scale per row and KV head; batches of problems.
// Prints the normalized error (max|out-ref| / max|ref|) per path.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "compute/cpu/attention.h"
#include "compute/cpu/isa.h"
#include "core/dtype.h"
#include "core/thread_pool.h"
#include "model/kv_store.h"
#include "quant/fp8_e4m3.h"

namespace anvil {
namespace {

std::vector<Isa> available_isas() {
  std::vector<Isa> isas;
  for (Isa cap : {Isa::Scalar, Isa::Avx2, Isa::Avx512}) {
    set_isa_cap(cap);
    if (active_isa() == cap) isas.push_back(cap);
  }
  set_isa_cap(Isa::Avx512);
  return isas;
}

std::vector<float> random_vector(int64_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// One problem: n_kv = 2 KV heads, n_heads = 2 * group, the cache padded to a wider row than the
// heads (kv_stride > n_kv * head_dim) so that stride handling is exercised.
struct Case {
  int64_t head_dim, n_tokens, first_position, window, group;
  std::vector<float> q, keys, values;
  int64_t q_stride, kv_stride;
  std::vector<double> ref;  // (n_tokens, n_heads * head_dim)
};

Case make_case(int64_t hd, int64_t n_queries, int64_t n_keys, int64_t window, int64_t group, std::mt19937& rng) {
  Case c;
  c.head_dim = hd;
  c.n_tokens = n_queries;
  c.first_position = std::max<int64_t>(0, n_keys - n_queries);
  c.window = window;
  c.group = group;
  const int64_t n_kv = 2, n_heads = n_kv * group, rows = c.first_position + n_queries;
  c.q_stride = n_heads * hd;
  c.kv_stride = n_kv * hd + 3;
  c.q = random_vector(n_queries * c.q_stride, rng, 2.0f);  // peaky softmax: scores ~ N(0, 4)
  c.keys = random_vector(rows * c.kv_stride, rng, 1.0f);
  c.values = random_vector(rows * c.kv_stride, rng, 1.0f);
  c.ref.assign(n_queries * c.q_stride, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> s(rows);
  for (int64_t t = 0; t < n_queries; ++t) {
    const int64_t pos = c.first_position + t, lo = window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
    for (int64_t h = 0; h < n_heads; ++h) {
      const float* qh = c.q.data() + t * c.q_stride + h * hd;
      const int64_t kv_off = (h / group) * hd;
      double m = -1e300, sum = 0;
      for (int64_t j = lo; j <= pos; ++j) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(qh[i]) * c.keys[j * c.kv_stride + kv_off + i];
        s[j] = d * scale;
        m = std::max(m, s[j]);
      }
      for (int64_t j = lo; j <= pos; ++j) sum += (s[j] = std::exp(s[j] - m));
      double* out = c.ref.data() + t * c.q_stride + h * hd;
      for (int64_t j = lo; j <= pos; ++j)
        for (int64_t i = 0; i < hd; ++i) out[i] += s[j] / sum * c.values[j * c.kv_stride + kv_off + i];
    }
  }
  return c;
}

double run_case(const Case& c, ThreadPool* pool, int64_t kv_splits) {
  std::vector<float> out(c.n_tokens * c.q_stride, -999.0f);
  AttentionProblem p{};
  p.q = c.q.data();
  p.q_stride = c.q_stride;
  p.keys = c.keys.data();
  p.values = c.values.data();
  p.kv_stride = c.kv_stride;
  p.out = out.data();
  p.out_stride = c.q_stride;
  p.n_tokens = c.n_tokens;
  p.n_heads = 2 * c.group;
  p.n_kv_heads = 2;
  p.head_dim = c.head_dim;
  p.first_position = c.first_position;
  p.window = c.window;
  p.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  p.kv_splits = kv_splits;
  if (pool != nullptr) {
    attention(*pool, p);
  } else {
    attention_reference(p);
  }
  double max_diff = 0, max_ref = 1e-30;
  for (size_t i = 0; i < out.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(out[i] - c.ref[i]));
    max_ref = std::max(max_ref, std::fabs(c.ref[i]));
  }
  return max_diff / max_ref;
}

TEST(Attention, EveryPathShapeWindowGroupSplitAndThreadCountMatchesReference) {
  std::mt19937 rng(11);
  const std::vector<Isa> isas = available_isas();
  ThreadPool pool1(1), pool2(2);
  const std::vector<int64_t> head_dims = {64, 80, 128, 72};
  // worst[isa][head_dim index]; index isas.size() is the plain reference (attention_reference).
  std::vector<std::vector<double>> worst(isas.size() + 1, std::vector<double>(head_dims.size(), 0.0));
  for (size_t hi = 0; hi < head_dims.size(); ++hi)
    for (int64_t n_queries : {1, 5, 33})
      for (int64_t n_keys : {1, 17, 300, 1000})
        for (int64_t window : {0, 7})
          for (int64_t group : {1, 3, 4}) {  // decode rows 1, 3 (a padded row), 4: the row-dot scorers
            const Case c = make_case(head_dims[hi], n_queries, n_keys, window, group, rng);
            const std::string where = "head_dim=" + std::to_string(c.head_dim) + " queries=" + std::to_string(n_queries) +
                                      " keys=" + std::to_string(n_keys) + " window=" + std::to_string(window) +
                                      " group=" + std::to_string(group);
            const double ref_err = run_case(c, nullptr, 0);
            EXPECT_LT(ref_err, 1e-5) << "reference " << where;
            worst[isas.size()][hi] = std::max(worst[isas.size()][hi], ref_err);
            for (size_t ii = 0; ii < isas.size(); ++ii) {
              set_isa_cap(isas[ii]);
              for (ThreadPool* pool : {&pool1, &pool2})
                for (int64_t splits : {0, 3}) {  // auto (split-KV only for long decode), forced 3
                  const double err = run_case(c, pool, splits);
                  EXPECT_LT(err, 1e-5) << isa_name(isas[ii]) << " threads=" << pool->thread_count()
                                       << " splits=" << splits << " " << where;
                  worst[ii][hi] = std::max(worst[ii][hi], err);
                }
            }
            set_isa_cap(Isa::Avx512);
          }
  std::printf("%-10s", "path");
  for (int64_t hd : head_dims) std::printf("   hd=%-6lld", static_cast<long long>(hd));
  std::printf(" (max normalized error over queries {1,5,33}, keys {1,17,300,1000}, window {0,7},\n"
              "%-10s  group {1,3,4}, splits {auto,3}, threads {1,2})\n", "");
  for (size_t ii = 0; ii <= isas.size(); ++ii) {
    std::printf("%-10s", ii < isas.size() ? isa_name(isas[ii]) : "reference");
    for (double e : worst[ii]) std::printf("  %9.2e", e);
    std::printf("\n");
  }
}

// Decode against a long context takes the automatic split-KV path with 2 threads and one KV
// head (too few items for the threads); the result must not depend on it.
TEST(Attention, AutomaticSplitKvDecodeMatchesReference) {
  std::mt19937 rng(12);
  ThreadPool pool(2);
  for (int64_t window : {0, 700}) {
    Case c = make_case(64, 1, 2000, window, 8, rng);
    // Re-pack as a single KV head problem: heads 0..7 of KV head 0.
    std::vector<float> out(c.q_stride, 0.0f);
    AttentionProblem p{};
    p.q = c.q.data();
    p.q_stride = c.q_stride;
    p.keys = c.keys.data();
    p.values = c.values.data();
    p.kv_stride = c.kv_stride;
    p.out = out.data();
    p.out_stride = c.q_stride;
    p.n_tokens = 1;
    p.n_heads = 8;
    p.n_kv_heads = 1;
    p.head_dim = 64;
    p.first_position = c.first_position;
    p.window = window;
    p.scale = 0.125f;
    attention(pool, p);
    double max_diff = 0, max_ref = 1e-30;
    for (int64_t i = 0; i < 8 * 64; ++i) {
      max_diff = std::max(max_diff, std::fabs(out[i] - c.ref[i]));
      max_ref = std::max(max_ref, std::fabs(c.ref[i]));
    }
    EXPECT_LT(max_diff / max_ref, 1e-5) << "window=" << window;
  }
}

// A pool of KV-cache blocks (block_size rows of kv_stride elements, K and V) shared by sequences
// that each own a shuffled, non-contiguous set of blocks. Rows no sequence wrote hold NaN (NaN
// scales for fp8/int8), so a read through a wrong row shows up in the result. head_major: each
// block holds its KV heads one after the other, block_size rows each (AttentionProblem's head-
// major blocks, as the engine's pool keeps them); strides padded in both layouts.
class PagedCache {
 public:
  PagedCache(DType dtype, int64_t block_size, int64_t n_blocks, int64_t n_kv_heads, int64_t head_dim, std::mt19937& rng,
             bool head_major = false)
      : dtype_(dtype), block_size_(block_size), n_kv_heads_(n_kv_heads), head_dim_(head_dim),
        kv_stride_(head_major ? head_dim + 2 : n_kv_heads * head_dim + 3),
        head_stride_(head_major ? block_size * kv_stride_ + 5 : head_dim),
        block_stride_(head_major ? n_kv_heads * head_stride_ + 7 : block_size * kv_stride_), head_major_(head_major),
        rng_(rng) {
    const size_t n = static_cast<size_t>(n_blocks * block_stride_);
    for (Side* side : {&keys_, &values_}) {
      side->rounded.assign(n, NAN);
      side->exact.assign(n, NAN);
      if (kv_dtype_has_scales(dtype_)) {
        side->codes.assign(n, 0);
        side->scales.assign(static_cast<size_t>(n_blocks * block_size * n_kv_heads), NAN);
      } else {
        side->raw.assign(n, store(NAN));
      }
    }
    for (int64_t b = 0; b < n_blocks; ++b) free_.push_back(static_cast<int32_t>(b));
    std::shuffle(free_.begin(), free_.end(), rng_);
  }

  // A new sequence of n_positions random rows (rounded to the dtype); returns its block table.
  std::vector<int32_t> add_sequence(int64_t n_positions) {
    std::vector<int32_t> table;
    for (int64_t j = 0; j < n_positions; j += block_size_) {
      if (free_.empty()) {
        ADD_FAILURE() << "the test's cache pool is too small";
        return table;
      }
      table.push_back(free_.back());
      free_.pop_back();
    }
    std::normal_distribution<float> dist(0.0f, 1.0f);
    const int64_t kv_dim = n_kv_heads_ * head_dim_;
    std::vector<float> key_row(kv_dim), value_row(kv_dim);
    for (int64_t j = 0; j < n_positions; ++j) {
      for (int64_t i = 0; i < kv_dim; ++i) {
        key_row[i] = dist(rng_);
        value_row[i] = dist(rng_);
      }
      write_row(keys_, row(table, j), key_row);
      write_row(values_, row(table, j), value_row);
    }
    return table;
  }

  int64_t row(const std::vector<int32_t>& table, int64_t j) const {
    return table[j / block_size_] * block_size_ + j % block_size_;
  }
  // Element offset of cache row r's KV head k.
  size_t at(int64_t r, int64_t k) const {
    return static_cast<size_t>(r / block_size_ * block_stride_ + r % block_size_ * kv_stride_ + k * head_stride_);
  }
  // The values the cache holds, as floats, at cache row r, KV head k, element i.
  float key(int64_t r, int64_t k, int64_t i) const { return keys_.rounded[at(r, k) + i]; }
  float value(int64_t r, int64_t k, int64_t i) const { return values_.rounded[at(r, k) + i]; }
  // The f32 values drawn before rounding or quantizing.
  float exact_key(int64_t r, int64_t k, int64_t i) const { return keys_.exact[at(r, k) + i]; }
  float exact_value(int64_t r, int64_t k, int64_t i) const { return values_.exact[at(r, k) + i]; }

  // The cache fields of a problem over the sequence with this block table.
  void describe(const std::vector<int32_t>& table, AttentionProblem& p) const {
    p.keys = data(keys_);
    p.values = data(values_);
    p.kv_stride = kv_stride_;
    // Row-major: the defaults (0: head_dim, block_size x kv_stride) describe it.
    p.kv_head_stride = head_major_ ? head_stride_ : 0;
    p.block_stride = head_major_ ? block_stride_ : 0;
    p.kv_dtype = dtype_;
    p.key_scales = keys_.scales.empty() ? nullptr : keys_.scales.data();
    p.value_scales = values_.scales.empty() ? nullptr : values_.scales.data();
    p.block_table = table.data();
    p.block_size = block_size_;
  }

 private:
  // Keys or values: what the kernels read (raw f16/bf16 bits, or fp8/int8 codes with a scale per
  // row and KV head), their values as floats, and the f32 values before rounding.
  struct Side {
    std::vector<float> rounded, exact;
    std::vector<uint16_t> raw;
    std::vector<uint8_t> codes;
    std::vector<float> scales;  // (row, KV head)
  };

  const void* data(const Side& side) const {
    if (dtype_ == DType::F32) return side.rounded.data();
    return kv_dtype_has_scales(dtype_) ? static_cast<const void*>(side.codes.data()) : side.raw.data();
  }
  uint16_t store(float x) const { return dtype_ == DType::F16 ? float_to_fp16(x) : float_to_bf16(x); }
  // One cache row: f32 as drawn, f16/bf16 rounded, fp8/int8 quantized per KV head as the engine's
  // KV store does (and its values as floats for the references).
  void write_row(Side& side, int64_t r, const std::vector<float>& x) const {
    std::vector<uint8_t> codes(x.size());
    float* scales = kv_dtype_has_scales(dtype_) ? side.scales.data() + r * n_kv_heads_ : nullptr;
    if (scales != nullptr) quantize_kv_row(dtype_, x.data(), n_kv_heads_, head_dim_, codes.data(), scales);
    for (size_t i = 0; i < x.size(); ++i) {
      const int64_t k = static_cast<int64_t>(i) / head_dim_;
      const size_t e = at(r, k) + i % head_dim_;
      side.exact[e] = x[i];
      if (scales != nullptr) {
        side.codes[e] = codes[i];
        const float v = dtype_ == DType::I8 ? static_cast<float>(static_cast<int8_t>(codes[i])) : e4m3_to_float(codes[i]);
        side.rounded[e] = v * scales[k];
      } else if (dtype_ == DType::F32) {
        side.rounded[e] = x[i];
      } else {
        side.raw[e] = store(x[i]);
        side.rounded[e] = dtype_ == DType::F16 ? fp16_to_float(side.raw[e]) : bf16_to_float(side.raw[e]);
      }
    }
  }

  DType dtype_;
  int64_t block_size_, n_kv_heads_, head_dim_, kv_stride_, head_stride_, block_stride_;
  bool head_major_;
  std::mt19937& rng_;
  Side keys_, values_;
  std::vector<int32_t> free_;
};

// One sequence's queries and outputs against a paged cache.
struct PagedSequence {
  std::vector<int32_t> table;
  std::vector<float> q, out;
  AttentionProblem problem{};
};

PagedSequence make_sequence(PagedCache& cache, int64_t n_tokens, int64_t first_position, int64_t window, int64_t n_kv,
                            int64_t group, int64_t hd, std::mt19937& rng) {
  PagedSequence s;
  s.table = cache.add_sequence(first_position + n_tokens);
  const int64_t stride = n_kv * group * hd;
  s.q = random_vector(std::max<int64_t>(n_tokens, 1) * stride, rng, 2.0f);
  s.out.assign(std::max<int64_t>(n_tokens, 1) * stride, -999.0f);
  AttentionProblem& p = s.problem;
  cache.describe(s.table, p);
  p.q = s.q.data();
  p.q_stride = stride;
  p.out = s.out.data();
  p.out_stride = stride;
  p.n_tokens = n_tokens;
  p.n_heads = n_kv * group;
  p.n_kv_heads = n_kv;
  p.head_dim = hd;
  p.first_position = first_position;
  p.window = window;
  p.scale = 1.0f / std::sqrt(static_cast<float>(hd));
  return s;
}

// The attention of one sequence in double precision, reading the cache's rounded values (or, with
// exact, the f32 values before rounding) through the block table: independent of
// attention_reference.
std::vector<double> independent_reference(const PagedCache& cache, const PagedSequence& s, bool exact = false) {
  auto key = [&](int64_t r, int64_t k, int64_t i) { return exact ? cache.exact_key(r, k, i) : cache.key(r, k, i); };
  auto value = [&](int64_t r, int64_t k, int64_t i) { return exact ? cache.exact_value(r, k, i) : cache.value(r, k, i); };
  const AttentionProblem& p = s.problem;
  const int64_t hd = p.head_dim, group = p.n_heads / p.n_kv_heads;
  std::vector<double> ref(p.n_tokens * p.out_stride, 0.0), scores(p.first_position + p.n_tokens);
  for (int64_t t = 0; t < p.n_tokens; ++t) {
    const int64_t pos = p.first_position + t, lo = p.window > 0 ? std::max<int64_t>(0, pos - p.window + 1) : 0;
    for (int64_t h = 0; h < p.n_heads; ++h) {
      const int64_t k = h / group;
      double m = -1e300, sum = 0;
      for (int64_t j = lo; j <= pos; ++j) {
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) d += static_cast<double>(p.q[t * p.q_stride + h * hd + i]) * key(cache.row(s.table, j), k, i);
        scores[j] = d * p.scale;
        m = std::max(m, scores[j]);
      }
      for (int64_t j = lo; j <= pos; ++j) sum += (scores[j] = std::exp(scores[j] - m));
      for (int64_t j = lo; j <= pos; ++j)
        for (int64_t i = 0; i < hd; ++i) ref[t * p.out_stride + h * hd + i] += scores[j] / sum * value(cache.row(s.table, j), k, i);
    }
  }
  return ref;
}

template <typename T>
double normalized_error(const std::vector<float>& out, const std::vector<T>& ref) {
  double max_diff = 0, max_ref = 1e-30;
  for (size_t i = 0; i < ref.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(out[i]) - static_cast<double>(ref[i])));
    if (std::isnan(out[i])) max_diff = INFINITY;
    max_ref = std::max(max_ref, std::fabs(static_cast<double>(ref[i])));
  }
  return max_diff / max_ref;
}

const char* kv_name(DType dtype) { return kv_cache_dtype_name(dtype); }

struct PagedScenario {
  int64_t n_tokens, first_position, window;
};
// Prefill chunks at position 60 (with and without a window) and long split-KV decodes.
constexpr PagedScenario kPagedScenarios[] = {{37, 60, 0}, {37, 60, 20}, {1, 1400, 0}, {1, 1400, 600}};

std::string paged_where(DType dtype, int64_t head_dim, int64_t block_size, const PagedScenario& sc) {
  return std::string(kv_name(dtype)) + " head_dim=" + std::to_string(head_dim) + " block_size=" +
         std::to_string(block_size) + " tokens=" + std::to_string(sc.n_tokens) +
         " first_position=" + std::to_string(sc.first_position) + " window=" + std::to_string(sc.window);
}

// Every ISA path x 1 and 2 threads x key splits {auto, 3} on `s` against `ref` (within 1e-5,
// normalized); the worst error of path ii goes to worst[ii][column]. The ISA cap returns to AVX-512.
void check_paged_paths(const std::vector<Isa>& isas, PagedSequence& s, const std::vector<float>& ref,
                       const std::string& where, std::vector<std::vector<double>>& worst, int column) {
  ThreadPool pool1(1), pool2(2);
  for (size_t ii = 0; ii < isas.size(); ++ii) {
    set_isa_cap(isas[ii]);
    for (ThreadPool* pool : {&pool1, &pool2})
      for (int64_t splits : {0, 3}) {
        std::fill(s.out.begin(), s.out.end(), -999.0f);
        s.problem.kv_splits = splits;
        attention(*pool, s.problem);
        const double err = normalized_error(s.out, ref);
        EXPECT_LT(err, 1e-5) << isa_name(isas[ii]) << " threads=" << pool->thread_count() << " splits=" << splits
                             << " " << where;
        worst[ii][column] = std::max(worst[ii][column], err);
      }
  }
  set_isa_cap(Isa::Avx512);
}

// Every head_dim x block size x dtype x kPagedScenarios cell: a cache of shuffled blocks, a
// sequence, attention_reference (checked against the independent double computation, its worst
// error in worst[isas.size()][dtype index]), `extra` checks on that reference, then every path.
using PagedExtraCheck = std::function<void(const PagedCache&, const PagedSequence&, const std::vector<float>& ref,
                                           const std::string& where, int dtype_index)>;
void run_paged_grid(std::mt19937& rng, const std::vector<Isa>& isas, const std::vector<int64_t>& head_dims,
                    const std::vector<int64_t>& block_sizes, const std::vector<DType>& dtypes,
                    std::vector<std::vector<double>>& worst, const PagedExtraCheck& extra = {}) {
  const int64_t n_kv = 2, group = 4;
  for (bool head_major : {false, true})
  for (int64_t hd : head_dims)
    for (int64_t block_size : block_sizes)
      for (size_t di = 0; di < dtypes.size(); ++di) {
        PagedCache cache(dtypes[di], block_size, 3200 / block_size + 16, n_kv, hd, rng, head_major);
        for (const PagedScenario& sc : kPagedScenarios) {
          PagedSequence s = make_sequence(cache, sc.n_tokens, sc.first_position, sc.window, n_kv, group, hd, rng);
          const std::string where = paged_where(dtypes[di], hd, block_size, sc) + (head_major ? " head-major" : "");
          attention_reference(s.problem);
          const std::vector<float> ref = s.out;
          const double ref_err = normalized_error(ref, independent_reference(cache, s));
          EXPECT_LT(ref_err, 1e-5) << "reference " << where;
          worst[isas.size()][di] = std::max(worst[isas.size()][di], ref_err);
          if (extra) extra(cache, s, ref, where, static_cast<int>(di));
          check_paged_paths(isas, s, ref, where, worst, static_cast<int>(di));
        }
      }
}

// Prefill (a chunk at first_position > 0, with and without a window) and long decode (split-KV
// with 2 threads) through shuffled block tables of 16, 32 and 7 rows, f32/f16/bf16 rows, head_dim
// 64 and 36 (vector tails in the conversions and the padded V tile), every ISA path, 1 and 2
// threads, automatic and forced key splits.
TEST(Attention, PagedCacheEveryDtypeBlockSizePathAndThreadCountMatchesReference) {
  std::mt19937 rng(21);
  const std::vector<Isa> isas = available_isas();
  // worst[isa][dtype]; row isas.size(): attention_reference against the independent computation.
  std::vector<std::vector<double>> worst(isas.size() + 1, std::vector<double>(3, 0.0));
  run_paged_grid(rng, isas, {64, 36}, {16, 32, 7}, {DType::F32, DType::F16, DType::BF16}, worst);
  std::printf("%-10s %9s %9s %9s  (paged cache: max normalized error against attention_reference over block\n"
              "%-10s %9s %9s %9s   sizes {16,32,7}, head_dim {64,36}, prefill/decode x window, splits, threads)\n",
              "path", "f32", "f16", "bf16", "", "", "", "");
  for (size_t ii = 0; ii <= isas.size(); ++ii) {
    std::printf("%-10s", ii < isas.size() ? isa_name(isas[ii]) : "reference");
    for (double e : worst[ii]) std::printf(" %9.2e", e);
    std::printf("%s\n", ii < isas.size() ? "" : "  (against an independent double computation)");
  }
}

// fp8 (E4M3) and int8 caches with a scale per (row, KV head): every ISA path against
// attention_reference on the same quantized cache (which must dequantize as the kernels do), and
// the reference against an independent double computation over the dequantized values; then the
// quantization error itself, against the attention of the f32 values the cache was written from.
// Shuffled block tables of 16 and 7 rows, head_dim 64 and 37 (odd: vector tails of the converters
// and a padded V tile), prefill chunks and long split-KV decodes, 1 and 2 threads.
TEST(Attention, PagedFp8AndInt8CacheEveryPathMatchesReferenceAndStaysNearF32) {
  std::mt19937 rng(23);
  const std::vector<Isa> isas = available_isas();
  // Normalized error of the quantized cache's attention against the f32 cache's: per element,
  // int8 errs by at most scale / 2 (~1/250 of a head's absmax), fp8 by 2^-4 of the value, and the
  // peaky softmax (q ~ N(0, 4)) amplifies the score errors. Observed (printed below as "vs f32"):
  // fp8 9.3e-2, int8 1.9e-2; the bounds leave about 2.5x margin.
  const double vs_f32_bound[] = {0.25, 0.05};
  // worst[isa][dtype]; row isas.size(): attention_reference against the independent computation;
  // row isas.size() + 1: attention_reference against the f32 values' attention.
  std::vector<std::vector<double>> worst(isas.size() + 2, std::vector<double>(2, 0.0));
  run_paged_grid(rng, isas, {64, 37}, {16, 7}, {DType::F8_E4M3, DType::I8}, worst,
                 [&](const PagedCache& cache, const PagedSequence& s, const std::vector<float>& ref,
                     const std::string& where, int di) {
                   const double f32_err = normalized_error(ref, independent_reference(cache, s, /*exact=*/true));
                   EXPECT_LT(f32_err, vs_f32_bound[di]) << "against the f32 cache: " << where;
                   worst[isas.size() + 1][di] = std::max(worst[isas.size() + 1][di], f32_err);
                 });
  std::printf("%-10s %9s %9s  (paged fp8/int8 cache: max normalized error against attention_reference on the\n"
              "%-10s %9s %9s   same codes, block sizes {16,7}, head_dim {64,37}, prefill/decode x window, splits, threads)\n",
              "path", "fp8", "int8", "", "", "");
  for (size_t ii = 0; ii < isas.size() + 2; ++ii) {
    std::printf("%-10s", ii < isas.size() ? isa_name(isas[ii]) : ii == isas.size() ? "reference" : "vs f32");
    for (double e : worst[ii]) std::printf(" %9.2e", e);
    std::printf("%s\n", ii < isas.size()    ? ""
                        : ii == isas.size() ? "  (against an independent double computation)"
                                            : "  (quantization error: against the attention of the unquantized f32 values)");
  }
}

// Problems of different lengths, positions, windows and key splits (one empty) over one shared
// cache pool, in one attention_batch call, give what each gives alone; so does a batch of decodes
// whose few work items make the batch split its long context (4 threads).
TEST(Attention, BatchOfPagedProblemsMatchesEachAlone) {
  std::mt19937 rng(22);
  const std::vector<Isa> isas = available_isas();
  ThreadPool pool1(1), pool2(2), pool4(4);
  const int64_t n_kv = 2, group = 4, hd = 64;
  struct Shape {
    int64_t n_tokens, first_position, window, kv_splits;
  };
  const Shape shapes[] = {{1, 1300, 0, 0}, {1, 5, 0, 0}, {17, 40, 0, 3}, {1, 700, 300, 2}, {33, 0, 0, 0}, {0, 9, 0, 0}};
  double worst_alone = 0, worst_ref = 0;
  for (DType dtype : {DType::F32, DType::F16, DType::BF16, DType::F8_E4M3, DType::I8}) {
    PagedCache cache(dtype, 16, 2200 / 16 + 16, n_kv, hd, rng, /*head_major=*/dtype != DType::F32);
    std::vector<PagedSequence> seqs;
    for (const Shape& sh : shapes) {
      seqs.push_back(make_sequence(cache, sh.n_tokens, sh.first_position, sh.window, n_kv, group, hd, rng));
      seqs.back().problem.kv_splits = sh.kv_splits;
    }
    std::vector<std::vector<float>> refs;
    for (PagedSequence& s : seqs) {
      attention_reference(s.problem);
      refs.push_back(s.out);
    }
    for (const std::vector<size_t>& members : {std::vector<size_t>{0, 1, 2, 3, 4, 5}, std::vector<size_t>{0, 1, 3}})
      for (size_t ii = 0; ii < isas.size(); ++ii) {
        set_isa_cap(isas[ii]);
        for (ThreadPool* pool : {&pool1, &pool2, &pool4}) {
          std::vector<std::vector<float>> alone;
          for (size_t i : members) {
            std::fill(seqs[i].out.begin(), seqs[i].out.end(), -999.0f);
            attention(*pool, seqs[i].problem);
            alone.push_back(seqs[i].out);
            std::fill(seqs[i].out.begin(), seqs[i].out.end(), -999.0f);
          }
          std::vector<AttentionProblem> batch;
          for (size_t i : members) batch.push_back(seqs[i].problem);
          attention_batch(*pool, batch);
          for (size_t m = 0; m < members.size(); ++m) {
            const PagedSequence& s = seqs[members[m]];
            const size_t n = static_cast<size_t>(s.problem.n_tokens * s.problem.out_stride);
            const std::vector<float> out(s.out.begin(), s.out.begin() + n), ref(refs[members[m]].begin(), refs[members[m]].begin() + n);
            const double err_alone = normalized_error(out, std::vector<float>(alone[m].begin(), alone[m].begin() + n));
            const double err_ref = normalized_error(out, ref);
            const std::string where = std::string(isa_name(isas[ii])) + " " + kv_name(dtype) + " threads=" +
                                      std::to_string(pool->thread_count()) + " batch of " + std::to_string(members.size()) +
                                      ", problem " + std::to_string(members[m]);
            EXPECT_LT(err_alone, 1e-5) << where;
            EXPECT_LT(err_ref, 1e-5) << where;
            worst_alone = std::max(worst_alone, err_alone);
            worst_ref = std::max(worst_ref, err_ref);
            if (n == 0) {
              EXPECT_EQ(s.out[0], -999.0f) << "an empty problem wrote output: " << where;
            }
          }
        }
      }
    set_isa_cap(Isa::Avx512);
  }
  std::printf("attention_batch (6 and 3 problems, f32/f16/bf16/fp8/int8, every path, 1/2/4 threads): max normalized error\n"
              "  %.2e against each problem alone, %.2e against attention_reference\n", worst_alone, worst_ref);
}

}  // namespace
}  // namespace anvil
