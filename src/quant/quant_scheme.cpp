// Scheme names, option checks and the metadata record of `anvil quantize`.
#include "quant/quant_scheme.h"

#include <fmt/format.h>

namespace anvil {
namespace {

struct SchemeRow {
  QuantScheme scheme;
  const char* name;
  DType dtype;
};
constexpr SchemeRow kSchemes[] = {
    {QuantScheme::Fp8, "fp8", DType::F8_E4M3},     {QuantScheme::W8A8, "w8a8", DType::I8},
    {QuantScheme::W4A16Rtn, "w4a16-rtn", DType::I4}, {QuantScheme::Q8_0, "q8_0", DType::Q8_0},
    {QuantScheme::Q4_0, "q4_0", DType::Q4_0},       {QuantScheme::Q4_K, "q4_k", DType::Q4_K},
};

const SchemeRow& row_of(QuantScheme scheme) {
  for (const SchemeRow& row : kSchemes)
    if (row.scheme == scheme) return row;
  return kSchemes[0];
}

constexpr const char* kSchemeList = "fp8, w8a8, w4a16-rtn, q8_0, q4_0 or q4_k";

}  // namespace

const char* quant_scheme_name(QuantScheme scheme) { return row_of(scheme).name; }

DType quant_scheme_dtype(QuantScheme scheme) { return row_of(scheme).dtype; }

Result<QuantizeOptions> make_quantize_options(const QuantizeRequest& request) {
  if (request.scheme == "w4a16-gptq")
    return Status::error("--scheme w4a16-gptq is not available yet (it needs calibration data); use w4a16-rtn");
  if (request.scheme == "w8a8-smoothquant" || request.smoothquant)
    return Status::error("SmoothQuant is not available yet (it needs calibration data); use --scheme w8a8, whose "
                         "activations are quantized per token at run time");
  const SchemeRow* found = nullptr;
  for (const SchemeRow& row : kSchemes)
    if (request.scheme == row.name) found = &row;
  if (!found) return Status::error(fmt::format("--scheme: unknown scheme '{}'; use {}", request.scheme, kSchemeList));
  QuantizeOptions options;
  options.scheme = found->scheme;
  const bool w4 = options.scheme == QuantScheme::W4A16Rtn;
  if (!request.calibration_file.empty())
    return Status::error(fmt::format("--calib: scheme {} takes no calibration data (the calibrated schemes, "
                                     "w4a16-gptq and w8a8 SmoothQuant, are not available yet)", found->name));
  if (request.group_size && !w4)
    return Status::error(fmt::format("--group applies to w4a16-rtn only, not {}", found->name));
  if (request.asymmetric && !w4)
    return Status::error(fmt::format("--asym applies to w4a16-rtn only, not {}", found->name));
  if (request.per_tensor && options.scheme != QuantScheme::Fp8)
    return Status::error(fmt::format("--per-tensor applies to fp8 only, not {}", found->name));
  if (request.group_size) {
    const int64_t g = *request.group_size;
    if (g != 32 && g != 64 && g != 128)
      return Status::error(fmt::format("--group {}: int4 group size must be 32, 64 or 128", g));
    options.group_size = g;
  }
  options.asymmetric = request.asymmetric;
  options.per_tensor = request.per_tensor;
  return options;
}

QuantizationInfo quantization_info(const QuantizeOptions& options) {
  QuantizationInfo info;
  info.scheme = quant_scheme_name(options.scheme);
  switch (options.scheme) {
    case QuantScheme::Fp8: info.granularity = options.per_tensor ? "per-tensor" : "per-channel"; break;
    case QuantScheme::W8A8: info.granularity = "per-channel"; break;
    case QuantScheme::W4A16Rtn:
      info.granularity = "group";
      info.group_size = options.group_size;
      info.symmetric = !options.asymmetric;
      break;
    case QuantScheme::Q8_0:
    case QuantScheme::Q4_0:
      info.granularity = "block";
      info.group_size = 32;
      break;
    case QuantScheme::Q4_K:
      info.granularity = "block";
      info.group_size = 32;  // 6-bit scales and mins per 32 within super-blocks of 256
      info.symmetric = false;
      break;
  }
  return info;
}

}  // namespace anvil
