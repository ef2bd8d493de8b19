// Quantized Hugging Face checkpoints: the quantization config, the helpers every layout decoder
// shares, and the dispatch from a module to its layout's decoder.
#include "formats/hf_quantized.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/json_error.h"
#include "core/mapped_file.h"
#include "formats/hf_quantized_layouts.h"
#include "quant/int4_codes.h"

namespace anvil {

// Packed codes are read as little-endian words straight from the file (compressed-tensors' I4
// packing is even used in place).
static_assert(std::endian::native == std::endian::little, "quantized checkpoint decoding assumes a little-endian host");

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(value.type_name()) + " " + text;
}

// Typed fields of one JSON object; messages say "WHERE: field 'PREFIX.key' ...".
class Fields {
 public:
  Fields(const json& object, std::string where, std::string prefix)
      : object_(object), where_(std::move(where)), prefix_(std::move(prefix)) {}

  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }
  Status wrong(const char* key, const std::string& expected, const json& value) const {
    return Status::error(fmt::format("{}: field '{}{}' must be {}, got {}", where_, prefix_, key, expected, describe(value)));
  }
  Status refuse(const std::string& message) const { return Status::error(where_ + ": " + message); }
  const std::string& where() const { return where_; }

  Result<std::optional<std::string>> string(const char* key) const {
    const json* v = find(key);
    if (!v) return std::optional<std::string>();
    if (!v->is_string()) return wrong(key, "a string", *v);
    return std::optional<std::string>(v->get<std::string>());
  }
  Result<std::optional<int64_t>> integer(const char* key) const {
    const json* v = find(key);
    if (!v) return std::optional<int64_t>();
    if (!v->is_number_integer() || (v->is_number_unsigned() && v->get<uint64_t>() > INT32_MAX) ||
        (!v->is_number_unsigned() && (v->get<int64_t>() < INT32_MIN || v->get<int64_t>() > INT32_MAX)))
      return wrong(key, "an integer", *v);
    return std::optional<int64_t>(v->get<int64_t>());
  }
  Result<bool> boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean()) return wrong(key, "true or false", *v);
    return v->get<bool>();
  }

 private:
  const json& object_;
  std::string where_;
  std::string prefix_;
};

// Config files are a few levels deep; refusing deep nesting keeps dump() (used in messages) from
// recursing through a hostile file.
constexpr int kMaxJsonDepth = 64;
struct JsonTooDeep {};

Result<json> parse_json_text(const std::string& text, const std::string& path) {
  try {
    auto depth_guard = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw JsonTooDeep{};
      return true;
    };
    return json::parse(text, depth_guard);
  } catch (const json::exception& e) {
    return Status::error(path + ": not valid JSON (" + json_error_text(e) + ")");
  } catch (const JsonTooDeep&) {
    return Status::error(path + ": JSON is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
}

// A config group's input_activations as written; whether anvil runs them is decided per layer
// (hf_quantized_ct.cpp) so that the message can name one.
Result<HfCtActivationArgs> parse_ct_activations(const Fields& group, const std::string& name) {
  HfCtActivationArgs args;
  const json* acts = group.find("input_activations");
  if (!acts) return args;
  if (!acts->is_object()) return group.wrong("input_activations", "an object or null", *acts);
  Fields a(*acts, group.where(), "config_groups." + name + ".input_activations.");
  args.present = true;
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> bits, a.integer("num_bits"));
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> type, a.string("type"));
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> strategy, a.string("strategy"));
  args.num_bits = static_cast<int>(bits.value_or(8));
  args.type = lower(type.value_or("int"));
  args.strategy = lower(strategy.value_or("tensor"));
  // A boolean, or a string for newer modes (NVFP4's "local").
  if (const json* dynamic = a.find("dynamic")) {
    if (dynamic->is_boolean()) args.dynamic = dynamic->get<bool>() ? "true" : "false";
    else if (dynamic->is_string()) args.dynamic = lower(dynamic->get<std::string>());
    else return a.wrong("dynamic", "true, false or a string", *dynamic);
  }
  return args;
}

