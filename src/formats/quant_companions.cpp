// Pairing scaled weights with their scale / zero-point companion tensors, both ways.
#include "formats/quant_companions.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <memory>

namespace anvil {
namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() > suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The companion's values as floats the checkpoint keeps alive (F32 in place, F16/BF16 converted).
Result<const float*> companion_floats(Checkpoint& checkpoint, const Tensor& companion) {
  if (companion.dtype == DType::F32) {
    if (reinterpret_cast<uintptr_t>(companion.data) % alignof(float) != 0)
      return Status::error(fmt::format("{}: tensor {} is not 4-byte aligned", checkpoint.source, companion.name));
    return reinterpret_cast<const float*>(companion.data);
  }
  if (companion.dtype != DType::F16 && companion.dtype != DType::BF16)
    return Status::error(fmt::format("{}: tensor {} has type {}; scales and zero points must be F32, F16 or BF16",
                                     checkpoint.source, companion.name, dtype_name(companion.dtype)));
  auto buffer = std::shared_ptr<float[]>(new float[companion.numel()]);
  dtype_info(companion.dtype).to_float(companion.data, buffer.get(), companion.numel());
  checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
  return static_cast<const float*>(buffer.get());
}

// NAME_order: (cols) F32 column indices, exact integers (the file format has no int32 tensors
// anvil reads), kept as int32 for the matmuls' gather. check_quant_scales checks the permutation.
Status attach_input_order(Checkpoint& checkpoint, Tensor& weight, const Tensor& companion) {
  const std::string& source = checkpoint.source;
  const std::string& name = companion.name;
  const std::string& weight_name = weight.name;
  if (weight.dtype != DType::I4)
    return Status::error(fmt::format("{}: tensor {} is {}; only I4 weights take an input column order ({})", source,
                                     weight_name, dtype_name(weight.dtype), name));
  const int64_t cols = weight.cols();
  if (companion.dtype != DType::F32 || companion.shape != std::vector<int64_t>{cols})
    return Status::error(fmt::format("{}: tensor {} is {} {}; the input column order of {} {} must be F32 ({},)", source,
                                     name, dtype_name(companion.dtype), companion.shape_string(), weight_name,
                                     weight.shape_string(), cols));
  auto order = std::shared_ptr<int32_t[]>(new int32_t[cols]);
  for (int64_t j = 0; j < cols; ++j) {
    float v;
    std::memcpy(&v, companion.data + j * sizeof(float), sizeof(float));
    if (!(v >= 0.0f && v < static_cast<float>(cols)) || v != std::floor(v))
      return Status::error(fmt::format("{}: tensor {} entry {} is {}, not a column index 0..{}", source, name, j, v,
                                       cols - 1));
    order[j] = static_cast<int32_t>(v);
  }
  checkpoint.storage.push_back(std::shared_ptr<const void>(order, order.get()));
  weight.quant.input_order = order.get();
  return Status::ok();
}

}  // namespace

