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
    {QuantScheme::Fp8, "fp8", DType::F8_E4M3},         {QuantScheme::Fp8Dynamic, "fp8-dynamic", DType::F8_E4M3},
    {QuantScheme::W8A8, "w8a8", DType::I8},
    {QuantScheme::W4A16Rtn, "w4a16-rtn", DType::I4},   {QuantScheme::W4A16Gptq, "w4a16-gptq", DType::I4},
    {QuantScheme::Q8_0, "q8_0", DType::Q8_0},          {QuantScheme::Q4_0, "q4_0", DType::Q4_0},
    {QuantScheme::Q4_K, "q4_k", DType::Q4_K},
};

const SchemeRow& row_of(QuantScheme scheme) {
  for (const SchemeRow& row : kSchemes)
    if (row.scheme == scheme) return row;
  return kSchemes[0];
}

constexpr const char* kSchemeList =
    "fp8, fp8-dynamic, w8a8, w8a8-smoothquant, w4a16-rtn, w4a16-gptq, q8_0, q4_0 or q4_k";
constexpr const char* kCalibratedSchemes = "w4a16-gptq and w8a8 --smoothquant";
constexpr int64_t kMaxCalibrationSamples = 1 << 20;
constexpr int64_t kMaxCalibrationSeqLen = 1 << 20;

// The calibration options, checked against whether the scheme takes them.
Status check_calibration(const QuantizeRequest& request, const char* scheme, bool calibrated, QuantizeOptions& options) {
  const bool text = !request.calibration_file.empty(), tokens = !request.calibration_tokens_file.empty();
  if (!calibrated) {
    if (text || tokens)
      return Status::error(fmt::format("{}: scheme {} takes no calibration data (the calibrated schemes are {})",
                                       text ? "--calib" : "--calib-tokens", scheme, kCalibratedSchemes));
    if (request.calibration_samples || request.calibration_seq_len)
      return Status::error(fmt::format("{} applies to the calibrated schemes ({}) only, not {}",
                                       request.calibration_samples ? "--calib-samples" : "--calib-seq-len",
                                       kCalibratedSchemes, scheme));
    return Status::ok();
  }
  const std::string what = options.smoothquant ? "SmoothQuant" : std::string("--scheme ") + scheme;
  if (text && tokens)
    return Status::error("--calib and --calib-tokens: give one calibration source (text or token ids), not both");
  if (!text && !tokens)
    return Status::error(fmt::format("{} needs calibration data: give --calib FILE (text, tokenized with the model's "
                                     "tokenizer) or --calib-tokens FILE (token ids)",
                                     what));
  options.calibration_source.text_file = request.calibration_file;
  options.calibration_source.tokens_file = request.calibration_tokens_file;
  if (request.calibration_samples) {
    const int64_t n = *request.calibration_samples;
    if (n < 1 || n > kMaxCalibrationSamples)
      return Status::error(fmt::format("--calib-samples {}: must be between 1 and {}", n, kMaxCalibrationSamples));
    options.calibration.samples = n;
  }
  if (request.calibration_seq_len) {
    const int64_t n = *request.calibration_seq_len;
    if (n < 1 || n > kMaxCalibrationSeqLen)
      return Status::error(fmt::format("--calib-seq-len {}: must be between 1 and {}", n, kMaxCalibrationSeqLen));
    options.calibration.seq_len = n;
  }
  return Status::ok();
}

}  // namespace

const char* quant_scheme_name(QuantScheme scheme) { return row_of(scheme).name; }

DType quant_scheme_dtype(QuantScheme scheme) { return row_of(scheme).dtype; }