// One compressed-tensors config group's weights, refused unless anvil has a type for them.
Result<std::optional<HfCtWeightArgs>> parse_ct_weights(const Fields& group, const std::string& name) {
  const json* weights = group.find("weights");
  if (!weights) return std::optional<HfCtWeightArgs>();  // activations-only group: nothing to load
  if (!weights->is_object()) return group.wrong("weights", "an object", *weights);
  const std::string prefix = "config_groups." + name + ".weights.";
  Fields w(*weights, group.where(), prefix);
  HfCtWeightArgs args;
  args.group_name = name;
  auto bad = [&](const std::string& what) { return group.refuse(fmt::format("config group '{}': {}", name, what)); };

  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> bits, w.integer("num_bits"));
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> type, w.string("type"));
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> strategy, w.string("strategy"));
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> group_size, w.integer("group_size"));
  ANVIL_ASSIGN_OR_RETURN(args.symmetric, w.boolean("symmetric", true));
  args.num_bits = static_cast<int>(bits.value_or(8));
  args.type = lower(type.value_or("int"));
  args.strategy = lower(strategy.value_or("tensor"));
  args.group_size = group_size.value_or(0);

  if (w.find("block_structure") || args.strategy == "block")
    return bad("block-wise scales (strategy 'block') are not supported: anvil's F8_E4M3 and I8 weights take one "
               "scale per row, I4 one per group of 32/64/128 columns");
  if (args.strategy == "tensor_group" || (args.type == "float" && args.num_bits == 4))
    return bad("FP4 (NVFP4/MXFP4, strategy 'tensor_group') is not supported");
  if (args.type != "int" && args.type != "float")
    return bad(fmt::format("weights type '{}' is not supported (int or float)", args.type));
  if (args.strategy != "tensor" && args.strategy != "channel" && args.strategy != "group")
    return bad(fmt::format("weights strategy '{}' is not supported (tensor, channel or group)", args.strategy));
  if (args.type == "float") {
    if (args.num_bits != 8) return bad(fmt::format("{}-bit float weights are not supported (FP8 E4M3 only)", args.num_bits));
    if (args.strategy == "group") return bad("group-wise FP8 scales are not supported (per-tensor or per-channel)");
  } else {
    if (args.num_bits != 4 && args.num_bits != 8)
      return bad(fmt::format("{}-bit int weights are not supported (int4 or int8)", args.num_bits));
    if (args.num_bits == 8 && !args.symmetric)
      return bad("asymmetric int8 weights (symmetric: false) are not supported: anvil's I8 weights have no zero point");
    if (args.num_bits == 8 && args.strategy == "group")
      return bad("group-wise int8 scales are not supported: anvil's I8 weights take one scale per row");
    if (args.num_bits == 4 && args.strategy == "tensor")
      return bad("per-tensor int4 scales are not supported (group or channel)");
  }
  if (args.strategy == "group" && args.group_size <= 0)
    return bad(fmt::format("strategy 'group' needs a positive group_size, got {}", args.group_size));
  ANVIL_ASSIGN_OR_RETURN(args.input_activations, parse_ct_activations(group, name));
  return std::optional<HfCtWeightArgs>(args);
}

