// quantize_checkpoint: source rows to f32, one scheme's quantizer, the round-trip error report.
#include "quant/quantize_checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>

#include "compute/cpu/matmul.h"
#include "core/weight_memory.h"
#include "model/convert_dtype.h"
#include "quant/fp8.h"
#include "quant/gptq_checkpoint.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

constexpr const char* kLinearWeights[] = {".attn_q.weight",   ".attn_k.weight",  ".attn_v.weight", ".attn_output.weight",
                                          ".ffn_gate.weight", ".ffn_up.weight",  ".ffn_down.weight"};

uint64_t stored_bytes(const Tensor& t) { return t.nbytes + t.scale_bytes(); }

// The non-calibrated scaled schemes' quantizers.
Result<QuantizedMatrix> quantize_matrix(const std::string& what, const std::vector<float>& w, int64_t rows, int64_t cols,
                                        const QuantizeOptions& options, ThreadPool& pool) {
  switch (options.scheme) {
    case QuantScheme::Fp8:
    case QuantScheme::Fp8Dynamic: {
      ANVIL_ASSIGN_OR_RETURN(QuantizedMatrix q,
                             quantize_fp8(what, w.data(), rows, cols,
                                          options.per_tensor ? Fp8Granularity::PerTensor : Fp8Granularity::PerChannel,
                                          pool));
      q.activations = options.activations();  // fp8-dynamic: W8A8, activations rounded per token
      return q;
    }
    case QuantScheme::W8A8: return quantize_int8_per_channel(what, w.data(), rows, cols, pool);
    case QuantScheme::W4A16Rtn: {
      Int4Options int4;
      int4.group = options.group_size;
      int4.symmetric = !options.asymmetric;
      return quantize_int4_rtn(what, w.data(), rows, cols, int4, pool);
    }
    default: return Status::error("internal: not a round-to-nearest scaled scheme");
  }
}

// Every --ignore pattern must name some linear weight (a typo would silently quantize everything).
Status check_ignore_patterns(const Checkpoint& checkpoint, const QuantizeOptions& options) {
  for (const std::string& pattern : options.ignore) {
    bool matched = false;
    for (const auto& [name, tensor] : checkpoint.tensors)
      matched = matched || (is_quantized_linear_weight(name) && name.find(pattern) != std::string::npos);
    if (!matched)
      return Status::error(fmt::format("{}: --ignore {} matches none of the linear weights (blk.N.attn_q.weight, "
                                       "..., blk.N.ffn_down.weight)",
                                       checkpoint.source, pattern));
  }
  return Status::ok();
}

bool quantizes(const std::string& name, const QuantizeOptions& options) {
  return is_quantized_linear_weight(name) && !options.ignores(name);
}

// W4A16 groups must divide every row: checked before any work, suggesting a group that fits all.
Status check_groups_fit(const Checkpoint& checkpoint, const QuantizeOptions& options) {
  const int64_t group = options.group_size;
  const Tensor* misfit = nullptr;
  bool fits[3] = {true, true, true};  // groups 128, 64, 32
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (!quantizes(name, options)) continue;
    if (tensor.cols() % group != 0 && !misfit) misfit = &tensor;
    for (int i = 0; i < 3; ++i) fits[i] = fits[i] && tensor.cols() % (128 >> i) == 0;
  }
  if (!misfit) return Status::ok();
  std::string hint = "; no int4 group size (32, 64, 128) divides every linear layer's rows";
  for (int i = 0; i < 3; ++i)
    if (fits[i]) {
      hint = fmt::format("; try --group {}", 128 >> i);
      break;
    }
  return Status::error(fmt::format("{}: tensor {} has rows of {} elements, not a multiple of --group {}{} (or keep "
                                   "such weights unquantized with --ignore)",
                                   checkpoint.source, misfit->name, misfit->cols(), group, hint));
}