Result<QuantizeOptions> make_quantize_options(const QuantizeRequest& request) {
  QuantizeOptions options;
  // "w8a8-smoothquant" (the name files record) is w8a8 with --smoothquant.
  const bool smoothquant_name = request.scheme == "w8a8-smoothquant";
  const std::string scheme = smoothquant_name ? "w8a8" : request.scheme;
  const SchemeRow* found = nullptr;
  for (const SchemeRow& row : kSchemes)
    if (scheme == row.name) found = &row;
  if (!found) return Status::error(fmt::format("--scheme: unknown scheme '{}'; use {}", request.scheme, kSchemeList));
  options.scheme = found->scheme;
  options.smoothquant = request.smoothquant || smoothquant_name;
  if (options.smoothquant && options.scheme != QuantScheme::W8A8)
    return Status::error(fmt::format("--smoothquant applies to w8a8 only, not {}", found->name));
  const bool w4 = options.scheme == QuantScheme::W4A16Rtn || options.scheme == QuantScheme::W4A16Gptq;
  ANVIL_RETURN_IF_ERROR(check_calibration(request, found->name, options.calibrated(), options));
  if (request.group_size && !w4)
    return Status::error(fmt::format("--group applies to w4a16-rtn and w4a16-gptq only, not {}", found->name));
  if (request.asymmetric && !w4)
    return Status::error(fmt::format("--asym applies to w4a16-rtn and w4a16-gptq only, not {}", found->name));
  const bool fp8 = options.scheme == QuantScheme::Fp8 || options.scheme == QuantScheme::Fp8Dynamic;
  if (request.per_tensor && !fp8)
    return Status::error(fmt::format("--per-tensor applies to fp8 and fp8-dynamic only, not {}", found->name));
  if (request.act_order && options.scheme != QuantScheme::W4A16Gptq)
    return Status::error(fmt::format("--act-order applies to w4a16-gptq only, not {}", found->name));
  if (request.dynamic_groups && !request.act_order)
    return Status::error("--dynamic-groups applies to w4a16-gptq --act-order only");
  if (request.alpha && !options.smoothquant)
    return Status::error("--alpha applies to w8a8 --smoothquant only");
  if (request.alpha) {
    const double alpha = *request.alpha;
    if (!(alpha >= 0.0 && alpha <= 1.0))
      return Status::error(fmt::format("--alpha {}: SmoothQuant's migration strength must be between 0 and 1", alpha));
    options.alpha = alpha;
  }
  if (request.group_size) {
    const int64_t g = *request.group_size;
    if (g != 32 && g != 64 && g != 128)
      return Status::error(fmt::format("--group {}: int4 group size must be 32, 64 or 128", g));
    options.group_size = g;
  }
  for (const std::string& pattern : request.ignore)
    if (pattern.empty()) return Status::error("--ignore: an empty pattern would match every weight");
  options.asymmetric = request.asymmetric;
  options.per_tensor = request.per_tensor;
  options.act_order = request.act_order;
  options.dynamic_groups = request.dynamic_groups;
  options.ignore = request.ignore;
  const bool ggml = options.scheme == QuantScheme::Q8_0 || options.scheme == QuantScheme::Q4_0 ||
                    options.scheme == QuantScheme::Q4_K;
  if (ggml) {
    options.output_type = options.scheme == QuantScheme::Q8_0 ? DType::Q8_0 : DType::Q6_K;
    options.embedding_type = found->dtype;
  }
  auto head_type = [](const std::string& text, const char* option, std::optional<DType>& out, bool& given) -> Status {
    if (text.empty()) return Status::ok();
    given = true;
    if (text == "keep") {
      out.reset();
      return Status::ok();
    }
    // The types convert_tensor_dtype writes: an encoder, and no scales apart from the codes.
    const std::optional<DType> dtype = dtype_from_name(text);
    if (!dtype || !dtype_info(*dtype).from_float || dtype_info(*dtype).external_scales)
      return Status::error(fmt::format("{} {}: use f32, f16, bf16, q8_0, q4_0, q4_k, q6_k or keep", option, text));
    out = *dtype;
    return Status::ok();
  };
  ANVIL_RETURN_IF_ERROR(
      head_type(request.output_tensor_type, "--output-tensor-type", options.output_type, options.output_type_given));
  ANVIL_RETURN_IF_ERROR(head_type(request.token_embedding_type, "--token-embedding-type", options.embedding_type,
                                  options.embedding_type_given));
  return options;
}

ActivationQuant QuantizeOptions::activations() const {
  return scheme == QuantScheme::Fp8Dynamic ? ActivationQuant::DynamicPerTokenFp8 : ActivationQuant::None;
}

bool QuantizeOptions::ignores(const std::string& tensor_name) const {
  for (const std::string& pattern : ignore)
    if (tensor_name.find(pattern) != std::string::npos) return true;
  return false;
}

QuantizationInfo quantization_info(const QuantizeOptions& options) {
  QuantizationInfo info;
  info.scheme = quant_scheme_name(options.scheme);
  switch (options.scheme) {
    case QuantScheme::Fp8:
    case QuantScheme::Fp8Dynamic:
      info.granularity = options.per_tensor ? "per-tensor" : "per-channel";
      info.activations = options.activations();
      break;
    case QuantScheme::W8A8:
      info.granularity = "per-channel";
      if (options.smoothquant) {
        info.scheme = "w8a8-smoothquant";
        info.smoothquant_alpha = options.alpha;
      }
      break;
    case QuantScheme::W4A16Rtn:
    case QuantScheme::W4A16Gptq:
      info.granularity = "group";
      info.group_size = options.group_size;
      info.symmetric = !options.asymmetric;
      info.act_order = options.scheme == QuantScheme::W4A16Gptq && options.act_order;
      info.dynamic_groups = info.act_order && options.dynamic_groups;
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
