// compressed-tensors (vLLM / llm-compressor) layouts: FP8 / INT8 weights stored as such with
// per-tensor or per-channel scales ("float-quantized", "int-quantized", "naive-quantized"), and
// int4 (or int8) codes packed into int32 words ("pack-quantized").
#include <fmt/format.h>

#include <cstring>

#include "formats/hf_quantized_layouts.h"
#include "quant/int4_codes.h"

namespace anvil::hf_quant {
namespace {

std::vector<const HfCtWeightArgs*> groups_of(const HfQuantization& q, const std::string& type, int bits) {
  std::vector<const HfCtWeightArgs*> out;
  for (const HfCtWeightArgs& a : q.groups)
    if (a.type == type && a.num_bits == bits) out.push_back(&a);
  return out;
}

std::string describe(const HfCtWeightArgs& a) {
  std::string text = fmt::format("'{}' ({}{} {}", a.group_name, a.type, a.num_bits, a.strategy);
  if (a.strategy == "group") text += fmt::format(" {}", a.group_size);
  return text + (a.symmetric ? ")" : " asymmetric)");
}

std::string describe(const std::vector<const HfCtWeightArgs*>& groups) {
  std::string text;
  for (const HfCtWeightArgs* a : groups) text += (text.empty() ? "" : ", ") + describe(*a);
  return text;
}

std::string describe_all(const HfQuantization& q) {
  std::vector<const HfCtWeightArgs*> all;
  for (const HfCtWeightArgs& a : q.groups) all.push_back(&a);
  return describe(all);
}

// The layout the tensors show must be the one config.json names (mixed formats name none).
Status check_format(const HfQuantization& q, const ModuleTensors& m, const char* stored_as, const char* expected_format) {
  if (q.format == "naive-quantized" || q.format == "mixed-precision" || q.format == expected_format) return Status::ok();
  return Status::error(fmt::format("{} is stored as {}, but quantization_config.format is '{}' (that layout would be "
                                   "'{}')",
                                   m.module(), stored_as, q.format, expected_format));
}

// Per-tensor ((), (1,)) or per-channel ((rows, 1), (rows,)) scales, one per row, as the config
// group that declares the matching strategy allows.
Result<std::vector<float>> per_row_scales(const SafetensorsEntry& scale, int64_t rows, int64_t cols,
                                          const std::vector<const HfCtWeightArgs*>& groups, const char* dtype) {
  ANVIL_ASSIGN_OR_RETURN(std::vector<float> values, read_floats(scale, "scales"));
  bool all_ones = true;
  for (int64_t d : scale.shape) all_ones = all_ones && d == 1;
  const bool per_tensor = scale.numel() == 1 && all_ones;
  const bool per_channel = scale.shape == std::vector<int64_t>{rows, 1} || scale.shape == std::vector<int64_t>{rows};
  if (!per_tensor && !per_channel)
    return Status::error(fmt::format("tensor {} has shape {}; a ({}, {}) {} weight takes one scale (shape () or (1,), "
                                     "per-tensor) or one per output row (({}, 1), per-channel)",
                                     scale.name, shape_text(scale.shape), rows, cols, dtype, rows));
  const char* strategy = per_tensor ? "tensor" : "channel";
  bool declared = false;
  for (const HfCtWeightArgs* a : groups) declared = declared || a->strategy == strategy;
  // A single scale on a one-row weight is both.
  if (!declared && !(rows == 1 && per_channel))
    return Status::error(fmt::format("tensor {} holds {} scales, but the config groups for this weight type declare {}",
                                     scale.name, per_tensor ? "per-tensor" : "per-channel", describe(groups)));
  if (per_tensor) values.assign(static_cast<size_t>(rows), values[0]);
  return values;
}

std::string describe(const HfCtActivationArgs& a) {
  return fmt::format("{}{} strategy {}, dynamic {}", a.type, a.num_bits, a.strategy, a.dynamic);
}

// What FP8 weights do to their input, from their config groups' input_activations: nothing
// (none declared: W8A16) or per-token dynamic E4M3 (FP8_DYNAMIC). Anything else is refused
// rather than run differently from how the checkpoint was calibrated: static scales
// (MODULE.input_scale, llm-compressor's "FP8" scheme) and dynamic per-tensor scales.
Result<ActivationQuant> fp8_input_activations(const std::vector<const HfCtWeightArgs*>& groups, const ModuleTensors& m) {
  const HfCtWeightArgs& first = *groups.front();
  for (const HfCtWeightArgs* g : groups) {
    const HfCtActivationArgs &a = g->input_activations, &b = first.input_activations;
    if (a.present != b.present || (a.present && describe(a) != describe(b)))
      return Status::error(fmt::format("{}: config groups '{}' and '{}' both quantize 8-bit float weights but declare "
                                       "different input_activations; anvil cannot tell which applies to this layer",
                                       m.module(), first.group_name, g->group_name));
  }
  const HfCtActivationArgs& a = first.input_activations;
  if (!a.present) return ActivationQuant::None;
  if (is_fp8_dynamic(a)) return ActivationQuant::DynamicPerTokenFp8;
  const std::string declared =
      fmt::format("config group '{}' declares input_activations {}", first.group_name, describe(a));
  if (a.dynamic == "false")
    return Status::error(fmt::format("{}: {}: static activation scales ({}) are not supported; anvil runs FP8 "
                                     "activations dynamically per token only (FP8_DYNAMIC: dynamic true, strategy "
                                     "token)",
                                     m.module(), declared, m.name("input_scale")));
  return Status::error(fmt::format("{}: {}, which anvil does not run: FP8 weights take float activations "
                                   "(input_activations null) or FP8 ones quantized dynamically per token (type float, "
                                   "num_bits 8, dynamic true, strategy token)",
                                   m.module(), declared));
}

// F8_E4M3 and I8 weights have no zero point: a stored one must be all zeros.
Status check_no_zero_points(const ModuleTensors& m, int64_t rows) {
  const SafetensorsEntry* zp = m.find("weight_zero_point");
  if (!zp) return Status::ok();
  ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> zeros, read_integers(*zp, "zero points"));
  if (zp->numel() != 1 && zp->numel() != rows)
    return Status::error(fmt::format("tensor {} has shape {}; it needs one zero point per tensor or per row ({})",
                                     zp->name, shape_text(zp->shape), rows));
  for (size_t i = 0; i < zeros.size(); ++i)
    if (zeros[i] != 0)
      return Status::error(fmt::format("tensor {} holds zero point {} (row {}): asymmetric 8-bit weights are not "
                                       "supported, anvil's F8_E4M3 and I8 weights are symmetric",
                                       zp->name, zeros[i], i));
  return Status::ok();
}

Result<std::optional<Tensor>> decode_naive(const HfQuantization& q, const ModuleTensors& m, const SafetensorsEntry& weight,
                                           DType dtype, int64_t rows, int64_t cols, Storage& storage) {
  const bool fp8 = dtype == DType::F8_E4M3;
  ANVIL_RETURN_IF_ERROR(check_format(q, m, fp8 ? "F8_E4M3 weight" : "I8 weight", fp8 ? "float-quantized" : "int-quantized"));
  ANVIL_RETURN_IF_ERROR(expect_shape(weight, {rows, cols}, "the model config"));
  const std::vector<const HfCtWeightArgs*> groups = groups_of(q, fp8 ? "float" : "int", 8);
  if (groups.empty()) {
    if (!fp8 && !groups_of(q, "int", 4).empty())
      return Status::error(fmt::format("tensor {} holds int4 codes unpacked in I8, which anvil does not read; int4 "
                                       "weights must be pack-quantized",
                                       weight.name));
    return Status::error(fmt::format("tensor {} is {}, but no config group declares 8-bit {} weights (config groups: {})",
                                     weight.name, weight.dtype, fp8 ? "float" : "int", describe_all(q)));
  }
  ANVIL_ASSIGN_OR_RETURN(const SafetensorsEntry* scale, m.require("weight_scale", "the weight's scales"));
  ANVIL_ASSIGN_OR_RETURN(std::vector<float> scales, per_row_scales(*scale, rows, cols, groups, weight.dtype.c_str()));
  ANVIL_RETURN_IF_ERROR(check_no_zero_points(m, rows));
  // F8_E4M3 weights run their activations as the config declares (W8A16 or FP8_DYNAMIC; static
  // input_scale is refused). I8 weights always take dynamic per-token int8 activations, whatever
  // the config says (docs/FORMATS.md).
  ActivationQuant activations = ActivationQuant::None;
  if (fp8) {
    ANVIL_ASSIGN_OR_RETURN(activations, fp8_input_activations(groups, m));
  }
  ANVIL_ASSIGN_OR_RETURN(Tensor t, assemble_per_row(dtype, rows, cols, weight.data, std::move(scales), m.module(), storage));
  t.quant.activations = activations;
  return std::optional<Tensor>(std::move(t));
}

// Zero points of a pack-quantized int4 weight, as anvil's unsigned zero points (rows, groups), or
// empty for symmetric weights. compressed-tensors stores a signed zero point zp in [-8, 7];
// packed (asymmetric group/channel, the current writer) it is zp + 8 in 4 bits, eight rows per
// int32 along the output dimension: word [r / 8][g], bits 4 * (r % 8).
Result<std::vector<float>> pack_quantized_zeros(const ModuleTensors& m, const HfCtWeightArgs& args, int64_t rows,
                                                int64_t groups) {
  const SafetensorsEntry* zp = m.find("weight_zero_point");
  if (!zp) {
    if (!args.symmetric)
      return Status::error(fmt::format("missing tensor {} (config group {} is asymmetric, so its weights need zero "
                                       "points)",
                                       m.name("weight_zero_point"), describe(args)));
    return std::vector<float>();
  }
  std::vector<float> zeros(static_cast<size_t>(rows * groups));
  const int64_t packed_rows = (rows + 7) / 8;
  if (zp->dtype == "I32" && zp->shape == std::vector<int64_t>{packed_rows, groups} && packed_rows != rows) {
    const std::vector<uint32_t> words = read_words(*zp);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t g = 0; g < groups; ++g)
        zeros[r * groups + g] = static_cast<float>((words[(r / 8) * groups + g] >> (4 * (r % 8))) & 0xF);
  } else if (zp->shape == std::vector<int64_t>{rows, groups}) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> signed_zeros, read_integers(*zp, "zero points"));
    for (size_t i = 0; i < zeros.size(); ++i) {
      if (signed_zeros[i] < -8 || signed_zeros[i] > 7)
        return Status::error(fmt::format("tensor {} holds zero point {} (row {}, group {}), outside int4's [-8, 7]",
                                         zp->name, signed_zeros[i], i / groups, i % groups));
      zeros[i] = static_cast<float>(signed_zeros[i] + kI4ImplicitZero);
    }
  } else {
    return Status::error(fmt::format("tensor {} has shape {}; int4 zero points are ({}, {}) packed into int32 along "
                                     "the output rows, or ({}, {}) unpacked",
                                     zp->name, shape_text(zp->shape), packed_rows, groups, rows, groups));
  }
  if (args.symmetric) {
    for (size_t i = 0; i < zeros.size(); ++i)
      if (zeros[i] != static_cast<float>(kI4ImplicitZero))
        return Status::error(fmt::format("tensor {} holds a nonzero zero point {} (row {}, group {}), but config group "
                                         "{} is symmetric",
                                         zp->name, zeros[i] - kI4ImplicitZero, i / groups, i % groups, describe(args)));
    return std::vector<float>();
  }
  return zeros;
}