Status parse_compressed_tensors(const Fields& qc, HfQuantization& q) {
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> format, qc.string("format"));
  if (!format) return qc.refuse("quantization_config has no 'format' (compressed-tensors names its layout there)");
  q.format = lower(*format);
  if (q.format == "dense") {  // fake-quantized float weights: nothing to decode
    q.method = HfQuantMethod::None;
    return Status::ok();
  }
  static const char* const kFormats[] = {"float-quantized", "int-quantized", "naive-quantized", "pack-quantized",
                                         "mixed-precision"};
  if (std::find(std::begin(kFormats), std::end(kFormats), q.format) == std::end(kFormats))
    return qc.refuse(fmt::format("compressed-tensors format '{}' is not supported; anvil reads float-quantized, "
                                 "int-quantized, naive-quantized and pack-quantized",
                                 q.format));
  if (const json* sparsity = qc.find("sparsity_config"); sparsity && sparsity->is_object() && !sparsity->empty()) {
    Fields s(*sparsity, qc.where(), "sparsity_config.");
    ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> sparse_format, s.string("format"));
    if (sparse_format && lower(*sparse_format) != "dense")
      return qc.refuse(fmt::format("sparse checkpoints (sparsity_config.format '{}') are not supported", *sparse_format));
  }
  const json* groups = qc.find("config_groups");
  if (!groups || !groups->is_object() || groups->empty())
    return qc.refuse("quantization_config has no config_groups (the quantization scheme of the weights)");
  for (const auto& [name, group] : groups->items()) {
    if (!group.is_object()) return qc.wrong("config_groups", "an object of objects", *groups);
    ANVIL_ASSIGN_OR_RETURN(std::optional<HfCtWeightArgs> args, parse_ct_weights(Fields(group, qc.where(), "config_groups." + name + "."), name));
    if (args) q.groups.push_back(*args);
  }
  if (q.groups.empty()) return qc.refuse("no config group quantizes weights");
  return Status::ok();
}

Status parse_gptq(const Fields& qc, HfQuantization& q) {
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> bits, qc.integer("bits"));
  if (!bits) return qc.refuse("quantization_config has no 'bits'");
  if (*bits != 4) return qc.refuse(fmt::format("GPTQ with bits {} is not supported; anvil reads 4-bit GPTQ only", *bits));
  q.bits = 4;
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> group_size, qc.integer("group_size"));
  q.group_size = group_size.value_or(-1);
  if (q.group_size != -1 && q.group_size <= 0)
    return qc.refuse(fmt::format("group_size {} must be positive or -1 (one group per row)", q.group_size));
  ANVIL_ASSIGN_OR_RETURN(q.desc_act, qc.boolean("desc_act", false));
  ANVIL_ASSIGN_OR_RETURN(q.symmetric, qc.boolean("sym", true));
  ANVIL_ASSIGN_OR_RETURN(bool marlin, qc.boolean("is_marlin_format", false));
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> format, qc.string("checkpoint_format"));
  const std::string checkpoint_format = marlin ? "marlin" : lower(format.value_or("gptq"));
  if (checkpoint_format == "gptq") {
    q.gptq_zero_minus_one = true;
  } else if (checkpoint_format == "gptq_v2") {
    q.gptq_zero_minus_one = false;
  } else {
    return qc.refuse(fmt::format("GPTQ checkpoint_format '{}' is not supported (gptq or gptq_v2; Marlin-repacked "
                                 "weights are not)",
                                 checkpoint_format));
  }
  return Status::ok();
}

Status parse_awq(const Fields& qc, HfQuantization& q) {
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> bits, qc.integer("bits"));
  if (!bits) {
    ANVIL_ASSIGN_OR_RETURN(bits, qc.integer("w_bit"));  // AutoAWQ's quant_config.json spelling
  }
  if (!bits) return qc.refuse("quantization_config has no 'bits'");
  if (*bits != 4) return qc.refuse(fmt::format("AWQ with bits {} is not supported; anvil reads 4-bit AWQ only", *bits));
  q.bits = 4;
  ANVIL_ASSIGN_OR_RETURN(std::optional<int64_t> group_size, qc.integer("group_size"));
  if (!group_size) {
    ANVIL_ASSIGN_OR_RETURN(group_size, qc.integer("q_group_size"));
  }
  q.group_size = group_size.value_or(128);
  if (q.group_size != -1 && q.group_size <= 0)
    return qc.refuse(fmt::format("group_size {} must be positive or -1 (one group per row)", q.group_size));
  ANVIL_ASSIGN_OR_RETURN(bool zero_point, qc.boolean("zero_point", true));
  q.symmetric = !zero_point;
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> version, qc.string("version"));
  const std::string v = lower(version.value_or("gemm"));
  if (v != "gemm")
    return qc.refuse(fmt::format("AWQ version '{}' is not supported; anvil reads the GEMM layout (version \"gemm\")",
                                 *version));
  return Status::ok();
}

}  // namespace

