// SmoothQuant (Xiao et al., 2023) for W8A8: activation outliers live in a few input channels, which
// per-token int8 quantization of activations handles badly. Scaling channel j of the input down by
// s_j and the weights' column j up by s_j leaves x W^T unchanged, and moves quantization
// difficulty from the activations to the (per-channel quantized) weights:
//     s_j = max|X_j|^alpha / max|W_:,j|^(1 - alpha)
// In a pre-norm Llama layer the division by s folds into the RMSNorm weight before the linear
// layers, so it costs nothing at run time.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "model/checkpoint.h"
#include "quant/calibration.h"

namespace anvil {

// The largest |x| of each input channel over every calibration row.
class ChannelAbsMax {
 public:
  explicit ChannelAbsMax(int64_t cols) : max_(static_cast<size_t>(cols), 0.0f) {}
  void add(const float* x, int64_t n_rows);  // x: (n_rows, cols)
  const std::vector<float>& values() const { return max_; }

 private:
  std::vector<float> max_;
};

// Column-wise max |w| of a (rows, cols) weight, folded into `absmax` (cols): the weights that share
// an input contribute to one maximum, as SmoothQuant concatenates q/k/v (and gate/up).
void fold_column_absmax(const float* w, int64_t rows, int64_t cols, std::vector<float>& absmax);

// s_j = max|X_j|^alpha / max(max|W_:,j|, 1e-5)^(1 - alpha), at least 1e-5 (SmoothQuant's clamps).
// A channel that never saw a nonzero activation, or whose factor is not finite, keeps s_j = 1.
std::vector<float> smoothing_factors(const std::vector<float>& activation_absmax, const std::vector<float>& weight_absmax,
                                     double alpha);

// What smoothing did to one shared input (a norm and the weights after it).
struct SmoothingReport {
  std::string norm;                           // blk.N.attn_norm.weight or blk.N.ffn_norm.weight
  double activation_absmax_before = 0, activation_absmax_after = 0;  // max_j max|X_j| (/ s_j)
  double weight_absmax_before = 0, weight_absmax_after = 0;          // over the weights that read it
  double factor_min = 0, factor_max = 0;
};

// The linear weights of one layer during smoothing, for the per-layer callback: the tensors are F32
// views of buffers the smoother owns (q/k/v and gate/up already smoothed), `original` what they
// were in the checkpoint before.
struct SmoothedLayer {
  int64_t layer = 0;
  std::vector<Tensor*> tensors;  // attn_q, attn_k, attn_v, attn_output, ffn_gate, ffn_up, ffn_down
  std::vector<Tensor> original;  // same order
  std::vector<SmoothingReport> smoothing;  // attn_norm, ffn_norm
};
// Called once per layer after its smoothing; may replace the layer's tensors (quantize them).
using SmoothedLayerCallback = std::function<Status(SmoothedLayer& layer)>;

// SmoothQuant of a whole Llama-graph checkpoint over a calibration set, layer by layer: the f32
// float model runs each layer over every sample, recording max|x| per channel of the q/k/v input
// (attn_norm's output) and the gate/up input (ffn_norm's output); then
//   attn_q/k/v.weight[:, j] *= s_j and attn_norm.weight[j] /= s_j (one s for the three),
//   ffn_gate/up.weight[:, j] *= s_j and ffn_norm.weight[j] /= s_j.
// attn_output and ffn_down have no norm in front of them and stay unsmoothed (as SmoothQuant does
// for Llama). Smoothing does not change the float function. Smoothed weights and norms become F32
// tensors owned by checkpoint.storage unless `after_layer` replaced them; unsmoothed ones it left
// alone are restored as they were. Returns every layer's reports.
Result<std::vector<SmoothingReport>> smooth_checkpoint(Checkpoint& checkpoint, const CalibrationSet& calibration,
                                                       double alpha, ThreadPool& pool,
                                                       const SmoothedLayerCallback& after_layer = {});

}  // namespace anvil
