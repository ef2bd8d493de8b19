// GPTQ: Hessian accumulation, preparation (dead inputs, ordering, dampening, inverse factor) and the
// column sweep with error feedback.
#include "quant/gptq.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "compute/cpu/matmul.h"
#include "quant/gptq_linalg.h"
#include "quant/int4_codes.h"

namespace anvil {
namespace {

constexpr int64_t kGramRows = 1024;  // rows per f32 GEMM in HessianAccumulator::add
constexpr int64_t kRowTile = 8;      // weight rows swept together (each U row is read once per tile)
constexpr int64_t kColumnTile = 512;  // columns per lazy-update pass

// An F32 (rows, cols) tensor over `data`, for matmul.
Tensor f32_view(const float* data, int64_t rows, int64_t cols) {
  Tensor t;
  t.dtype = DType::F32;
  t.shape = {rows, cols};
  t.data = reinterpret_cast<const std::byte*>(data);
  t.nbytes = static_cast<size_t>(rows * cols) * sizeof(float);
  return t;
}

// One group's scale and zero point, by quantize_int4_rtn's formulas (range widened to include 0;
// symmetric: absmax / 7.5 and implicit zero 8; asymmetric: (max - min) / 15 and rne(-min / scale)).
struct GroupParams {
  float scale = 0.0f;
  float zero = 0.0f;
};

GroupParams group_params(const float* w, int64_t n, bool symmetric) {
  float lo = 0.0f, hi = 0.0f;
  for (int64_t i = 0; i < n; ++i) lo = std::min(lo, w[i]), hi = std::max(hi, w[i]);
  if (symmetric) return {std::max(-lo, hi) / 7.5f, static_cast<float>(kI4ImplicitZero)};
  const float scale = (hi - lo) / 15.0f;
  if (!(scale > 0.0f)) return {0.0f, 0.0f};
  return {scale, std::clamp(std::nearbyint(-lo / scale), 0.0f, 15.0f)};
}

uint8_t encode(float w, const GroupParams& p) {
  if (!(p.scale > 0.0f)) return static_cast<uint8_t>(p.zero);
  return static_cast<uint8_t>(std::clamp(std::nearbyint(w / p.scale) + p.zero, 0.0f, 15.0f));
}

float decode(uint8_t code, const GroupParams& p) { return (static_cast<float>(code) - p.zero) * p.scale; }

}  // namespace

#define ANVIL_GPTQ_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))

// w[c] -= e * u[c] for c in [begin, end): GPTQ's error feedback into the columns not yet rounded.
ANVIL_GPTQ_CLONES void gptq_feedback(float* w, const float* u, float e, int64_t begin, int64_t end) {
  for (int64_t c = begin; c < end; ++c) w[c] -= e * u[c];
}

HessianAccumulator::HessianAccumulator(int64_t cols) : cols_(cols), sum_(static_cast<size_t>(cols * cols), 0.0) {}

void HessianAccumulator::add(ThreadPool& pool, const float* x, int64_t n_rows) {
  std::vector<float>& xt = xt_;
  std::vector<float>& gram = gram_;
  gram.resize(static_cast<size_t>(cols_ * cols_));
  for (int64_t r0 = 0; r0 < n_rows; r0 += kGramRows) {
    const int64_t n = std::min(kGramRows, n_rows - r0);
    // x^T x as a matmul: with A = x^T (cols, n) as both the activations and the weight, A A^T.
    xt.resize(static_cast<size_t>(cols_ * n));
    pool.parallel_for(cols_, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c)
        for (int64_t t = 0; t < n; ++t) xt[c * n + t] = x[(r0 + t) * cols_ + c];
    });
    matmul(pool, f32_view(xt.data(), cols_, n), xt.data(), cols_, gram.data());
    pool.parallel_for(cols_, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin * cols_; i < end * cols_; ++i) sum_[i] += gram[i];
    });
  }
  rows_seen_ += n_rows;
}

std::vector<double> HessianAccumulator::hessian() const {
  std::vector<double> h(sum_);
  const double scale = rows_seen_ > 0 ? 2.0 / static_cast<double>(rows_seen_) : 0.0;
  for (double& v : h) v *= scale;
  return h;
}

std::vector<float> HessianAccumulator::gram_f32() const { return std::vector<float>(sum_.begin(), sum_.end()); }