Result<HfQuantization> read_hf_quantization(const std::string& dir, const std::string& config_text) {
  const std::string config_path = (fs::path(dir) / "config.json").string();
  ANVIL_ASSIGN_OR_RETURN(json root, parse_json_text(config_text, config_path));
  HfQuantization q;
  json qc;
  std::string default_method;
  if (root.is_object() && root.contains("quantization_config") && !root["quantization_config"].is_null()) {
    qc = root["quantization_config"];
    q.where = config_path + ": quantization_config";
  } else {
    // Older AutoGPTQ and AutoAWQ uploads keep the config in a file of their own.
    std::error_code ec;
    for (const auto& [file, method] : {std::pair<const char*, const char*>{"quantize_config.json", "gptq"},
                                       std::pair<const char*, const char*>{"quant_config.json", "awq"}}) {
      const std::string path = (fs::path(dir) / file).string();
      if (!fs::is_regular_file(path, ec)) continue;
      ANVIL_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
      ANVIL_ASSIGN_OR_RETURN(qc, parse_json_text(text, path));
      q.where = path;
      default_method = method;
      break;
    }
    if (q.where.empty()) return q;
  }
  if (!qc.is_object()) return Status::error(q.where + " is not a JSON object");
  Fields fields(qc, q.where, "");
  ANVIL_ASSIGN_OR_RETURN(std::optional<std::string> method, fields.string("quant_method"));
  // AutoAWQ's quant_config.json says version "GEMM" and no quant_method.
  const std::string m = lower(method.value_or(default_method));
  if (m == "compressed-tensors") {
    q.method = HfQuantMethod::CompressedTensors;
    ANVIL_RETURN_IF_ERROR(parse_compressed_tensors(fields, q));
  } else if (m == "gptq") {
    q.method = HfQuantMethod::Gptq;
    ANVIL_RETURN_IF_ERROR(parse_gptq(fields, q));
  } else if (m == "awq") {
    q.method = HfQuantMethod::Awq;
    ANVIL_RETURN_IF_ERROR(parse_awq(fields, q));
  } else if (m.empty()) {
    return fields.refuse("quantization_config has no 'quant_method'");
  } else {
    return fields.refuse(fmt::format("quant_method '{}' is not supported; anvil reads compressed-tensors (FP8, INT8 "
                                     "W8A8, INT4 pack-quantized), gptq (4-bit) and awq (4-bit GEMM)",
                                     m));
  }
  return q;
}

bool is_hf_quantized_tensor_name(const std::string& name) {
  static const char* const kSuffixes[] = {".qweight", ".qzeros", ".weight_packed", ".weight_scale",
                                          ".weight_zero_point", ".weight_shape", ".weight_g_idx"};
  for (const char* suffix : kSuffixes) {
    const size_t n = std::strlen(suffix);
    if (name.size() > n && name.compare(name.size() - n, n, suffix) == 0) return true;
  }
  return false;
}

QuantizationInfo hf_quantization_info(const HfQuantization& q) {
  QuantizationInfo info;
  auto granularity = [](int64_t group) { return group > 0 ? std::string("group") : std::string("per-channel"); };
  switch (q.method) {
    case HfQuantMethod::None: break;
    case HfQuantMethod::CompressedTensors: {
      const HfCtWeightArgs& a = q.groups.front();
      info.scheme = a.type == "float" ? "fp8" : a.num_bits == 8 ? "w8a8" : "w4a16";
      // (Other activation arguments on FP8 weights are refused when the weights are decoded.)
      if (a.type == "float" && hf_quant::is_fp8_dynamic(a.input_activations)) {
        info.scheme = "fp8-dynamic";
        info.activations = ActivationQuant::DynamicPerTokenFp8;
      }
      info.granularity = a.strategy == "tensor" ? "per-tensor" : a.strategy == "channel" ? "per-channel" : "group";
      info.group_size = a.strategy == "group" ? a.group_size : 0;
      info.symmetric = a.symmetric;
      break;
    }
    case HfQuantMethod::Gptq:
    case HfQuantMethod::Awq:
      info.scheme = q.method == HfQuantMethod::Gptq ? "w4a16-gptq" : "w4a16-awq";
      info.granularity = granularity(q.group_size);
      info.group_size = std::max<int64_t>(q.group_size, 0);
      info.symmetric = q.symmetric;
      info.act_order = q.method == HfQuantMethod::Gptq && q.desc_act;
      break;
  }
  return info;
}

