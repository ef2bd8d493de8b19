// GPTQ (Frantar et al., 2022) for INT4 W4A16: round each weight column in turn and fold its
// rounding error into the columns not yet rounded, weighted by the inverse Hessian of the layer's
// calibration inputs, so the layer's OUTPUT on those inputs moves as little as possible. The stored
// layout is w4a16-rtn's (I4 codes, group scales, zero points when asymmetric), plus an input column
// order with act-order's dynamic groups.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "quant/quantized_matrix.h"

namespace anvil {

struct GptqOptions {
  int64_t group = 128;        // 32, 64 or 128 consecutive inputs per scale
  bool symmetric = true;
  // Process columns by decreasing H_ii (AutoGPTQ desc_act). With static_groups the groups' scales
  // are fixed up front from the unquantized weights in their ORIGINAL column order (AutoGPTQ
  // static_groups, llm-compressor actorder="weight"): the file keeps plain consecutive groups.
  // Without, groups are runs of consecutive columns in PROCESSING order, each group's scale set
  // from its error-updated values when its first column comes up (AutoGPTQ's default desc_act,
  // llm-compressor actorder="group"): the codes are stored in processing order and the matrix
  // carries that order as its input_order (core/quant_scales.h).
  bool act_order = false;
  bool static_groups = true;
  double damp_percent = 0.01;  // H += damp_percent * mean(diag H) * I before inverting
  int64_t block_size = 128;    // columns per lazy-update block; a multiple of `group`
};

// Sum of x^T x over every calibration row a linear layer's input had (one per shared input: q/k/v
// share one, gate/up share one). Each add() is one f32 GEMM (x^T x over its rows) summed into
// double, so millions of rows keep their precision.
class HessianAccumulator {
 public:
  explicit HessianAccumulator(int64_t cols);
  // x: (n_rows, cols) floats, row-major.
  void add(ThreadPool& pool, const float* x, int64_t n_rows);

  int64_t cols() const { return cols_; }
  int64_t rows_seen() const { return rows_seen_; }
  // GPTQ's H = 2 X^T X / n_rows (AutoGPTQ's add_batch normalization; GPTQ's result does not
  // depend on the scale, as dampening is relative to the diagonal's mean).
  std::vector<double> hessian() const;
  // X^T X in f32: for output-error measurements (relative_output_error).
  std::vector<float> gram_f32() const;

 private:
  int64_t cols_;
  int64_t rows_seen_ = 0;
  std::vector<double> sum_;  // (cols, cols)
  std::vector<float> xt_, gram_;  // scratch of add(), kept: the Gram matrix is large (cols^2 floats)
};

// A Hessian made ready for GPTQ (shared by every weight that reads the same input):
//   dead inputs (H_ii == 0: the input was always 0) get H_ii = 1, and their weight columns are
//   zeroed when quantizing; with act_order the columns are permuted by decreasing H_ii;
//   H += damp * mean(diag H) * I; then the upper Cholesky factor U of H^-1. When H is not
//   positive definite even so, the dampening is retried at 10x and 100x (up to 1.0) before failing.
struct GptqHessian {
  int64_t cols = 0;
  std::vector<uint8_t> dead;         // per input column
  std::vector<int32_t> order;        // processing order: step p quantizes column order[p]
  std::vector<float> hinv_upper;     // (cols, cols) row-major, U in processing order
  double damp_percent = 0;           // the dampening that worked
  int64_t dead_columns = 0;
};

Result<GptqHessian> prepare_gptq_hessian(const std::string& what, std::vector<double> hessian, int64_t cols,
                                         const GptqOptions& options, ThreadPool& pool);

// GPTQ of a (rows, cols) f32 weight against a prepared Hessian of its input. Per row (rows are
// independent), in processing order, blocks of block_size columns:
//   at a group's first column (unless act_order with static_groups): the group's scale (and zero
//     point) from its current, error-updated values, by w4a16-rtn's formulas (quantize_int4_rtn);
//   q = quantize(w_p); e = (w_p - q) / U_pp; w_c -= e * U_pc for the block's later columns c;
//   after the block: w_c -= sum_p e_p U_pc for every column c after it (the lazy batch update).
// With H = I (or any diagonal H) no error moves and the result equals quantize_int4_rtn exactly.
Result<QuantizedMatrix> quantize_int4_gptq(const std::string& what, const float* w, int64_t rows, int64_t cols,
                                           const GptqHessian& hessian, const GptqOptions& options, ThreadPool& pool);

// ||(Q - W) X^T||_F / ||W X^T||_F for the calibration inputs X, from gram = X^T X (cols, cols):
// the relative error of the layer's output that quantization causes (what GPTQ minimizes). One
// value per candidate Q (W's energy is computed once for all of them).
std::vector<double> relative_output_errors(const float* reference, const std::vector<const float*>& candidates,
                                           int64_t rows, int64_t cols, const std::vector<float>& gram, ThreadPool& pool);

}  // namespace anvil