// Against `reference(r, out)`, row r of the source in f32.
TensorQuantReport round_trip_report(const Tensor& before, const Tensor& after,
                                    const std::function<void(int64_t, float*)>& reference, uint64_t bytes_before,
                                    ThreadPool& pool) {
  TensorQuantReport report;
  report.name = after.name;
  report.from = before.dtype;
  report.to = after.dtype;
  report.elements = after.numel();
  report.bytes_before = bytes_before;
  report.bytes_after = stored_bytes(after);
  const int64_t rows = after.rows(), cols = after.cols();
  // Per-row partial sums, reduced afterwards (parallel_for ranges run on different threads).
  std::vector<double> err_sq(rows), ref_sq(rows), err_max(rows), ref_max(rows);
  pool.parallel_for(rows, [&](int64_t begin, int64_t end) {
    std::vector<float> row(cols), source(cols);
    for (int64_t r = begin; r < end; ++r) {
      weight_row_to_f32(after, r, row.data());
      reference(r, source.data());
      for (int64_t c = 0; c < cols; ++c) {
        const double ref = source[c], err = static_cast<double>(row[c]) - ref;
        err_sq[r] += err * err;
        ref_sq[r] += ref * ref;
        err_max[r] = std::max(err_max[r], std::fabs(err));
        ref_max[r] = std::max(ref_max[r], std::fabs(ref));
      }
    }
  });
  double e2 = 0, r2 = 0, emax = 0, rmax = 0;
  for (int64_t r = 0; r < rows; ++r) {
    e2 += err_sq[r], r2 += ref_sq[r];
    emax = std::max(emax, err_max[r]), rmax = std::max(rmax, ref_max[r]);
  }
  report.relative_rms_error = r2 > 0 ? std::sqrt(e2 / r2) : std::sqrt(e2);
  report.normalized_max_error = rmax > 0 ? emax / rmax : emax;
  return report;
}

// Against w, the source in f32 (rows x cols).
TensorQuantReport round_trip_report(const Tensor& before, const Tensor& after, const std::vector<float>& w,
                                    uint64_t bytes_before, ThreadPool& pool) {
  const int64_t cols = after.cols();
  auto reference = [&](int64_t r, float* out) { std::copy_n(w.data() + r * cols, cols, out); };
  return round_trip_report(before, after, reference, bytes_before, pool);
}

// What one of the output layer / embedding tensors is to become: the wanted type, whether the user
// asked for it, and the option that did.
struct HeadTarget {
  Tensor* tensor;
  std::optional<DType> type;
  bool given;
  const char* option;
};

// The output layer (output.weight) and token_embd.weight. Tied (no output.weight), the embedding is
// the output layer and takes the output type, unless --token-embedding-type asks for one (as in
// llama-quantize, where that option wins).
std::vector<HeadTarget> head_targets(Checkpoint& checkpoint, const QuantizeOptions& options) {
  std::vector<HeadTarget> targets;
  auto embedding = checkpoint.tensors.find("token_embd.weight");
  auto output = checkpoint.tensors.find("output.weight");
  const bool tied = output == checkpoint.tensors.end();
  if (!tied)
    targets.push_back({&output->second, options.output_type, options.output_type_given, "--output-tensor-type"});
  if (embedding == checkpoint.tensors.end()) return targets;
  if (tied && !options.embedding_type_given)
    targets.push_back({&embedding->second, options.output_type, options.output_type_given, "--output-tensor-type"});
  else
    targets.push_back(
        {&embedding->second, options.embedding_type, options.embedding_type_given, "--token-embedding-type"});
  return targets;
}