Result<std::optional<Tensor>> decode_hf_quantized_weight(const HfQuantization& quantization, const std::string& module,
                                                         int64_t rows, int64_t cols, const HfTensorFinder& find,
                                                         std::vector<std::shared_ptr<const void>>& storage) {
  const hf_quant::ModuleTensors tensors(module, find);
  switch (quantization.method) {
    case HfQuantMethod::None: return std::optional<Tensor>();
    case HfQuantMethod::CompressedTensors: return hf_quant::decode_compressed_tensors(quantization, tensors, rows, cols, storage);
    case HfQuantMethod::Gptq: return hf_quant::decode_gptq(quantization, tensors, rows, cols, storage);
    case HfQuantMethod::Awq: return hf_quant::decode_awq(quantization, tensors, rows, cols, storage);
  }
  return std::optional<Tensor>();
}

// ---------------------------------------------------------------------------------------------
// Helpers shared by the layout decoders
// ---------------------------------------------------------------------------------------------

namespace hf_quant {

std::string shape_text(const std::vector<int64_t>& shape) {
  Tensor t;
  t.shape = shape;
  return t.shape_string();
}

Result<const SafetensorsEntry*> ModuleTensors::require(const std::string& suffix, const std::string& role) const {
  const SafetensorsEntry* entry = find(suffix);
  if (!entry) return Status::error(fmt::format("missing tensor {} ({})", name(suffix), role));
  return entry;
}

bool is_float_dtype(const std::string& dtype) { return dtype == "F32" || dtype == "F16" || dtype == "BF16"; }

Status expect_dtype(const SafetensorsEntry& entry, std::initializer_list<const char*> allowed, const std::string& role) {
  std::string names;
  for (const char* a : allowed) {
    if (entry.dtype == a) return Status::ok();
    names += names.empty() ? a : std::string(" or ") + a;
  }
  return Status::error(fmt::format("tensor {} ({}) has dtype {}; expected {}", entry.name, role, entry.dtype, names));
}

Status expect_shape(const SafetensorsEntry& entry, const std::vector<int64_t>& shape, const std::string& meaning) {
  if (entry.shape == shape) return Status::ok();
  return Status::error(fmt::format("tensor {} has shape {}; {} needs {}", entry.name, shape_text(entry.shape), meaning,
                                   shape_text(shape)));
}

Result<std::vector<float>> read_floats(const SafetensorsEntry& entry, const std::string& role) {
  ANVIL_RETURN_IF_ERROR(expect_dtype(entry, {"F32", "F16", "BF16"}, role));
  const DType dtype = *safetensors_dtype_to_anvil(entry.dtype);
  std::vector<float> out(static_cast<size_t>(entry.numel()));
  dtype_info(dtype).to_float(entry.data, out.data(), entry.numel());
  return out;
}

Result<std::vector<int64_t>> read_integers(const SafetensorsEntry& entry, const std::string& role) {
  const int64_t n = entry.numel();
  std::vector<int64_t> out(static_cast<size_t>(n));
  auto copy = [&](auto type_tag) {
    using T = decltype(type_tag);
    for (int64_t i = 0; i < n; ++i) {
      T v;
      std::memcpy(&v, entry.data + i * sizeof(T), sizeof(T));
      out[i] = static_cast<int64_t>(v);
    }
  };
  if (entry.dtype == "I8") copy(int8_t{});
  else if (entry.dtype == "U8") copy(uint8_t{});
  else if (entry.dtype == "I16") copy(int16_t{});
  else if (entry.dtype == "I32") copy(int32_t{});
  else if (entry.dtype == "I64") copy(int64_t{});
  else if (is_float_dtype(entry.dtype)) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<float> values, read_floats(entry, role));
    for (int64_t i = 0; i < n; ++i) {
      if (values[i] != std::nearbyint(values[i]) || std::fabs(values[i]) > 1e9f)
        return Status::error(fmt::format("tensor {} ({}) holds {} at index {}, not an integer", entry.name, role,
                                         values[i], i));
      out[i] = static_cast<int64_t>(values[i]);
    }
  } else {
    return Status::error(fmt::format("tensor {} ({}) has dtype {}; expected an integer type", entry.name, role,
                                     entry.dtype));
  }
  return out;
}

