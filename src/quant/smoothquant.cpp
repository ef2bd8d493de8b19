// SmoothQuant: activation ranges from the float model, smoothing factors, and their folding into the
// norms and weights of a checkpoint.
#include "quant/smoothquant.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "compute/cpu/matmul.h"
#include "model/linear_observer.h"
#include "quant/calibration_runner.h"

namespace anvil {
namespace {

constexpr float kMinScale = 1e-5f;  // SmoothQuant's clamp of weight ranges and factors

// The 7 linear weights of a layer in SmoothedLayer order, and which input site each reads.
constexpr const char* kLinearSuffixes[] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up",
                                           "ffn_down"};

// Records max|x| of the two norm outputs (the smoothed inputs); the others are not smoothed.
class AbsMaxObserver final : public LinearInputObserver {
 public:
  AbsMaxObserver(int64_t dim) : attn_(dim), ffn_(dim) {}
  void observe(int64_t, LinearInputSite site, const float* x, int64_t n_tokens, int64_t) override {
    if (site == LinearInputSite::AttnQkv) attn_.add(x, n_tokens);
    if (site == LinearInputSite::FfnGateUp) ffn_.add(x, n_tokens);
  }
  const ChannelAbsMax& attn() const { return attn_; }
  const ChannelAbsMax& ffn() const { return ffn_; }

 private:
  ChannelAbsMax attn_, ffn_;
};

// A norm weight divided by s, as a new F32 tensor owned by the checkpoint.
Status divide_norm(Checkpoint& checkpoint, const std::string& name, const std::vector<float>& s) {
  auto it = checkpoint.tensors.find(name);
  if (it == checkpoint.tensors.end()) return Status::error(fmt::format("{}: missing tensor {}", checkpoint.source, name));
  Tensor& norm = it->second;
  const int64_t n = norm.numel();
  if (n != static_cast<int64_t>(s.size()) || dtype_has_external_scales(norm.dtype))
    return Status::error(fmt::format("{}: tensor {} {} cannot take smoothing factors for {} channels",
                                     checkpoint.source, name, norm.shape_string(), s.size()));
  auto values = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
  dtype_info(norm.dtype).to_float(norm.data, values->data(), n);
  for (int64_t j = 0; j < n; ++j) (*values)[j] /= s[j];
  norm.dtype = DType::F32;
  norm.data = reinterpret_cast<const std::byte*>(values->data());
  norm.nbytes = static_cast<size_t>(n) * sizeof(float);
  norm.quant = {};
  checkpoint.storage.push_back(std::shared_ptr<const void>(values, values->data()));
  return Status::ok();
}

// Smooths the weights [first, last) of `layer` (which share one input) and their norm.
Status smooth_site(Checkpoint& checkpoint, SmoothedLayer& layer, std::vector<std::shared_ptr<std::vector<float>>>& buffers,
                   int first, int last, const std::string& norm_name, const std::vector<float>& activation_absmax,
                   double alpha) {
  const int64_t cols = static_cast<int64_t>(activation_absmax.size());
  std::vector<float> weight_absmax(static_cast<size_t>(cols), 0.0f);
  for (int i = first; i < last; ++i) {
    if (layer.tensors[i]->cols() != cols)
      return Status::error(fmt::format("{}: tensor {} has {} inputs, its norm {}", checkpoint.source,
                                       layer.tensors[i]->name, layer.tensors[i]->cols(), cols));
    fold_column_absmax(buffers[i]->data(), layer.tensors[i]->rows(), cols, weight_absmax);
  }
  const std::vector<float> s = smoothing_factors(activation_absmax, weight_absmax, alpha);
  SmoothingReport report;
  report.norm = norm_name;
  report.factor_min = report.factor_max = s[0];
  for (int64_t j = 0; j < cols; ++j) {
    report.activation_absmax_before = std::max<double>(report.activation_absmax_before, activation_absmax[j]);
    report.activation_absmax_after = std::max<double>(report.activation_absmax_after, activation_absmax[j] / s[j]);
    report.weight_absmax_before = std::max<double>(report.weight_absmax_before, weight_absmax[j]);
    report.weight_absmax_after = std::max<double>(report.weight_absmax_after, weight_absmax[j] * s[j]);
    report.factor_min = std::min<double>(report.factor_min, s[j]);
    report.factor_max = std::max<double>(report.factor_max, s[j]);
  }
  for (int i = first; i < last; ++i) {
    float* w = buffers[i]->data();
    const int64_t rows = layer.tensors[i]->rows();
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
  }
  ANVIL_RETURN_IF_ERROR(divide_norm(checkpoint, norm_name, s));
  layer.smoothing.push_back(std::move(report));
  return Status::ok();
}

// On an early return, tensors still pointing at the layer's local f32 buffers get their original back.
struct RestoreOnExit {
  SmoothedLayer& layer;
  std::vector<std::shared_ptr<std::vector<float>>>& buffers;
  bool committed = false;
  ~RestoreOnExit() {
    if (committed) return;
    for (size_t i = 0; i < layer.tensors.size() && i < buffers.size(); ++i)
      if (layer.tensors[i]->data == reinterpret_cast<const std::byte*>(buffers[i]->data()))
        *layer.tensors[i] = layer.original[i];
  }
};

}  // namespace