// The dtype `t` converts its tensor to; nullopt keeps it. Rows that are not whole blocks of the
// wanted type are an error when the user asked for it, and otherwise fall back as llama-quantize
// does: Q8_0 when they are whole blocks of 32, else the tensor stays as it is.
Result<std::optional<DType>> head_tensor_dtype(const HeadTarget& t) {
  const Tensor& tensor = *t.tensor;
  if (!t.type || tensor.dtype == *t.type) return std::optional<DType>();
  const int64_t cols = tensor.cols(), block = dtype_info(*t.type).block_elems;
  if (cols % block == 0) return t.type;
  if (t.given)
    return Status::error(fmt::format("{} {}: tensor {} has rows of {} elements, not whole {}-element blocks", t.option,
                                     dtype_info(*t.type).name, tensor.name, cols, block));
  if (cols % dtype_info(DType::Q8_0).block_elems != 0 || tensor.dtype == DType::Q8_0) return std::optional<DType>();
  return std::optional<DType>(DType::Q8_0);
}

// A type the user asked for that the rows do not fit, before any work (a calibrated scheme may run
// for hours before the output layer's turn).
Status check_head_types_fit(Checkpoint& checkpoint, const QuantizeOptions& options) {
  for (const HeadTarget& t : head_targets(checkpoint, options)) ANVIL_RETURN_IF_ERROR(head_tensor_dtype(t).status());
  return Status::ok();
}

Status convert_head_tensors(Checkpoint& checkpoint, const QuantizeOptions& options, ThreadPool& pool,
                            QuantizeReport& report) {
  for (const HeadTarget& t : head_targets(checkpoint, options)) {
    ANVIL_ASSIGN_OR_RETURN(std::optional<DType> target, head_tensor_dtype(t));
    if (!target) continue;
    const Tensor before = *t.tensor;
    ANVIL_RETURN_IF_ERROR(convert_tensor_dtype(checkpoint, *t.tensor, *target, &pool));
    // The source rows stay in checkpoint.storage (or the file mapping): compared row by row, so a
    // vocabulary-sized matrix is never held in f32.
    auto reference = [&](int64_t r, float* out) { weight_row_to_f32(before, r, out); };
    report.head_tensors.push_back(round_trip_report(before, *t.tensor, reference, stored_bytes(before), pool));
  }
  return Status::ok();
}

}  // namespace

bool is_quantized_linear_weight(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return false;
  for (const char* suffix : kLinearWeights) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

std::vector<float> weight_to_f32(const Tensor& t, ThreadPool& pool) {
  const int64_t cols = t.cols();
  std::vector<float> out(static_cast<size_t>(t.numel()));
  pool.parallel_for(t.rows(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) weight_row_to_f32(t, r, out.data() + r * cols);
  });
  return out;
}