std::vector<uint32_t> read_words(const SafetensorsEntry& entry) {
  std::vector<uint32_t> words(entry.nbytes / 4);
  std::memcpy(words.data(), entry.data, words.size() * 4);
  return words;
}

namespace {

// The largest of anvil's I4 groups (128, 64, 32 consecutive columns) whose columns all lie in one
// source group; 0 when none.
int64_t uniform_group(const std::vector<int64_t>& column_group) {
  const int64_t cols = static_cast<int64_t>(column_group.size());
  for (int64_t candidate : {128, 64, 32}) {
    if (cols % candidate != 0) continue;
    bool uniform = true;
    for (int64_t c = 0; c < cols && uniform; ++c) uniform = column_group[c] == column_group[c - c % candidate];
    if (uniform) return candidate;
  }
  return 0;
}

// The columns sorted by source group (stable: ascending within a group).
std::vector<int32_t> columns_by_group(const std::vector<int64_t>& column_group, int64_t groups) {
  const int64_t cols = static_cast<int64_t>(column_group.size());
  std::vector<int64_t> start(static_cast<size_t>(groups) + 1, 0);  // counting sort
  for (int64_t g : column_group) ++start[g + 1];
  for (int64_t g = 0; g < groups; ++g) start[g + 1] += start[g];
  std::vector<int32_t> order(static_cast<size_t>(cols));
  for (int64_t c = 0; c < cols; ++c) order[start[column_group[c]]++] = static_cast<int32_t>(c);
  return order;
}

// Row r's codes with stored column j taken from input column order[j], in weight memory.
std::shared_ptr<std::byte[]> reorder_i4_columns(const std::byte* codes, int64_t rows, int64_t cols,
                                                const std::vector<int32_t>& order) {
  const int64_t row_bytes = cols / 2;
  std::shared_ptr<std::byte[]> out = allocate_weight_memory(static_cast<size_t>(rows * row_bytes));
  for (int64_t r = 0; r < rows; ++r) {
    const uint8_t* in = reinterpret_cast<const uint8_t*>(codes) + r * row_bytes;
    uint8_t* dst = reinterpret_cast<uint8_t*>(out.get()) + r * row_bytes;
    for (int64_t j = 0; j < cols; j += 2)
      dst[j / 2] = static_cast<uint8_t>(i4_code(in, order[j]) | (i4_code(in, order[j + 1]) << 4));
  }
  return out;
}

}  // namespace