Status attach_quant_companions(Checkpoint& checkpoint) {
  const std::string& source = checkpoint.source;
  // Collect first: attaching erases entries from the map being walked.
  std::vector<std::string> companions;
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (ends_with(name, kScaleSuffix) || ends_with(name, kZeroSuffix) || ends_with(name, kOrderSuffix))
      companions.push_back(name);
  for (const std::string& name : companions) {
    const bool is_scale = ends_with(name, kScaleSuffix), is_order = ends_with(name, kOrderSuffix);
    const char* suffix = is_scale ? kScaleSuffix : is_order ? kOrderSuffix : kZeroSuffix;
    const std::string weight_name = name.substr(0, name.size() - std::string(suffix).size());
    auto weight_it = checkpoint.tensors.find(weight_name);
    if (weight_it == checkpoint.tensors.end())
      return Status::error(fmt::format("{}: tensor {} has no weight {} to belong to", source, name, weight_name));
    Tensor& weight = weight_it->second;
    const Tensor companion = checkpoint.tensors.at(name);
    if (is_order) {
      ANVIL_RETURN_IF_ERROR(attach_input_order(checkpoint, weight, companion));
      checkpoint.tensors.erase(name);
      continue;
    }
    if (!dtype_has_external_scales(weight.dtype))
      return Status::error(fmt::format("{}: tensor {} is {}, which takes no {} tensor ({})", source, weight_name,
                                       dtype_name(weight.dtype), is_scale ? "scale" : "zero-point", name));
    // (rows, groups) with groups dividing the row; 1-D (rows) is one scale per row, and a single
    // value (1,) is a per-tensor scale (compressed-tensors' layout), expanded to every row.
    const int64_t rows = weight.rows(), cols = weight.cols();
    const int64_t groups = companion.shape.size() == 2 ? companion.shape[1] : 1;
    const bool per_tensor = companion.shape.size() == 1 && companion.shape[0] == 1 && is_scale;
    const bool shape_ok = weight.shape.size() == 2 && groups > 0 && cols % groups == 0 &&
                          ((companion.shape.size() == 2 && companion.shape[0] == rows) ||
                           (companion.shape.size() == 1 && companion.shape[0] == rows) || per_tensor);
    if (!shape_ok)
      return Status::error(fmt::format("{}: tensor {} has shape {}; for weight {} {} it must be ({}, G) with G "
                                       "dividing {} (one value per row and group)",
                                       source, name, companion.shape_string(), weight_name, weight.shape_string(), rows,
                                       cols));
    ANVIL_ASSIGN_OR_RETURN(const float* values, companion_floats(checkpoint, companion));
    if (per_tensor && rows > 1) {
      auto expanded = std::shared_ptr<float[]>(new float[rows]);
      for (int64_t r = 0; r < rows; ++r) expanded[r] = values[0];
      checkpoint.storage.push_back(std::shared_ptr<const void>(expanded, expanded.get()));
      values = expanded.get();
    }
    const int64_t group = cols / groups;
    if (weight.quant.group != 0 && weight.quant.group != group)
      return Status::error(fmt::format("{}: tensors {}{} and {}{} disagree on the group size ({} vs {})", source,
                                       weight_name, kScaleSuffix, weight_name, kZeroSuffix, weight.quant.group, group));
    weight.quant.group = group;
    (is_scale ? weight.quant.scale : weight.quant.zero) = values;
    checkpoint.tensors.erase(name);
  }
  for (const auto& [name, tensor] : checkpoint.tensors)
    ANVIL_RETURN_IF_ERROR(check_quant_scales(tensor).with_context(source));
  return Status::ok();
}

Result<ActivationQuant> recorded_activation_quant(const Checkpoint& checkpoint) {
  const Tensor* first = nullptr;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (tensor.dtype != DType::F8_E4M3) continue;
    if (!first) first = &tensor;
    if (tensor.quant.activations != first->quant.activations)
      return Status::error(fmt::format("{}: F8_E4M3 weights {} ({} activations) and {} ({}) differ in activation "
                                       "quantization, which a file records once for all its F8_E4M3 weights",
                                       checkpoint.source, first->name, activation_quant_name(first->quant.activations),
                                       tensor.name, activation_quant_name(tensor.quant.activations)));
  }
  return first ? first->quant.activations : ActivationQuant::None;
}

void apply_activation_quant(Checkpoint& checkpoint, ActivationQuant activations) {
  for (auto& [name, tensor] : checkpoint.tensors)
    if (tensor.dtype == DType::F8_E4M3) tensor.quant.activations = activations;
}

std::vector<Tensor> quant_companion_tensors(const Tensor& weight, std::list<std::vector<float>>& buffers) {
  std::vector<Tensor> out;
  if (!weight.has_scales()) return out;
  auto view = [&](const char* suffix, const float* values, std::vector<int64_t> shape) {
    Tensor t;
    t.name = weight.name + suffix;
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.data = reinterpret_cast<const std::byte*>(values);
    t.nbytes = static_cast<size_t>(t.numel()) * sizeof(float);
    return t;
  };
  out.push_back(view(kScaleSuffix, weight.quant.scale, {weight.rows(), weight.scale_groups()}));
  if (weight.quant.zero) out.push_back(view(kZeroSuffix, weight.quant.zero, {weight.rows(), weight.scale_groups()}));
  if (const int32_t* order = weight.quant.input_order) {
    const std::vector<float>& values = buffers.emplace_back(order, order + weight.cols());  // exact below 2^24
    out.push_back(view(kOrderSuffix, values.data(), {weight.cols()}));
  }
  return out;
}

}  // namespace anvil
