// Hugging Face checkpoints: config.json parsing, safetensors shards to canonical tensors, and back.
#include "formats/hf_checkpoint.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/json_error.h"
#include "core/mapped_file.h"
#include "formats/hf_quantized.h"
#include "formats/rope_permute.h"
#include "formats/safetensors.h"
#include "model/tensor_layout.h"
#include "tokenizer/hf_tokenizer.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

constexpr int64_t kMaxDimension = INT32_MAX;  // keeps products of two fields far from overflow

std::string join_path(const std::string& dir, const std::string& file) { return (fs::path(dir) / file).string(); }


// HF's JSON files are a few levels deep; refusing deep nesting keeps dump() (used in messages)
// from recursing into a hostile file's million nested arrays.
constexpr int kMaxJsonDepth = 64;
struct JsonTooDeep {};

Result<json> parse_json(const std::string& text, const std::string& path) {
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

std::string describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return std::string(value.type_name()) + " " + text;
}

// Typed access to the fields of one JSON object, with messages naming the file and the field.
class ConfigFields {
 public:
  ConfigFields(const json& object, std::string path, std::string prefix = "")
      : object_(object), path_(std::move(path)), prefix_(std::move(prefix)) {}

  // Null counts as absent: HF writes "sliding_window": null, "rope_scaling": null.
  const json* find(const char* key) const {
    auto it = object_.find(key);
    return it == object_.end() || it->is_null() ? nullptr : &*it;
  }

  Status missing(const char* key) const { return Status::error(path_ + ": missing field '" + prefix_ + key + "'"); }
  Status wrong(const char* key, const char* expected, const json& value) const {
    return Status::error(path_ + ": field '" + prefix_ + key + "' must be " + expected + ", got " + describe(value));
  }

  // Integers in [1, kMaxDimension]. `fallback` is used when the field is absent, if given.
  Result<int64_t> dimension(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* value = find(key);
    if (!value) {
      if (fallback) return *fallback;
      return missing(key);
    }
    if (!value->is_number_integer()) return wrong(key, "an integer", *value);
    int64_t number = -1;  // out-of-range unsigned values stay -1 and fail below
    if (!value->is_number_unsigned()) {
      number = value->get<int64_t>();
    } else if (value->get<uint64_t>() <= static_cast<uint64_t>(kMaxDimension)) {
      number = static_cast<int64_t>(value->get<uint64_t>());
    }
    if (number < 1 || number > kMaxDimension) return wrong(key, "a positive integer below 2^31", *value);
    return number;
  }

  Result<double> positive_number(const char* key, std::optional<double> fallback = std::nullopt) const {
    const json* value = find(key);
    if (!value) {
      if (fallback) return *fallback;
      return missing(key);
    }
    if (!value->is_number()) return wrong(key, "a number", *value);
    const double number = value->get<double>();
    if (!(number > 0.0) || number > 1e30) return wrong(key, "a positive number", *value);
    return number;
  }

  Result<bool> boolean(const char* key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    if (!value->is_boolean()) return wrong(key, "true or false", *value);
    return value->get<bool>();
  }

  Result<std::string> string(const char* key) const {
    const json* value = find(key);
    if (!value) return missing(key);
    if (!value->is_string()) return wrong(key, "a string", *value);
    return value->get<std::string>();
  }

  // A token id: an int32, or a list of them (the first is used); absent gives -1.
  Result<int32_t> token_id(const char* key) const {
    const json* value = find(key);
    if (!value) return -1;
    const json* id = value;
    if (value->is_array()) {
      if (value->empty()) return -1;
      id = &(*value)[0];
    }
    const bool valid = id->is_number_integer() &&
                       (id->is_number_unsigned() ? id->get<uint64_t>() <= INT32_MAX : id->get<int64_t>() >= -1);
    if (!valid) return wrong(key, "a token id (or a list of them)", *value);
    return static_cast<int32_t>(id->get<int64_t>());
  }

 private:
  const json& object_;
  std::string path_;
  std::string prefix_;
};