Result<Tensor> assemble_i4(I4Source s, const std::string& module, Storage& storage) {
  const std::string weight_name = module + ".weight";
  if (s.groups <= 0 || static_cast<int64_t>(s.column_group.size()) != s.cols ||
      static_cast<int64_t>(s.scale.size()) != s.rows * s.groups)
    return Status::error(fmt::format("{}: internal: inconsistent I4 source ({} groups)", module, s.groups));
  for (int64_t c = 0; c < s.cols; ++c)
    if (s.column_group[c] < 0 || s.column_group[c] >= s.groups)
      return Status::error(fmt::format("{}: column {} belongs to group {}, but there are {} groups (g_idx out of range)",
                                       module, c, s.column_group[c], s.groups));
  if (s.cols % 32 != 0)
    return Status::error(fmt::format("{}: rows of {} columns cannot be I4: anvil's I4 groups are 32, 64 or 128 columns",
                                     module, s.cols));
  // Groups of consecutive columns keep the source's column order; act-order groups (g_idx in a
  // permuted order) get their columns sorted by group, so that each is a run of stored columns.
  std::vector<int32_t> order;
  std::vector<int64_t> stored_group = s.column_group;
  int64_t group = uniform_group(stored_group);
  if (group == 0) {
    order = columns_by_group(s.column_group, s.groups);
    for (int64_t j = 0; j < s.cols; ++j) stored_group[j] = s.column_group[order[j]];
    group = uniform_group(stored_group);
  }
  if (group == 0) {
    // Plain consecutive groups of the wrong size, or some group holding a number of columns that
    // is not a multiple of 32 (name the first).
    if (s.cols % s.groups == 0) {
      const int64_t source_group = s.cols / s.groups;
      bool consecutive = true;
      for (int64_t c = 0; c < s.cols && consecutive; ++c) consecutive = s.column_group[c] == c / source_group;
      if (consecutive)
        return Status::error(fmt::format("{}: group size {} over rows of {} columns is not supported: anvil's I4 "
                                         "scales cover groups of 32, 64 or 128 columns (a larger group, or a whole "
                                         "row, must be a multiple of one of them)",
                                         module, source_group, s.cols));
    }
    int64_t first = 0;
    while (first < s.cols && stored_group[first] == stored_group[first - first % 32]) ++first;
    const int64_t g = stored_group[first - first % 32];
    const int64_t size = std::count(s.column_group.begin(), s.column_group.end(), g);
    return Status::error(fmt::format("{}: act-order (g_idx) group {} holds {} columns; anvil's I4 scales cover groups "
                                     "of 32, 64 or 128 columns, so each group must hold a multiple of 32",
                                     module, g, size));
  }
  const int64_t groups = s.cols / group;
  std::vector<float> scale(static_cast<size_t>(s.rows * groups));
  std::vector<float> zero;
  bool all_eight = true;
  for (float z : s.zero) all_eight = all_eight && z == 8.0f;
  if (!s.zero.empty() && !all_eight) zero.resize(scale.size());
  for (int64_t r = 0; r < s.rows; ++r)
    for (int64_t g = 0; g < groups; ++g) {
      const int64_t source = r * s.groups + stored_group[g * group];
      scale[r * groups + g] = s.scale[source];
      if (!zero.empty()) zero[r * groups + g] = s.zero[source];
    }
  Tensor t;
  t.name = weight_name;
  t.dtype = DType::I4;
  t.shape = {s.rows, s.cols};
  if (!order.empty()) {
    std::shared_ptr<std::byte[]> reordered = reorder_i4_columns(s.repacked ? s.repacked.get() : s.codes, s.rows, s.cols, order);
    t.data = reordered.get();
    storage.push_back(std::shared_ptr<const void>(reordered, reordered.get()));
    t.quant.input_order = keep(std::move(order), storage);
  } else if (s.repacked) {
    t.data = s.repacked.get();
    storage.push_back(std::shared_ptr<const void>(s.repacked, s.repacked.get()));
  } else {
    t.data = s.codes;
  }
  t.nbytes = dtype_bytes(DType::I4, s.rows * s.cols);
  t.quant.group = group;
  t.quant.scale = keep(std::move(scale), storage);
  if (!zero.empty()) t.quant.zero = keep(std::move(zero), storage);
  ANVIL_RETURN_IF_ERROR(check_quant_scales(t));
  return t;
}

Result<Tensor> assemble_per_row(DType dtype, int64_t rows, int64_t cols, const std::byte* codes,
                                std::vector<float> row_scales, const std::string& module, Storage& storage) {
  Tensor t;
  t.name = module + ".weight";
  t.dtype = dtype;
  t.shape = {rows, cols};
  t.data = codes;
  t.nbytes = dtype_bytes(dtype, rows * cols);
  t.quant.group = cols;
  t.quant.scale = keep(std::move(row_scales), storage);
  ANVIL_RETURN_IF_ERROR(check_quant_scales(t));
  return t;
}

}  // namespace hf_quant
}  // namespace anvil