TensorQuantReport install_quantized(Checkpoint& checkpoint, Tensor& tensor, const Tensor& before, QuantizedMatrix q,
                                    const std::vector<float>& w, ThreadPool& pool) {
  auto owned = std::make_shared<QuantizedMatrix>(std::move(q));
  const std::vector<int64_t> shape = tensor.shape;
  tensor = owned->view(tensor.name);
  tensor.shape = shape;
  checkpoint.storage.push_back(owned);
  // The codes to weight memory (huge pages from 2 MiB): decode streams them every token, and the
  // quantizer's heap vector sits on 4 KiB pages. The scales stay where they are.
  std::shared_ptr<std::byte[]> codes = copy_to_weight_memory(owned->codes.data(), owned->codes.size());
  tensor.data = codes.get();
  checkpoint.storage.push_back(std::shared_ptr<const void>(codes, codes.get()));
  owned->codes = {};
  return round_trip_report(before, tensor, w, stored_bytes(before), pool);
}

Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options, ThreadPool& pool,
                                           const ProgressCallback& progress) {
  if (options.calibrated())
    return Status::error(fmt::format("{}: {} needs calibration data", checkpoint.source,
                                     options.smoothquant ? "SmoothQuant" : quant_scheme_name(options.scheme)));
  QuantizeReport report;
  uint64_t total = 0, done = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    report.checkpoint_bytes_before += stored_bytes(tensor);
    if (quantizes(name, options)) total += static_cast<uint64_t>(tensor.numel());
  }
  ANVIL_RETURN_IF_ERROR(check_ignore_patterns(checkpoint, options));
  ANVIL_RETURN_IF_ERROR(check_head_types_fit(checkpoint, options));
  if (options.scheme == QuantScheme::W4A16Rtn) ANVIL_RETURN_IF_ERROR(check_groups_fit(checkpoint, options));
  const DType target = quant_scheme_dtype(options.scheme);
  for (auto& [name, tensor] : checkpoint.tensors) {
    if (!quantizes(name, options)) continue;
    if (tensor.shape.size() != 2)
      return Status::error(fmt::format("{}: tensor {} has shape {}, not a matrix", checkpoint.source, name,
                                       tensor.shape_string()));
    const Tensor before = tensor;
    const std::vector<float> w = weight_to_f32(tensor, pool);
    if (dtype_has_external_scales(target)) {
      ANVIL_ASSIGN_OR_RETURN(QuantizedMatrix q, quantize_matrix(checkpoint.source + ": tensor " + tensor.name, w,
                                                                tensor.rows(), tensor.cols(), options, pool));
      report.tensors.push_back(install_quantized(checkpoint, tensor, before, std::move(q), w, pool));
    } else {
      ANVIL_RETURN_IF_ERROR(convert_tensor_dtype(checkpoint, tensor, target, &pool));
      report.tensors.push_back(round_trip_report(before, tensor, w, stored_bytes(before), pool));
    }
    done += static_cast<uint64_t>(tensor.numel());
    if (progress) progress(done, total);
  }
  if (report.tensors.empty())
    return Status::error(checkpoint.source + ": no linear-layer weights (blk.N.attn_q.weight, ...) to quantize");
  ANVIL_RETURN_IF_ERROR(convert_head_tensors(checkpoint, options, pool, report));
  for (const auto& [name, tensor] : checkpoint.tensors) report.checkpoint_bytes_after += stored_bytes(tensor);
  checkpoint.quantization = quantization_info(options);
  return report;
}

Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options,
                                           const CalibrationSet& calibration, ThreadPool& pool,
                                           const ProgressCallback& progress, const LayerProgressCallback& on_layer) {
  if (!options.calibrated()) return quantize_checkpoint(checkpoint, options, pool, progress);
  if (calibration.samples.empty()) return Status::error(checkpoint.source + ": the calibration set is empty");
  QuantizeReport report;
  report.calibration_samples = static_cast<int64_t>(calibration.samples.size());
  report.calibration_seq_len = calibration.seq_len();
  uint64_t total = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    report.checkpoint_bytes_before += stored_bytes(tensor);
    if (quantizes(name, options)) total += static_cast<uint64_t>(tensor.numel());
    if (is_quantized_linear_weight(name)) {
      if (tensor.shape.size() != 2)
        return Status::error(fmt::format("{}: tensor {} has shape {}, not a matrix", checkpoint.source, name,
                                         tensor.shape_string()));
    }
  }
  // Layer by layer, as the drivers report them.
  uint64_t done = 0;
  auto layer_done = [&](int64_t layer, int64_t n_layers) {
    for (const TensorQuantReport& t : report.tensors)
      if (t.name.rfind(fmt::format("blk.{}.", layer), 0) == 0) done += static_cast<uint64_t>(t.elements);
    if (progress) progress(done, total);
    if (on_layer) on_layer(layer, n_layers, report);
  };
  ANVIL_RETURN_IF_ERROR(check_ignore_patterns(checkpoint, options));
  ANVIL_RETURN_IF_ERROR(check_head_types_fit(checkpoint, options));
  if (options.scheme == QuantScheme::W4A16Gptq) {
    ANVIL_RETURN_IF_ERROR(check_groups_fit(checkpoint, options));
    ANVIL_RETURN_IF_ERROR(gptq_quantize_layers(checkpoint, options, calibration, pool, report, layer_done));
  } else {
    // SmoothQuant, then int8 per channel of the layer's (smoothed) f32 weights.
    auto quantize_layer = [&](SmoothedLayer& layer) -> Status {
      for (size_t i = 0; i < layer.tensors.size(); ++i) {
        Tensor& tensor = *layer.tensors[i];
        if (options.ignores(tensor.name)) continue;  // kept as f32 (smoothed when q/k/v/gate/up)
        const std::vector<float> w = weight_to_f32(tensor, pool);
        ANVIL_ASSIGN_OR_RETURN(QuantizedMatrix q,
                               quantize_int8_per_channel(checkpoint.source + ": tensor " + tensor.name, w.data(),
                                                         tensor.rows(), tensor.cols(), pool));
        report.tensors.push_back(install_quantized(checkpoint, tensor, layer.original[i], std::move(q), w, pool));
      }
      report.smoothing.insert(report.smoothing.end(), layer.smoothing.begin(), layer.smoothing.end());
      layer_done(layer.layer, checkpoint.config.n_layers);
      return Status::ok();
    };
    ANVIL_RETURN_IF_ERROR(smooth_checkpoint(checkpoint, calibration, options.alpha, pool, quantize_layer).status());
  }
  std::sort(report.tensors.begin(), report.tensors.end(),
            [](const TensorQuantReport& a, const TensorQuantReport& b) { return a.name < b.name; });
  if (report.tensors.empty())
    return Status::error(checkpoint.source + ": no linear-layer weights (blk.N.attn_q.weight, ...) to quantize");
  ANVIL_RETURN_IF_ERROR(convert_head_tensors(checkpoint, options, pool, report));
  for (const auto& [name, tensor] : checkpoint.tensors) report.checkpoint_bytes_after += stored_bytes(tensor);
  checkpoint.quantization = quantization_info(options);
  return report;
}