Status parse_rope_scaling(const ConfigFields& fields, const std::string& path, RopeScaling* scaling) {
  const json* value = fields.find("rope_scaling");
  if (!value) return Status::ok();
  if (!value->is_object()) return fields.wrong("rope_scaling", "an object or null", *value);
  ConfigFields rope(*value, path, "rope_scaling.");
  // transformers renamed "type" to "rope_type"; files carry either.
  std::string type;
  if (rope.find("rope_type")) {
    ANVIL_ASSIGN_OR_RETURN(type, rope.string("rope_type"));
  } else if (rope.find("type")) {
    ANVIL_ASSIGN_OR_RETURN(type, rope.string("type"));
  } else {
    return Status::error(path + ": rope_scaling has neither 'rope_type' nor 'type'");
  }
  if (type == "default") return Status::ok();
  if (type == "linear") {
    scaling->type = RopeScalingType::Linear;
    ANVIL_ASSIGN_OR_RETURN(double factor, rope.positive_number("factor"));
    scaling->factor = static_cast<float>(factor);
    return Status::ok();
  }
  if (type == "llama3") {
    scaling->type = RopeScalingType::Llama3;
    ANVIL_ASSIGN_OR_RETURN(double factor, rope.positive_number("factor"));
    ANVIL_ASSIGN_OR_RETURN(double low, rope.positive_number("low_freq_factor"));
    ANVIL_ASSIGN_OR_RETURN(double high, rope.positive_number("high_freq_factor"));
    ANVIL_ASSIGN_OR_RETURN(int64_t original, rope.dimension("original_max_position_embeddings"));
    // Llama 3.1's smoothing interpolates over (low, high); equal factors would divide by zero.
    if (!(high > low))
      return Status::error(path + ": rope_scaling.high_freq_factor must be larger than low_freq_factor");
    scaling->factor = static_cast<float>(factor);
    scaling->low_freq_factor = static_cast<float>(low);
    scaling->high_freq_factor = static_cast<float>(high);
    scaling->original_context = original;
    return Status::ok();
  }
  return Status::error(path + ": rope_scaling type '" + type + "' is not supported; anvil supports: linear, llama3");
}

// One tensor the config requires, under both names, with its expected shape.
struct TensorSpec {
  std::string canonical;
  std::string hf;
  std::vector<int64_t> shape;
};

std::vector<TensorSpec> required_tensor_specs(const ModelConfig& c) {
  std::vector<TensorSpec> specs;
  for (RequiredTensor& t : required_tensors(c)) {
    const std::string hf = hf_tensor_name(t.name);
    specs.push_back({std::move(t.name), hf, std::move(t.shape)});
  }
  return specs;
}

// Per-layer suffixes: HF ("model.layers.N." + first) and canonical ("blk.N." + second).
const std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
const std::pair<const char*, const char*> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// Splits "PREFIX<digits>.rest" into the layer number and "rest".
bool split_layer_name(const std::string& name, const std::string& prefix, std::string* layer, std::string* rest) {
  if (name.rfind(prefix, 0) != 0) return false;
  size_t pos = prefix.size();
  size_t digits_end = pos;
  while (digits_end < name.size() && name[digits_end] >= '0' && name[digits_end] <= '9') ++digits_end;
  if (digits_end == pos || digits_end - pos > 9 || digits_end >= name.size() || name[digits_end] != '.') return false;
  *layer = name.substr(pos, digits_end - pos);
  *rest = name.substr(digits_end + 1);
  return true;
}

