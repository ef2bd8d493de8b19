// quantize_checkpoint: source rows to f32, one scheme's quantizer, the round-trip error report.
#include "quant/quantize_checkpoint.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <memory>

#include "compute/cpu/matmul.h"
#include "model/convert_dtype.h"
#include "quant/fp8.h"
#include "quant/int4_rtn.h"
#include "quant/int8_w8a8.h"

namespace anvil {
namespace {

constexpr const char* kLinearWeights[] = {".attn_q.weight",   ".attn_k.weight",  ".attn_v.weight", ".attn_output.weight",
                                          ".ffn_gate.weight", ".ffn_up.weight",  ".ffn_down.weight"};

uint64_t stored_bytes(const Tensor& t) { return t.nbytes + t.scale_bytes(); }

// The whole matrix in f32 (rows dequantized in parallel, scales applied).
std::vector<float> to_f32(const Tensor& t, ThreadPool& pool) {
  const int64_t cols = t.cols();
  std::vector<float> out(static_cast<size_t>(t.numel()));
  pool.parallel_for(t.rows(), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) weight_row_to_f32(t, r, out.data() + r * cols);
  });
  return out;
}

// Scaled schemes: quantize, then keep the QuantizedMatrix alive in the checkpoint's storage.
Status quantize_scaled(Checkpoint& checkpoint, Tensor& tensor, const std::vector<float>& w,
                       const QuantizeOptions& options, ThreadPool& pool) {
  const std::string what = checkpoint.source + ": tensor " + tensor.name;
  const int64_t rows = tensor.rows(), cols = tensor.cols();
  Result<QuantizedMatrix> q = Status::error("unreachable");
  switch (options.scheme) {
    case QuantScheme::Fp8:
      q = quantize_fp8(what, w.data(), rows, cols,
                       options.per_tensor ? Fp8Granularity::PerTensor : Fp8Granularity::PerChannel, pool);
      break;
    case QuantScheme::W8A8: q = quantize_int8_per_channel(what, w.data(), rows, cols, pool); break;
    case QuantScheme::W4A16Rtn: {
      Int4Options int4;
      int4.group = options.group_size;
      int4.symmetric = !options.asymmetric;
      q = quantize_int4_rtn(what, w.data(), rows, cols, int4, pool);
      break;
    }
    default: return Status::error("internal: not a scaled scheme");
  }
  if (!q) return q.status();
  auto owned = std::make_shared<QuantizedMatrix>(std::move(q).value());
  const std::vector<int64_t> shape = tensor.shape;
  tensor = owned->view(tensor.name);
  tensor.shape = shape;
  checkpoint.storage.push_back(owned);
  return Status::ok();
}

// W4A16 groups must divide every row: checked before any work, suggesting a group that fits all.
Status check_groups_fit(const Checkpoint& checkpoint, int64_t group) {
  const Tensor* misfit = nullptr;
  bool fits[3] = {true, true, true};  // groups 128, 64, 32
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (!is_quantized_linear_weight(name)) continue;
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
  return Status::error(fmt::format("{}: tensor {} has rows of {} elements, not a multiple of --group {}{}",
                                   checkpoint.source, misfit->name, misfit->cols(), group, hint));
}

TensorQuantReport round_trip_report(const Tensor& before, const Tensor& after, const std::vector<float>& w,
                                    uint64_t bytes_before, ThreadPool& pool) {
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
    std::vector<float> row(cols);
    for (int64_t r = begin; r < end; ++r) {
      weight_row_to_f32(after, r, row.data());
      for (int64_t c = 0; c < cols; ++c) {
        const double ref = w[r * cols + c], err = static_cast<double>(row[c]) - ref;
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

}  // namespace

bool is_quantized_linear_weight(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return false;
  for (const char* suffix : kLinearWeights) {
    const std::string s(suffix);
    if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

Result<QuantizeReport> quantize_checkpoint(Checkpoint& checkpoint, const QuantizeOptions& options, ThreadPool& pool,
                                           const ProgressCallback& progress) {
  QuantizeReport report;
  uint64_t total = 0, done = 0;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    report.checkpoint_bytes_before += stored_bytes(tensor);
    if (is_quantized_linear_weight(name)) total += static_cast<uint64_t>(tensor.numel());
  }
  if (options.scheme == QuantScheme::W4A16Rtn) ANVIL_RETURN_IF_ERROR(check_groups_fit(checkpoint, options.group_size));
  const DType target = quant_scheme_dtype(options.scheme);
  for (auto& [name, tensor] : checkpoint.tensors) {
    if (!is_quantized_linear_weight(name)) continue;
    if (tensor.shape.size() != 2)
      return Status::error(fmt::format("{}: tensor {} has shape {}, not a matrix", checkpoint.source, name,
                                       tensor.shape_string()));
    const Tensor before = tensor;
    const std::vector<float> w = to_f32(tensor, pool);
    if (dtype_has_external_scales(target)) {
      ANVIL_RETURN_IF_ERROR(quantize_scaled(checkpoint, tensor, w, options, pool));
    } else {
      ANVIL_RETURN_IF_ERROR(convert_tensor_dtype(checkpoint, tensor, target));
    }
    report.tensors.push_back(round_trip_report(before, tensor, w, stored_bytes(before), pool));
    done += static_cast<uint64_t>(tensor.numel());
    if (progress) progress(done, total);
  }
  if (report.tensors.empty())
    return Status::error(checkpoint.source + ": no linear-layer weights (blk.N.attn_q.weight, ...) to quantize");
  for (const auto& [name, tensor] : checkpoint.tensors) report.checkpoint_bytes_after += stored_bytes(tensor);
  checkpoint.quantization = quantization_info(options);
  return report;
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

}  // namespace anvil