Result<std::vector<TensorQuantReport>> quantize_head_tensors(Checkpoint& checkpoint, const QuantizeOptions& options,
                                                             ThreadPool& pool) {
  QuantizeReport report;
  ANVIL_RETURN_IF_ERROR(convert_head_tensors(checkpoint, options, pool, report));
  return std::move(report.head_tensors);
}

int64_t QuantizeReport::quantized_elements() const {
  int64_t n = 0;
  for (const TensorQuantReport& t : tensors) n += t.elements;
  return n;
}

uint64_t QuantizeReport::quantized_bytes_before() const {
  uint64_t n = 0;
  for (const TensorQuantReport& t : tensors) n += t.bytes_before;
  return n;
}

uint64_t QuantizeReport::quantized_bytes_after() const {
  uint64_t n = 0;
  for (const TensorQuantReport& t : tensors) n += t.bytes_after;
  return n;
}

double QuantizeReport::bits_per_weight() const {
  const int64_t n = quantized_elements();
  return n > 0 ? 8.0 * static_cast<double>(quantized_bytes_after()) / static_cast<double>(n) : 0.0;
}

double QuantizeReport::max_relative_rms_error() const {
  double m = 0;
  for (const TensorQuantReport& t : tensors) m = std::max(m, t.relative_rms_error);
  return m;
}

double QuantizeReport::mean_relative_rms_error() const {
  double sum = 0;
  for (const TensorQuantReport& t : tensors) sum += t.relative_rms_error;
  return tensors.empty() ? 0.0 : sum / static_cast<double>(tensors.size());
}

double QuantizeReport::max_normalized_max_error() const {
  double m = 0;
  for (const TensorQuantReport& t : tensors) m = std::max(m, t.normalized_max_error);
  return m;
}

namespace {

double mean_measured(const std::vector<TensorQuantReport>& tensors, double TensorQuantReport::*field) {
  double sum = 0;
  int64_t n = 0;
  for (const TensorQuantReport& t : tensors)
    if (t.*field >= 0) sum += t.*field, ++n;
  return n > 0 ? sum / static_cast<double>(n) : -1.0;
}

}  // namespace

double QuantizeReport::mean_output_error() const { return mean_measured(tensors, &TensorQuantReport::output_error); }

double QuantizeReport::mean_rtn_output_error() const {
  return mean_measured(tensors, &TensorQuantReport::rtn_output_error);
}

}  // namespace anvil