// Biases the canonical layout has no place for: ignoring them would silently change the model.
bool is_unsupported_bias(const std::string& hf_name) {
  static const char* const kSuffixes[] = {"self_attn.o_proj.bias", "mlp.gate_proj.bias", "mlp.up_proj.bias",
                                          "mlp.down_proj.bias"};
  for (const char* suffix : kSuffixes) {
    const std::string s = suffix;
    if (hf_name.size() >= s.size() && hf_name.compare(hf_name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

std::string directory_base_name(const std::string& dir) {
  std::error_code ec;
  fs::path path = fs::absolute(fs::path(dir), ec);
  if (ec) path = fs::path(dir);
  path = path.lexically_normal();
  if (!path.has_filename()) path = path.parent_path();
  std::string name = path.filename().string();
  return name.empty() ? dir : name;
}

// The tensors of a directory by HF name, each with the file that holds it.
struct WeightIndex {
  std::map<std::string, std::pair<const SafetensorsFile*, const SafetensorsEntry*>> tensors;
  std::vector<std::shared_ptr<const SafetensorsFile>> files;
};

Result<WeightIndex> index_single_file(const std::string& path) {
  WeightIndex index;
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file, SafetensorsFile::open(path));
  for (const SafetensorsEntry& entry : file->entries()) index.tensors[entry.name] = {file.get(), &entry};
  index.files.push_back(std::move(file));
  return index;
}

Result<WeightIndex> index_sharded(const std::string& dir, const std::string& index_path) {
  ANVIL_ASSIGN_OR_RETURN(std::string text, read_text_file(index_path));
  ANVIL_ASSIGN_OR_RETURN(json root, parse_json(text, index_path));
  auto map_it = root.is_object() ? root.find("weight_map") : root.end();
  if (map_it == root.end() || !map_it->is_object())
    return Status::error(index_path + ": missing object 'weight_map'");

  WeightIndex index;
  std::map<std::string, const SafetensorsFile*> shards;
  for (const auto& [name, shard] : map_it->items()) {
    if (!shard.is_string())
      return Status::error(index_path + ": weight_map entry for " + name + " is not a file name");
    const std::string shard_name = shard.get<std::string>();
    // Shards live beside the index; anything else (paths, "..") is refused rather than followed.
    if (shard_name.empty() || shard_name.find('/') != std::string::npos ||
        shard_name.find('\\') != std::string::npos || shard_name == "." || shard_name == "..")
      return Status::error(index_path + ": weight_map names shard '" + shard_name + "', which is not a plain file name");
    auto it = shards.find(shard_name);
    if (it == shards.end()) {
      ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<const SafetensorsFile> file,
                             SafetensorsFile::open(join_path(dir, shard_name)));
      it = shards.emplace(shard_name, file.get()).first;
      index.files.push_back(std::move(file));
    }
    const SafetensorsEntry* entry = it->second->find(name);
    if (!entry)
      return Status::error(it->second->path() + ": no tensor " + name + ", which " +
                           fs::path(index_path).filename().string() + " places in this shard");
    index.tensors[name] = {it->second, entry};
  }
  return index;
}

Result<WeightIndex> index_weights(const std::string& dir) {
  std::error_code ec;
  const std::string single = join_path(dir, "model.safetensors");
  const std::string sharded = join_path(dir, "model.safetensors.index.json");
  if (fs::exists(single, ec)) return index_single_file(single);
  if (fs::exists(sharded, ec)) return index_sharded(dir, sharded);
  if (fs::exists(join_path(dir, "pytorch_model.bin"), ec) || fs::exists(join_path(dir, "pytorch_model.bin.index.json"), ec))
    return Status::error(dir + ": has only pytorch_model.bin weights; anvil reads safetensors (model.safetensors)");
  return Status::error(dir + ": no model.safetensors or model.safetensors.index.json");
}

// tokenizer_config.json's chat_template is a string, or a list of {"name", "template"}.
Result<std::string> read_chat_template(const std::string& dir) {
  const std::string path = join_path(dir, "tokenizer_config.json");
  std::error_code ec;
  if (!fs::exists(path, ec)) return std::string();
  ANVIL_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  ANVIL_ASSIGN_OR_RETURN(json root, parse_json(text, path));
  if (!root.is_object()) return Status::error(path + ": not a JSON object");
  auto it = root.find("chat_template");
  if (it == root.end()) return std::string();
  if (it->is_string()) return it->get<std::string>();
  if (it->is_array()) {
    std::string first;
    for (const json& item : *it) {
      if (!item.is_object() || !item.contains("template") || !item["template"].is_string()) continue;
      const bool is_default = item.contains("name") && item["name"] == "default";
      if (is_default) return item["template"].get<std::string>();
      if (first.empty()) first = item["template"].get<std::string>();
    }
    return first;
  }
  return std::string();
}

// Shortest decimal that reads back as the same float: 1e-05 rather than 9.999999747378752e-06.
double tidy_float(float value) { return std::strtod(fmt::format("{}", value).c_str(), nullptr); }

const char* torch_dtype_name(DType dtype) {
  switch (dtype) {
    case DType::F16: return "float16";
    case DType::BF16: return "bfloat16";
    default: return "float32";
  }
}

Result<std::string> hf_config_text(const Checkpoint& checkpoint, const std::string& dir) {
  const ModelConfig& c = checkpoint.config;
  std::string model_type;
  std::string architecture;
  if (c.arch == "llama") {
    if (c.attn_qkv_bias)
      return Status::error(dir + ": a llama model with q/k/v biases has no Hugging Face layout "
                                 "(HF's attention_bias also adds an o_proj bias)");
    // HF's llama has no sliding window; mistral is llama plus one.
    model_type = c.sliding_window > 0 ? "mistral" : "llama";
    architecture = c.sliding_window > 0 ? "MistralForCausalLM" : "LlamaForCausalLM";
  } else if (c.arch == "qwen2") {
    model_type = "qwen2";
    architecture = "Qwen2ForCausalLM";
  } else {
    return Status::error(dir + ": cannot write arch '" + c.arch + "' as a Hugging Face checkpoint; anvil writes llama, qwen2");
  }

  ordered_json config;
  config["architectures"] = {architecture};
  config["model_type"] = model_type;
  config["hidden_size"] = c.dim;
  config["intermediate_size"] = c.hidden_dim;
  config["num_hidden_layers"] = c.n_layers;
  config["num_attention_heads"] = c.n_heads;
  config["num_key_value_heads"] = c.n_kv_heads;
  config["head_dim"] = c.head_dim;
  config["max_position_embeddings"] = c.context_length;
  config["vocab_size"] = c.vocab_size;
  config["hidden_act"] = "silu";
  config["rms_norm_eps"] = tidy_float(c.rms_norm_eps);
  config["rope_theta"] = tidy_float(c.rope_theta);
  switch (c.rope_scaling.type) {
    case RopeScalingType::None:
      config["rope_scaling"] = nullptr;
      break;
    case RopeScalingType::Linear:
      config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", tidy_float(c.rope_scaling.factor)}};
      break;
    case RopeScalingType::Llama3:
      config["rope_scaling"] = {{"rope_type", "llama3"},
                                {"factor", tidy_float(c.rope_scaling.factor)},
                                {"low_freq_factor", tidy_float(c.rope_scaling.low_freq_factor)},
                                {"high_freq_factor", tidy_float(c.rope_scaling.high_freq_factor)},
                                {"original_max_position_embeddings", c.rope_scaling.original_context}};
      break;
  }
  config["tie_word_embeddings"] = c.tied_embeddings;
  if (model_type == "mistral") config["sliding_window"] = c.sliding_window;
  if (model_type == "qwen2") {
    config["use_sliding_window"] = c.sliding_window > 0;
    config["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  }
  if (c.bos_token_id >= 0) config["bos_token_id"] = c.bos_token_id;
  if (c.eos_token_id >= 0) config["eos_token_id"] = c.eos_token_id;
  const Tensor* embedding = checkpoint.find("token_embd.weight");
  config["torch_dtype"] = torch_dtype_name(embedding ? embedding->dtype : DType::F32);
  return config.dump(2) + "\n";
}

Status write_text_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::error(path + ": cannot create");
  out << text;
  out.close();
  if (!out) return Status::error(path + ": write failed");
  return Status::ok();
}

}  // namespace

std::string hf_tensor_name(const std::string& canonical_name) {
  for (const auto& [hf, canonical] : kGlobalNames)
    if (canonical_name == canonical) return hf;
  std::string layer, rest;
  if (!split_layer_name(canonical_name, "blk.", &layer, &rest)) return "";
  for (const auto& [hf, canonical] : kLayerNames)
    if (rest == canonical) return "model.layers." + layer + "." + hf;
  return "";
}

std::string canonical_tensor_name(const std::string& hf_name) {
  for (const auto& [hf, canonical] : kGlobalNames)
    if (hf_name == hf) return canonical;
  std::string layer, rest;
  if (!split_layer_name(hf_name, "model.layers.", &layer, &rest)) return "";
  for (const auto& [hf, canonical] : kLayerNames)
    if (rest == hf) return "blk." + layer + "." + canonical;
  return "";
}

bool is_hf_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(join_path(path, "config.json"), ec);
}

Result<ModelConfig> parse_hf_config(const std::string& json_text, const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(json root, parse_json(json_text, path));
  if (!root.is_object()) return Status::error(path + ": not a JSON object");
  ConfigFields fields(root, path);
  ModelConfig config;

  ANVIL_ASSIGN_OR_RETURN(std::string model_type, fields.string("model_type"));
  if (model_type == "llama" || model_type == "mistral") {
    config.arch = "llama";
  } else if (model_type == "qwen2") {
    config.arch = "qwen2";
  } else {
    return Status::error(path + ": unknown model_type '" + model_type + "'; anvil supports: llama, mistral, qwen2");
  }

  ANVIL_ASSIGN_OR_RETURN(config.dim, fields.dimension("hidden_size"));
  ANVIL_ASSIGN_OR_RETURN(config.hidden_dim, fields.dimension("intermediate_size"));
  ANVIL_ASSIGN_OR_RETURN(config.n_layers, fields.dimension("num_hidden_layers"));
  ANVIL_ASSIGN_OR_RETURN(config.n_heads, fields.dimension("num_attention_heads"));
  ANVIL_ASSIGN_OR_RETURN(config.n_kv_heads, fields.dimension("num_key_value_heads", config.n_heads));
  ANVIL_ASSIGN_OR_RETURN(config.vocab_size, fields.dimension("vocab_size"));
  ANVIL_ASSIGN_OR_RETURN(config.context_length, fields.dimension("max_position_embeddings"));
  if (!fields.find("head_dim") && config.dim % config.n_heads != 0)
    return Status::error(path + ": hidden_size " + std::to_string(config.dim) + " is not a multiple of num_attention_heads " +
                         std::to_string(config.n_heads) + " (and there is no head_dim)");
  ANVIL_ASSIGN_OR_RETURN(config.head_dim, fields.dimension("head_dim", config.dim / config.n_heads));
  if (config.n_heads % config.n_kv_heads != 0)
    return Status::error(path + ": num_attention_heads " + std::to_string(config.n_heads) +
                         " is not a multiple of num_key_value_heads " + std::to_string(config.n_kv_heads));
  if (config.head_dim % 2 != 0)
    return Status::error(path + ": head_dim " + std::to_string(config.head_dim) + " is odd; RoPE needs pairs");

  ANVIL_ASSIGN_OR_RETURN(double eps, fields.positive_number("rms_norm_eps"));
  config.rms_norm_eps = static_cast<float>(eps);
  ANVIL_ASSIGN_OR_RETURN(double theta, fields.positive_number("rope_theta", 10000.0));
  config.rope_theta = static_cast<float>(theta);
  ANVIL_RETURN_IF_ERROR(parse_rope_scaling(fields, path, &config.rope_scaling));
  ANVIL_ASSIGN_OR_RETURN(config.tied_embeddings, fields.boolean("tie_word_embeddings", false));

  // Mistral always honors sliding_window (null = full attention); Qwen2 writes one but applies
  // it only with use_sliding_window, which released models leave false.
  bool use_window = model_type == "mistral";
  if (model_type == "qwen2") {
    ANVIL_ASSIGN_OR_RETURN(use_window, fields.boolean("use_sliding_window", false));
  }
  if (use_window && fields.find("sliding_window")) {
    ANVIL_ASSIGN_OR_RETURN(config.sliding_window, fields.dimension("sliding_window"));
  }

  ANVIL_ASSIGN_OR_RETURN(config.bos_token_id, fields.token_id("bos_token_id"));
  ANVIL_ASSIGN_OR_RETURN(config.eos_token_id, fields.token_id("eos_token_id"));
  config.rope_style = RopeStyle::NeoX;
  return config;
}

Result<Checkpoint> load_hf_checkpoint(const std::string& dir, const ProgressCallback& progress) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) return Status::error(dir + ": no such directory");
  if (!fs::is_directory(dir, ec))
    return Status::error(dir + ": not a directory (expected a Hugging Face model directory with config.json)");
  const std::string config_path = join_path(dir, "config.json");
  if (!fs::exists(config_path, ec))
    return Status::error(dir + ": no config.json (not a Hugging Face model directory?)");

  Checkpoint checkpoint;
  checkpoint.source = dir;
  ANVIL_ASSIGN_OR_RETURN(std::string config_text, read_text_file(config_path));
  ANVIL_ASSIGN_OR_RETURN(checkpoint.config, parse_hf_config(config_text, config_path));
  ANVIL_ASSIGN_OR_RETURN(const HfQuantization quantization, read_hf_quantization(dir, config_text));
  ModelConfig& config = checkpoint.config;
  config.name = directory_base_name(dir);

  ANVIL_ASSIGN_OR_RETURN(WeightIndex weights, index_weights(dir));
  for (const auto& [name, location] : weights.tensors) {
    if (is_unsupported_bias(name))
      return Status::error(dir + ": tensor " + name + " is a bias anvil's " + config.arch + " has no place for");
    // (A compressed-tensors "dense" config keeps fake-quantized float weights beside their scales.)
    if (quantization.where.empty() && is_hf_quantized_tensor_name(name))
      return Status::error(dir + ": tensor " + name + " belongs to a quantized layout, but config.json has no " +
                           "quantization_config (and there is no quantize_config.json) to say which");
  }
  config.attn_qkv_bias = weights.tensors.count("model.layers.0.self_attn.q_proj.bias") > 0;
  // Tied models often omit lm_head.weight; some store a copy anyway, which tie_word_embeddings
  // overrides. A quantized lm_head has no lm_head.weight but lm_head.qweight (or similar).
  auto lm_head = weights.tensors.lower_bound("lm_head.");
  const bool has_lm_head = lm_head != weights.tensors.end() && lm_head->first.rfind("lm_head.", 0) == 0;
  config.tied_embeddings = config.tied_embeddings || !has_lm_head;

  // The source tensors each required tensor is made of: "NAME" itself, or for a linear weight of a
  // quantized checkpoint every "MODULE.*" (qweight, scales, ...). Their bytes measure progress.
  const std::vector<TensorSpec> specs = required_tensor_specs(config);
  const bool quantized = quantization.method != HfQuantMethod::None;
  auto module_of = [&](const TensorSpec& spec) {
    const std::string suffix = ".weight";
    const bool linear = quantized && spec.shape.size() == 2 && spec.hf.size() > suffix.size() &&
                        spec.hf.compare(spec.hf.size() - suffix.size(), suffix.size(), suffix) == 0;
    return linear ? spec.hf.substr(0, spec.hf.size() - suffix.size()) : std::string();
  };
  auto source_bytes = [&](const TensorSpec& spec) {
    const std::string module = module_of(spec);
    if (module.empty()) {
      auto it = weights.tensors.find(spec.hf);
      return it == weights.tensors.end() ? uint64_t{0} : uint64_t{it->second.second->nbytes};
    }
    uint64_t bytes = 0;
    for (auto it = weights.tensors.lower_bound(module + "."); it != weights.tensors.end() &&
                                                              it->first.compare(0, module.size() + 1, module + ".") == 0;
         ++it)
      bytes += it->second.second->nbytes;
    return bytes;
  };
  uint64_t total_bytes = 0, done_bytes = 0;
  for (const TensorSpec& spec : specs) total_bytes += source_bytes(spec);
  const HfTensorFinder find = [&](const std::string& name) -> const SafetensorsEntry* {
    auto it = weights.tensors.find(name);
    return it == weights.tensors.end() ? nullptr : it->second.second;
  };

  int64_t quantized_weights = 0;
  for (const TensorSpec& spec : specs) {
    if (const std::string module = module_of(spec); !module.empty()) {
      Result<std::optional<Tensor>> decoded =
          decode_hf_quantized_weight(quantization, module, spec.shape[0], spec.shape[1], find, checkpoint.storage);
      if (!decoded) return decoded.status().with_context(dir);
      if (decoded->has_value()) {
        Tensor tensor = std::move(**decoded);
        tensor.name = spec.canonical;
        checkpoint.tensors[spec.canonical] = std::move(tensor);
        ++quantized_weights;
        done_bytes += source_bytes(spec);
        if (progress) progress(done_bytes, total_bytes);
        continue;
      }
    }
    auto it = weights.tensors.find(spec.hf);
    if (it == weights.tensors.end()) return Status::error(dir + ": missing tensor " + spec.hf);
    const auto& [file, entry] = it->second;
    ANVIL_ASSIGN_OR_RETURN(Tensor tensor, file->tensor(*entry));
    if (tensor.shape != spec.shape) {
      Tensor expected;
      expected.shape = spec.shape;
      return Status::error(dir + ": tensor " + spec.hf + " has shape " + tensor.shape_string() + ", expected " +
                           expected.shape_string());
    }
    tensor.name = spec.canonical;
    checkpoint.tensors[spec.canonical] = std::move(tensor);
    done_bytes += source_bytes(spec);
    if (progress) progress(done_bytes, total_bytes);
  }
  if (quantized && quantized_weights == 0)
    return Status::error(quantization.where + " declares a quantized checkpoint, but no linear layer is stored in "
                         "its layout (e.g. model.layers.0.self_attn.q_proj." +
                         (quantization.method == HfQuantMethod::CompressedTensors ? "weight_scale" : "qweight") +
                         " is missing)");
  checkpoint.quantization = hf_quantization_info(quantization);
  // Act-order with permuted groups (GPTQ desc_act without static groups, compressed-tensors
  // actorder "group") shows in the weights: they carry input orders.
  for (const auto& [name, tensor] : checkpoint.tensors)
    if (tensor.quant.input_order) checkpoint.quantization.act_order = checkpoint.quantization.dynamic_groups = true;
  for (auto& file : weights.files) {
    // Registered as file mappings: repack_weights_for_decode moves the matrices out of them.
    checkpoint.file_mappings.emplace_back(file->mapped_file().data(), file->mapped_file().size());
    checkpoint.storage.push_back(std::move(file));
  }

  // tokenizer.json when the directory has one (an empty Vocab otherwise); the chat template
  // comes with it from tokenizer_config.json, or alone when there is no tokenizer.json.
  ANVIL_ASSIGN_OR_RETURN(checkpoint.vocab, load_hf_tokenizer(dir));
  if (checkpoint.vocab.chat_template.empty()) {
    ANVIL_ASSIGN_OR_RETURN(checkpoint.vocab.chat_template, read_chat_template(dir));
  }
  return checkpoint;
}