// pack_to_int32: codes offset to unsigned (int4 + 8, int8 + 128) and packed along the input
// dimension, element c of a row in word c / (32 / bits) at bits bits * (c % (32 / bits)).
Result<std::optional<Tensor>> decode_packed(const HfQuantization& q, const ModuleTensors& m, const SafetensorsEntry& packed,
                                            int64_t rows, int64_t cols, Storage& storage) {
  ANVIL_RETURN_IF_ERROR(check_format(q, m, "int32 weight_packed", "pack-quantized"));
  ANVIL_RETURN_IF_ERROR(expect_dtype(packed, {"I32"}, "packed int4 codes"));
  ANVIL_ASSIGN_OR_RETURN(const SafetensorsEntry* shape_entry, m.require("weight_shape", "the unpacked weight's shape"));
  ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> shape, read_integers(*shape_entry, "the unpacked weight's shape"));
  if (shape != std::vector<int64_t>{rows, cols})
    return Status::error(fmt::format("tensor {} says the weight is {}, but the model config makes {}.weight ({}, {})",
                                     shape_entry->name, shape_text(shape), m.module(), rows, cols));
  int bits = 0;
  if (packed.shape == std::vector<int64_t>{rows, (cols + 7) / 8}) bits = 4;
  else if (packed.shape == std::vector<int64_t>{rows, (cols + 3) / 4}) bits = 8;
  else
    return Status::error(fmt::format("tensor {} has shape {}; a ({}, {}) weight with eight int4 codes per int32 needs "
                                     "({}, {})",
                                     packed.name, shape_text(packed.shape), rows, cols, rows, (cols + 7) / 8));
  const std::vector<const HfCtWeightArgs*> candidates = groups_of(q, "int", bits);
  if (candidates.empty())
    return Status::error(fmt::format("tensor {} holds {}-bit codes (by its shape {}), but no config group declares "
                                     "{}-bit int weights (config groups: {})",
                                     packed.name, bits, shape_text(packed.shape), bits, describe_all(q)));

  ANVIL_ASSIGN_OR_RETURN(const SafetensorsEntry* scale, m.require("weight_scale", "the weight's scales"));
  const HfCtWeightArgs* args = nullptr;
  int64_t groups = 0;
  for (const HfCtWeightArgs* a : candidates) {
    const int64_t n = a->strategy == "channel" ? 1 : (cols % a->group_size == 0 ? cols / a->group_size : 0);
    if (n > 0 && scale->shape == std::vector<int64_t>{rows, n}) {
      args = a;
      groups = n;
      break;
    }
  }
  if (!args) {
    const HfCtWeightArgs& a = *candidates.front();
    if (candidates.size() == 1 && a.strategy == "group" && cols % a.group_size != 0)
      return Status::error(fmt::format("{}: group_size {} of config group {} does not divide its rows of {} columns",
                                       m.module(), a.group_size, describe(a), cols));
    std::string expected;
    for (const HfCtWeightArgs* c : candidates) {
      const int64_t n = c->strategy == "channel" ? 1 : cols / c->group_size;
      expected += fmt::format("{}({}, {}) for {}", expected.empty() ? "" : " or ", rows, n, describe(*c));
    }
    return Status::error(fmt::format("tensor {} has shape {}; it needs {}", scale->name, shape_text(scale->shape), expected));
  }
  ANVIL_ASSIGN_OR_RETURN(std::vector<float> scales, read_floats(*scale, "scales"));

  if (bits == 8) {  // W8A16 int8: bytes are code + 128, four per word
    if (args->strategy != "channel")
      return Status::error(fmt::format("{}: packed int8 weights must be per-channel ({})", m.module(), describe(*args)));
    ANVIL_RETURN_IF_ERROR(check_no_zero_points(m, rows));
    std::vector<int8_t> codes(static_cast<size_t>(rows * cols));
    const auto* bytes = reinterpret_cast<const uint8_t*>(packed.data);
    const int64_t row_bytes = packed.shape[1] * 4;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) codes[r * cols + c] = static_cast<int8_t>(bytes[r * row_bytes + c] ^ 0x80);
    const std::byte* data = reinterpret_cast<const std::byte*>(keep(std::move(codes), storage));
    ANVIL_ASSIGN_OR_RETURN(Tensor t, assemble_per_row(DType::I8, rows, cols, data, std::move(scales), m.module(), storage));
    return std::optional<Tensor>(std::move(t));
  }

  if (cols % 32 != 0)
    return Status::error(fmt::format("{}: rows of {} columns cannot be I4 (anvil's groups are 32, 64 or 128 columns)",
                                     m.module(), cols));
  I4Source source;
  source.rows = rows;
  source.cols = cols;
  // Eight codes per little-endian word, element c at bits 4 * (c % 8): byte c / 2, low nibble
  // first. That is anvil's I4 row layout byte for byte, so the codes stay in the file.
  source.codes = packed.data;
  source.groups = groups;
  source.scale = std::move(scales);
  ANVIL_ASSIGN_OR_RETURN(source.zero, pack_quantized_zeros(m, *args, rows, groups));
  const int64_t group_size = cols / groups;
  if (const SafetensorsEntry* g_idx = m.find("weight_g_idx")) {  // actorder "group"
    ANVIL_RETURN_IF_ERROR(expect_shape(*g_idx, {cols}, "one group index per input column"));
    ANVIL_ASSIGN_OR_RETURN(source.column_group, read_integers(*g_idx, "group index of each column"));
  } else {
    source.column_group.resize(static_cast<size_t>(cols));
    for (int64_t c = 0; c < cols; ++c) source.column_group[c] = c / group_size;
  }
  ANVIL_ASSIGN_OR_RETURN(Tensor t, assemble_i4(std::move(source), m.module(), storage));
  return std::optional<Tensor>(std::move(t));
}

}  // namespace

