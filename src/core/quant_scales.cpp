// Validation of a Tensor's QuantScales against its dtype and shape.
#include "core/quant_scales.h"

#include <cmath>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace anvil {

namespace {

std::string describe(const Tensor& t) {
  return "tensor " + t.name + " (" + dtype_name(t.dtype) + " " + t.shape_string() + ")";
}

}  // namespace

const char* activation_quant_name(ActivationQuant activations) {
  switch (activations) {
    case ActivationQuant::None: return "none";
    case ActivationQuant::DynamicPerTokenFp8: return "dynamic-per-token-fp8";
  }
  return "?";
}

std::optional<ActivationQuant> activation_quant_from_name(const std::string& name) {
  for (ActivationQuant a : {ActivationQuant::None, ActivationQuant::DynamicPerTokenFp8})
    if (name == activation_quant_name(a)) return a;
  return std::nullopt;
}

Status check_quant_scale_layout(const Tensor& t) {
  const QuantScales& q = t.quant;
  const std::string what = describe(t);
  if (q.activations != ActivationQuant::None && t.dtype != DType::F8_E4M3)
    return Status::error(what + " asks for " + activation_quant_name(q.activations) +
                         " activations, which only F8_E4M3 weights take");
  if (!dtype_has_external_scales(t.dtype)) {
    if (q.scale || q.zero) return Status::error(what + " has scale tensors, but its type keeps no external scales");
    return Status::ok();
  }
  if (t.shape.size() != 2) return Status::error(what + ": scaled weights must be matrices (rows, cols)");
  if (!q.scale) return Status::error(what + " has no scales (expected a companion " + t.name + "_scale tensor)");
  const int64_t cols = t.cols();
  if (q.group <= 0 || cols % q.group != 0)
    return Status::error(what + ": scale group size " + std::to_string(q.group) + " does not divide its rows of " +
                         std::to_string(cols) + " elements");
  if (t.dtype == DType::I4) {
    if (q.group != 32 && q.group != 64 && q.group != 128)
      return Status::error(what + ": I4 group size " + std::to_string(q.group) + " is not supported (32, 64 or 128)");
  } else if (q.group != cols) {
    return Status::error(what + ": " + dtype_name(t.dtype) + " weights take one scale per row (per-channel or " +
                         "per-tensor), not groups of " + std::to_string(q.group));
  }
  if (t.dtype == DType::I8 && cols > kMaxI8Cols)
    return Status::error(what + ": rows of " + std::to_string(cols) + " elements overflow int32 dot products (at most " +
                         std::to_string(kMaxI8Cols) + ")");
  if (q.zero && t.dtype != DType::I4)
    return Status::error(what + " has zero points, which only asymmetric I4 weights take");
  if (q.input_order && t.dtype != DType::I4)
    return Status::error(what + " has an input column order, which only I4 weights (GPTQ act-order) take");
  return Status::ok();
}

Status check_quant_scales(const Tensor& t) {
  ANVIL_RETURN_IF_ERROR(check_quant_scale_layout(t));
  if (!t.has_scales()) return Status::ok();
  const QuantScales& q = t.quant;
  const std::string what = describe(t);
  const int64_t groups = t.scale_groups(), n = t.rows() * groups;
  auto at = [&](int64_t i) { return "(row " + std::to_string(i / groups) + ", group " + std::to_string(i % groups) + ")"; };
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(q.scale[i])) return Status::error(what + ": scale " + at(i) + " is not finite");
  if (q.zero) {
    for (int64_t i = 0; i < n; ++i) {
      const float z = q.zero[i];
      if (!(z >= 0.0f && z <= 15.0f) || z != std::nearbyint(z))
        return Status::error(what + ": zero point " + at(i) + " is " + std::to_string(z) + ", not an integer in 0..15");
    }
  }
  if (q.input_order) {
    const int64_t cols = t.cols();
    std::vector<bool> seen(static_cast<size_t>(cols), false);
    for (int64_t j = 0; j < cols; ++j) {
      const int64_t c = q.input_order[j];
      if (c < 0 || c >= cols || seen[c])
        return Status::error(what + ": input column order entry " + std::to_string(j) + " is " + std::to_string(c) +
                             (c < 0 || c >= cols ? ", outside 0.." + std::to_string(cols - 1)
                                                 : ", a column already listed (not a permutation)"));
      seen[c] = true;
    }
  }
  return Status::ok();
}

}  // namespace anvil