Status write_hf_checkpoint(const Checkpoint& checkpoint, const std::string& dir) {
  const ModelConfig& config = checkpoint.config;
  ANVIL_ASSIGN_OR_RETURN(std::string config_text, hf_config_text(checkpoint, dir));

  // Zero biases let a bias-free qwen2 load in transformers, whose Qwen2 always has q/k/v biases.
  const bool add_zero_biases = config.arch == "qwen2" && !config.attn_qkv_bias;
  ModelConfig with_biases = config;
  with_biases.attn_qkv_bias = config.attn_qkv_bias || add_zero_biases;

  std::list<std::vector<std::byte>> buffers;  // permuted copies, alive until the write ends
  std::vector<Tensor> out;
  for (const TensorSpec& spec : required_tensor_specs(with_biases)) {
    const Tensor* source = checkpoint.find(spec.canonical);
    const bool is_bias = spec.canonical.size() > 5 && spec.canonical.compare(spec.canonical.size() - 5, 5, ".bias") == 0;
    Tensor tensor;
    if (!source && is_bias && add_zero_biases) {
      const Tensor* weight = checkpoint.find(spec.canonical.substr(0, spec.canonical.size() - 5) + ".weight");
      tensor.dtype = weight ? weight->dtype : DType::F32;
      if (!safetensors_dtype_name(tensor.dtype)) tensor.dtype = DType::F32;
      tensor.shape = spec.shape;
      tensor.nbytes = dtype_bytes(tensor.dtype, tensor.numel());
      buffers.emplace_back(tensor.nbytes, std::byte{0});  // +0.0 in F32, F16 and BF16
      tensor.data = buffers.back().data();
    } else {
      if (!source) return Status::error(dir + ": checkpoint " + checkpoint.source + " has no tensor " + spec.canonical);
      if (source->shape != spec.shape) {
        Tensor expected;
        expected.shape = spec.shape;
        return Status::error(dir + ": tensor " + spec.canonical + " has shape " + source->shape_string() +
                             ", expected " + expected.shape_string());
      }
      if (!safetensors_dtype_name(source->dtype))
        return Status::error(dir + ": tensor " + spec.canonical + " has type " + dtype_name(source->dtype) +
                             "; Hugging Face checkpoints are written from F32, F16 or BF16 tensors only");
      tensor = *source;
      const bool is_q = spec.canonical.find(".attn_q.") != std::string::npos;
      const bool is_k = spec.canonical.find(".attn_k.") != std::string::npos;
      if (config.rope_style == RopeStyle::Interleaved && (is_q || is_k)) {
        std::vector<std::byte> permuted = permute_rows_interleaved_to_neox(*source, is_q ? config.n_heads : config.n_kv_heads);
        if (permuted.size() != source->nbytes)
          return Status::error(dir + ": cannot permute the rows of " + spec.canonical + " to rotate-half order");
        buffers.push_back(std::move(permuted));
        tensor.data = buffers.back().data();
      }
    }
    tensor.name = spec.hf;
    out.push_back(std::move(tensor));
  }
  // Refuse rather than drop tensors the layout has no place for. rope_freqs.weight is derived from
  // rope_scaling, which config.json carries; a tied model's output.weight is the embedding.
  std::set<std::string> written;
  for (const TensorSpec& spec : required_tensor_specs(with_biases)) written.insert(spec.canonical);
  for (const auto& [name, tensor] : checkpoint.tensors) {
    if (written.count(name) || name == "rope_freqs.weight" || (name == "output.weight" && config.tied_embeddings)) continue;
    return Status::error(dir + ": tensor " + name + " does not belong in this " + config.arch + " checkpoint");
  }

  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Status::error(dir + ": cannot create directory: " + ec.message());
  // Weights first: a directory with a config.json then always has its weights.
  // transformers refuses safetensors files whose metadata lacks format=pt.
  ANVIL_RETURN_IF_ERROR(write_safetensors(join_path(dir, "model.safetensors"), out, {{"format", "pt"}}));
  ANVIL_RETURN_IF_ERROR(write_text_file(join_path(dir, "config.json"), config_text));
  if (!checkpoint.vocab.chat_template.empty()) {
    ordered_json tokenizer_config;
    tokenizer_config["chat_template"] = checkpoint.vocab.chat_template;
    std::string text;
    try {
      text = tokenizer_config.dump(2) + "\n";
    } catch (const json::exception& e) {
      return Status::error(dir + ": cannot encode the chat template (" + json_error_text(e) + ")");
    }
    ANVIL_RETURN_IF_ERROR(write_text_file(join_path(dir, "tokenizer_config.json"), text));
  }
  return Status::ok();
}

}  // namespace anvil
