// Sequential GPTQ: Hessians per layer from the partly quantized model, GPTQ per weight, propagation.
#include "quant/gptq_checkpoint.h"

#include <fmt/format.h>

#include <array>
#include <memory>
#include <optional>

#include "compute/cpu/matmul.h"
#include "model/linear_observer.h"
#include "quant/calibration_runner.h"
#include "quant/gptq.h"
#include "quant/int4_rtn.h"

namespace anvil {
namespace {

struct LinearSpec {
  const char* suffix;
  LinearInputSite site;
};
constexpr LinearSpec kLinears[] = {
    {"attn_q", LinearInputSite::AttnQkv},       {"attn_k", LinearInputSite::AttnQkv},
    {"attn_v", LinearInputSite::AttnQkv},       {"attn_output", LinearInputSite::AttnOutput},
    {"ffn_gate", LinearInputSite::FfnGateUp},   {"ffn_up", LinearInputSite::FfnGateUp},
    {"ffn_down", LinearInputSite::FfnDown},
};

// One Hessian per input site of the layer being calibrated.
class HessianObserver final : public LinearInputObserver {
 public:
  explicit HessianObserver(ThreadPool& pool) : pool_(pool) {}
  void observe(int64_t, LinearInputSite site, const float* x, int64_t n_tokens, int64_t cols) override {
    std::optional<HessianAccumulator>& h = hessians_[static_cast<int>(site)];
    if (!h) h.emplace(cols);
    h->add(pool_, x, n_tokens);
  }
  const HessianAccumulator* at(LinearInputSite site) const {
    const std::optional<HessianAccumulator>& h = hessians_[static_cast<int>(site)];
    return h ? &*h : nullptr;
  }
  void release(LinearInputSite site) { hessians_[static_cast<int>(site)].reset(); }