bool is_fp8_dynamic(const HfCtActivationArgs& a) {
  return a.present && a.type == "float" && a.num_bits == 8 && a.dynamic == "true" && a.strategy == "token";
}

Result<std::optional<Tensor>> decode_compressed_tensors(const HfQuantization& q, const ModuleTensors& m, int64_t rows,
                                                        int64_t cols, Storage& storage) {
  const SafetensorsEntry* weight = m.find("weight");
  const SafetensorsEntry* packed = m.find("weight_packed");
  if (weight && packed)
    return Status::error(fmt::format("{} has both {} and {}; a layer is stored one way", m.module(), weight->name,
                                     packed->name));
  if (packed) return decode_packed(q, m, *packed, rows, cols, storage);
  if (!weight)
    return Status::error(fmt::format("missing tensor {} (or {} for pack-quantized weights)", m.name("weight"),
                                     m.name("weight_packed")));
  if (is_float_dtype(weight->dtype)) return std::optional<Tensor>();  // a layer left unquantized ("ignore")
  if (weight->dtype == "F8_E4M3") return decode_naive(q, m, *weight, DType::F8_E4M3, rows, cols, storage);
  if (weight->dtype == "I8") return decode_naive(q, m, *weight, DType::I8, rows, cols, storage);
  return Status::error(fmt::format("tensor {} has dtype {}; compressed-tensors weights anvil reads are F8_E4M3, I8, "
                                   "F32/F16/BF16 (unquantized), or int32 weight_packed",
                                   weight->name, weight->dtype));
}

}  // namespace anvil::hf_quant