void ChannelAbsMax::add(const float* x, int64_t n_rows) {
  const int64_t cols = static_cast<int64_t>(max_.size());
  for (int64_t t = 0; t < n_rows; ++t)
    for (int64_t j = 0; j < cols; ++j) max_[j] = std::max(max_[j], std::fabs(x[t * cols + j]));
}

void fold_column_absmax(const float* w, int64_t rows, int64_t cols, std::vector<float>& absmax) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < cols; ++j) absmax[j] = std::max(absmax[j], std::fabs(w[r * cols + j]));
}

std::vector<float> smoothing_factors(const std::vector<float>& activation_absmax, const std::vector<float>& weight_absmax,
                                     double alpha) {
  std::vector<float> s(activation_absmax.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j) {
    const double a = activation_absmax[j];
    if (!(a > 0.0)) continue;
    const double w = std::max<double>(weight_absmax[j], kMinScale);
    const double f = std::max<double>(std::pow(a, alpha) / std::pow(w, 1.0 - alpha), kMinScale);
    if (std::isfinite(f) && std::isfinite(static_cast<float>(f))) s[j] = static_cast<float>(f);
  }
  return s;
}

Result<std::vector<SmoothingReport>> smooth_checkpoint(Checkpoint& checkpoint, const CalibrationSet& calibration,
                                                       double alpha, ThreadPool& pool,
                                                       const SmoothedLayerCallback& after_layer) {
  if (!(alpha >= 0.0 && alpha <= 1.0))
    return Status::error(fmt::format("SmoothQuant alpha {} is outside [0, 1]", alpha));
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<LayerByLayerRunner> runner,
                         LayerByLayerRunner::create(checkpoint, calibration, pool));
  std::vector<SmoothingReport> reports;
  const int64_t n_layers = checkpoint.config.n_layers;
  for (int64_t l = 0; l < n_layers; ++l) {
    SmoothedLayer layer;
    layer.layer = l;
    std::vector<std::shared_ptr<std::vector<float>>> buffers;
    RestoreOnExit restore{layer, buffers};
    for (const char* suffix : kLinearSuffixes) {
      const std::string name = fmt::format("blk.{}.{}.weight", l, suffix);
      auto it = checkpoint.tensors.find(name);
      if (it == checkpoint.tensors.end())
        return Status::error(fmt::format("{}: missing tensor {}", checkpoint.source, name));
      Tensor& t = it->second;
      // The float model runs in f32 whatever the source dtype: the weights become f32 copies.
      auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(t.numel()));
      for (int64_t r = 0; r < t.rows(); ++r) weight_row_to_f32(t, r, buffer->data() + r * t.cols());
      layer.tensors.push_back(&t);
      layer.original.push_back(t);
      t.dtype = DType::F32;
      t.data = reinterpret_cast<const std::byte*>(buffer->data());
      t.nbytes = buffer->size() * sizeof(float);
      t.quant = {};
      buffers.push_back(std::move(buffer));
    }
    AbsMaxObserver observer(checkpoint.config.dim);
    runner->run_layer(l, &observer, /*advance=*/l + 1 < n_layers);
    ANVIL_RETURN_IF_ERROR(smooth_site(checkpoint, layer, buffers, 0, 3, fmt::format("blk.{}.attn_norm.weight", l),
                                      observer.attn().values(), alpha));
    ANVIL_RETURN_IF_ERROR(smooth_site(checkpoint, layer, buffers, 4, 6, fmt::format("blk.{}.ffn_norm.weight", l),
                                      observer.ffn().values(), alpha));
    if (after_layer) ANVIL_RETURN_IF_ERROR(after_layer(layer));
    restore.committed = true;
    for (size_t i = 0; i < layer.tensors.size(); ++i) {
      Tensor& t = *layer.tensors[i];
      if (t.data != reinterpret_cast<const std::byte*>(buffers[i]->data())) continue;  // replaced by the callback
      const bool smoothed = i != 3 && i != 6;
      if (smoothed) {
        checkpoint.storage.push_back(std::shared_ptr<const void>(buffers[i], buffers[i]->data()));
      } else {
        t = layer.original[i];
      }
    }
    reports.insert(reports.end(), layer.smoothing.begin(), layer.smoothing.end());
  }
  return reports;
}

}  // namespace anvil