 private:
  ThreadPool& pool_;
  std::array<std::optional<HessianAccumulator>, kLinearInputSites> hessians_;
};

// A weight of the layer being quantized: the checkpoint's tensor as it was, its f32 values, the
// f32 buffer the tensor points to while the layer is calibrated, and the GPTQ result.
struct LayerLinear {
  Tensor* tensor = nullptr;
  Tensor original;
  std::vector<float> w;
  std::vector<float> working;  // f32 values the calibration forward reads
  std::optional<QuantizedMatrix> quantized;
  TensorQuantReport stats;
};

void point_at_f32(Tensor& tensor, const std::vector<float>& values) {
  tensor.dtype = DType::F32;
  tensor.data = reinterpret_cast<const std::byte*>(values.data());
  tensor.nbytes = values.size() * sizeof(float);
  tensor.quant = {};
}

// On an early return, tensors still pointing at a layer's local f32 buffers get their original back.
struct RestoreOnExit {
  std::vector<LayerLinear>& linears;
  ~RestoreOnExit() {
    for (LayerLinear& lin : linears)
      if (lin.tensor && lin.tensor->data == reinterpret_cast<const std::byte*>(lin.working.data()))
        *lin.tensor = lin.original;
  }
};

std::vector<float> dequantized(const QuantizedMatrix& q) {
  const Tensor view = q.view("");
  std::vector<float> out(static_cast<size_t>(q.rows * q.cols));
  for (int64_t r = 0; r < q.rows; ++r) weight_row_to_f32(view, r, out.data() + r * q.cols);
  return out;
}

}  // namespace

Status gptq_quantize_layers(Checkpoint& checkpoint, const QuantizeOptions& options, const CalibrationSet& calibration,
                            ThreadPool& pool, QuantizeReport& report,
                            const std::function<void(int64_t, int64_t)>& layer_done) {
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<LayerByLayerRunner> runner,
                         LayerByLayerRunner::create(checkpoint, calibration, pool));
  GptqOptions gptq;
  gptq.group = options.group_size;
  gptq.symmetric = !options.asymmetric;
  gptq.act_order = options.act_order;
  gptq.static_groups = !options.dynamic_groups;
  Int4Options rtn;
  rtn.group = options.group_size;
  rtn.symmetric = !options.asymmetric;
  const int64_t n_layers = checkpoint.config.n_layers;
  for (int64_t l = 0; l < n_layers; ++l) {
    std::vector<LayerLinear> linears(std::size(kLinears));
    RestoreOnExit restore{linears};
    for (size_t i = 0; i < linears.size(); ++i) {
      const std::string name = fmt::format("blk.{}.{}.weight", l, kLinears[i].suffix);
      auto it = checkpoint.tensors.find(name);
      if (it == checkpoint.tensors.end())
        return Status::error(fmt::format("{}: missing tensor {}", checkpoint.source, name));
      LayerLinear& lin = linears[i];
      lin.tensor = &it->second;
      lin.original = it->second;
      lin.w = weight_to_f32(it->second, pool);
      lin.working = lin.w;
      point_at_f32(*lin.tensor, lin.working);  // the float layer runs in f32, whatever the source dtype
    }
    HessianObserver observer(pool);
    runner->run_layer(l, &observer, /*advance=*/false);

    for (LinearInputSite site : {LinearInputSite::AttnQkv, LinearInputSite::AttnOutput, LinearInputSite::FfnGateUp,
                                 LinearInputSite::FfnDown}) {
      const HessianAccumulator* h = observer.at(site);
      if (!h) return Status::error(fmt::format("{}: layer {} saw no calibration input", checkpoint.source, l));
      bool any = false;
      for (size_t i = 0; i < linears.size(); ++i)
        any = any || (kLinears[i].site == site && !options.ignores(linears[i].tensor->name));
      if (!any) continue;  // every weight reading this input is --ignore'd
      static constexpr const char* kSiteNames[] = {"attn_q/k/v", "attn_output", "ffn_gate/up", "ffn_down"};
      const std::string what =
          fmt::format("{}: layer {} ({} input)", checkpoint.source, l, kSiteNames[static_cast<int>(site)]);
      ANVIL_ASSIGN_OR_RETURN(GptqHessian prepared, prepare_gptq_hessian(what, h->hessian(), h->cols(), gptq, pool));
      const std::vector<float> gram = h->gram_f32();
      for (size_t i = 0; i < linears.size(); ++i) {
        if (kLinears[i].site != site || options.ignores(linears[i].tensor->name)) continue;
        LayerLinear& lin = linears[i];
        const std::string tensor_what = checkpoint.source + ": tensor " + lin.tensor->name;
        const int64_t rows = lin.tensor->rows(), cols = lin.tensor->cols();
        ANVIL_ASSIGN_OR_RETURN(QuantizedMatrix q, quantize_int4_gptq(tensor_what, lin.w.data(), rows, cols, prepared,
                                                                     gptq, pool));
        ANVIL_ASSIGN_OR_RETURN(QuantizedMatrix r, quantize_int4_rtn(tensor_what, lin.w.data(), rows, cols, rtn, pool));
        lin.working = dequantized(q);  // the next pass runs the quantized layer (fake-quant, f32)
        point_at_f32(*lin.tensor, lin.working);
        const std::vector<float> rtn_values = dequantized(r);
        const std::vector<double> errors =
            relative_output_errors(lin.w.data(), {lin.working.data(), rtn_values.data()}, rows, cols, gram, pool);
        lin.stats.output_error = errors[0];
        lin.stats.rtn_output_error = errors[1];
        lin.stats.gptq_damp = prepared.damp_percent;
        lin.quantized = std::move(q);
      }
      observer.release(site);
    }
    // Layer l+1 calibrates on what the quantized layer l outputs.
    if (l + 1 < n_layers) runner->run_layer(l, nullptr, /*advance=*/true);
    for (LayerLinear& lin : linears) {
      if (!lin.quantized) continue;  // --ignore'd: RestoreOnExit gives the tensor its original back
      TensorQuantReport t =
          install_quantized(checkpoint, *lin.tensor, lin.original, std::move(*lin.quantized), lin.w, pool);
      t.output_error = lin.stats.output_error;
      t.rtn_output_error = lin.stats.rtn_output_error;
      t.gptq_damp = lin.stats.gptq_damp;
      report.tensors.push_back(std::move(t));
    }
    if (layer_done) layer_done(l, n_layers);
  }
  return Status::ok();
}

}  // namespace anvil