Result<GptqHessian> prepare_gptq_hessian(const std::string& what, std::vector<double> h, int64_t cols,
                                         const GptqOptions& options, ThreadPool& pool) {
  if (cols <= 0 || static_cast<int64_t>(h.size()) != cols * cols)
    return Status::error(fmt::format("{}: the Hessian is not a {} x {} matrix", what, cols, cols));
  for (double v : h)
    if (!std::isfinite(v))
      return Status::error(fmt::format("{}: the calibration Hessian has non-finite entries (the float model's "
                                       "activations overflowed on the calibration data)",
                                       what));
  GptqHessian prepared;
  prepared.cols = cols;
  prepared.dead.assign(static_cast<size_t>(cols), 0);
  for (int64_t i = 0; i < cols; ++i)
    if (h[i * cols + i] == 0.0) {
      h[i * cols + i] = 1.0;
      prepared.dead[i] = 1;
      ++prepared.dead_columns;
    }
  prepared.order.resize(static_cast<size_t>(cols));
  std::iota(prepared.order.begin(), prepared.order.end(), 0);
  if (options.act_order) {
    std::stable_sort(prepared.order.begin(), prepared.order.end(),
                     [&](int32_t a, int32_t b) { return h[a * cols + a] > h[b * cols + b]; });
    std::vector<double> permuted(h.size());
    pool.parallel_for(cols, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i)
        for (int64_t j = 0; j < cols; ++j)
          permuted[i * cols + j] = h[static_cast<int64_t>(prepared.order[i]) * cols + prepared.order[j]];
    });
    h = std::move(permuted);
  }
  double mean_diag = 0;
  for (int64_t i = 0; i < cols; ++i) mean_diag += h[i * cols + i];
  mean_diag /= static_cast<double>(cols);
  if (!(mean_diag > 0))
    return Status::error(fmt::format("{}: the calibration Hessian has a non-positive diagonal", what));
  // AutoGPTQ fails outright when Cholesky does; llm-compressor asks for a larger dampening_frac.
  // We retry with 10x the dampening (up to the diagonal's mean itself) before giving up.
  for (double damp = options.damp_percent; damp <= 1.0 + 1e-12; damp *= 10.0) {
    std::vector<double> damped = h;
    for (int64_t i = 0; i < cols; ++i) damped[i * cols + i] += damp * mean_diag;
    std::vector<float> u = upper_cholesky_of_inverse(std::move(damped), cols, pool);
    bool usable = !u.empty();
    for (int64_t i = 0; usable && i < cols; ++i) usable = std::isfinite(u[i * cols + i]) && u[i * cols + i] > 0.0f;
    if (usable) {
      prepared.hinv_upper = std::move(u);
      prepared.damp_percent = damp;
      return prepared;
    }
    if (damp <= 0) break;
  }
  return Status::error(fmt::format("{}: the calibration Hessian is not positive definite even with dampening of "
                                   "1.0 x its mean diagonal; calibrate on more (or more varied) samples "
                                   "(--calib-samples, --calib-seq-len)",
                                   what));
}

Result<QuantizedMatrix> quantize_int4_gptq(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                           const GptqHessian& hessian, const GptqOptions& options, ThreadPool& pool) {
  const int64_t group = options.group;
  if (group != 32 && group != 64 && group != 128)
    return Status::error(fmt::format("{}: int4 group size {} is not supported (32, 64 or 128)", what, group));
  if (cols % group != 0)
    return Status::error(fmt::format("{} has rows of {} elements, not a multiple of the int4 group size {}", what, cols,
                                     group));
  if (options.block_size <= 0 || options.block_size % group != 0)
    return Status::error(fmt::format("{}: GPTQ block size {} is not a multiple of the group size {}", what,
                                     options.block_size, group));
  if (hessian.cols != cols || static_cast<int64_t>(hessian.hinv_upper.size()) != cols * cols)
    return Status::error(fmt::format("{}: the Hessian is for {} inputs, the weight has {}", what, hessian.cols, cols));
  ANVIL_RETURN_IF_ERROR(check_quantizer_input(what, w, rows, cols));

  QuantizedMatrix q;
  q.dtype = DType::I4;
  q.rows = rows;
  q.cols = cols;
  q.group = group;
  const int64_t groups = cols / group, block = options.block_size;
  q.codes.resize(static_cast<size_t>(rows * cols / 2));
  q.scale.resize(static_cast<size_t>(rows * groups));
  if (!options.symmetric) q.zero.resize(q.scale.size());
  const float* u = hessian.hinv_upper.data();
  const std::vector<int32_t>& order = hessian.order;
  // Static groups: params fixed up front per original group. Otherwise groups are runs of the
  // processing order, and with act_order the codes stay in that order (the input_order).
  const bool static_groups = options.act_order && options.static_groups;
  const bool keep_processing_order = options.act_order && !options.static_groups;
  if (keep_processing_order) q.input_order = order;
  const int64_t tiles = (rows + kRowTile - 1) / kRowTile;

  pool.parallel_for(tiles, [&](int64_t tile_begin, int64_t tile_end) {
    ScopedFlushDenormals flush;
    std::vector<float> wt(static_cast<size_t>(kRowTile * cols));      // the tile's rows, processing order
    std::vector<uint8_t> codes(static_cast<size_t>(kRowTile * cols));  // processing order
    std::vector<uint8_t> packed_row(static_cast<size_t>(cols));        // original order
    std::vector<GroupParams> params(static_cast<size_t>(kRowTile * groups));
    std::vector<float> err(static_cast<size_t>(kRowTile * block));
    for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
      const int64_t r0 = tile * kRowTile, nr = std::min(kRowTile, rows - r0);
      for (int64_t r = 0; r < nr; ++r) {
        const float* src = w + (r0 + r) * cols;
        for (int64_t p = 0; p < cols; ++p) wt[r * cols + p] = hessian.dead[order[p]] ? 0.0f : src[order[p]];
        if (static_groups) {
          // Fixed now, from the (dead-zeroed) weights in original column order.
          for (int64_t g = 0; g < groups; ++g) {
            float values[128];
            for (int64_t i = 0; i < group; ++i) {
              const int64_t c = g * group + i;
              values[i] = hessian.dead[c] ? 0.0f : src[c];
            }
            params[r * groups + g] = group_params(values, group, options.symmetric);
          }
        }
      }
      for (int64_t b0 = 0; b0 < cols; b0 += block) {
        const int64_t b1 = std::min(cols, b0 + block);
        for (int64_t p = b0; p < b1; ++p) {
          if (!static_groups && p % group == 0)
            for (int64_t r = 0; r < nr; ++r)
              params[r * groups + p / group] = group_params(&wt[r * cols + p], group, options.symmetric);
          const int64_t g = (static_groups ? order[p] : p) / group;
          const float* up = u + p * cols;
          const float d = up[p];
          for (int64_t r = 0; r < nr; ++r) {
            float* wr = &wt[r * cols];
            const GroupParams& gp = params[r * groups + g];
            const uint8_t code = encode(wr[p], gp);
            codes[r * cols + p] = code;
            const float e = (wr[p] - decode(code, gp)) / d;
            err[r * block + (p - b0)] = e;
            gptq_feedback(wr, up, e, p + 1, b1);
          }
        }
        // The block's errors reach every later column at once (GPTQ's lazy batch update).
        for (int64_t c0 = b1; c0 < cols; c0 += kColumnTile) {
          const int64_t c1 = std::min(cols, c0 + kColumnTile);
          for (int64_t k = b0; k < b1; ++k) {
            const float* uk = u + k * cols;
            for (int64_t r = 0; r < nr; ++r) {
              const float e = err[r * block + (k - b0)];
              if (e != 0.0f) gptq_feedback(&wt[r * cols], uk, e, c0, c1);
            }
          }
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        for (int64_t p = 0; p < cols; ++p) packed_row[keep_processing_order ? p : order[p]] = codes[r * cols + p];
        i4_pack(packed_row.data(), cols, reinterpret_cast<uint8_t*>(q.codes.data()) + (r0 + r) * cols / 2);
        for (int64_t g = 0; g < groups; ++g) {
          q.scale[(r0 + r) * groups + g] = params[r * groups + g].scale;
          if (!options.symmetric) q.zero[(r0 + r) * groups + g] = params[r * groups + g].zero;
        }
      }
    }
  });
  return q;
}

std::vector<double> relative_output_errors(const float* reference, const std::vector<const float*>& candidates,
                                           int64_t rows, int64_t cols, const std::vector<float>& gram, ThreadPool& pool) {
  const Tensor h = f32_view(gram.data(), cols, cols);
  std::vector<float> x, y;
  // sum over rows of x H x^T for x = W (pass 0) and x = Q - W (pass 1 + candidate), one GEMM per
  // chunk of rows: (chunk, cols) x H (symmetric).
  std::vector<double> energy(candidates.size() + 1, 0.0);
  for (int64_t r0 = 0; r0 < rows; r0 += kGramRows) {
    const int64_t n = std::min(kGramRows, rows - r0);
    x.resize(static_cast<size_t>(n * cols));
    y.resize(x.size());
    for (size_t pass = 0; pass < energy.size(); ++pass) {
      const float* ref = reference + r0 * cols;
      const float* q = pass == 0 ? nullptr : candidates[pass - 1] + r0 * cols;
      for (int64_t i = 0; i < n * cols; ++i) x[i] = q ? q[i] - ref[i] : ref[i];
      matmul(pool, h, x.data(), n, y.data());
      double sum = 0;
      for (int64_t i = 0; i < n * cols; ++i) sum += static_cast<double>(y[i]) * x[i];
      energy[pass] += sum;
    }
  }
  std::vector<double> errors;
  for (size_t i = 1; i < energy.size(); ++i)
    errors.push_back(energy[0] > 0 ? std::sqrt(std::max(0.0, energy[i]) / energy[0]) : (energy[i] > 0 ? INFINITY : 0.0));
  return errors;
}

}  // namespace anvil
