// GGUF -> Checkpoint: reads the {arch}.* hyperparameters and tokenizer.* metadata, then checks the
// tensor table against the shapes the config implies, so later code can trust both.
#include "formats/gguf_checkpoint.h"

#include <cmath>
#include <limits>

#include "formats/quant_companions.h"
#include "model/tensor_layout.h"

namespace anvil {
namespace {

// Hyperparameters beyond this are corrupt files, not models; keeps products of them from overflowing.
constexpr int64_t kMaxHyperparameter = std::numeric_limits<int32_t>::max();

std::string shape_string(const std::vector<int64_t>& shape) {
  Tensor t;
  t.shape = shape;
  return t.shape_string();
}

std::string file_stem(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  const size_t dot = name.rfind('.');
  return dot == std::string::npos || dot == 0 ? name : name.substr(0, dot);
}

class ConfigReader {
 public:
  explicit ConfigReader(const GgufFile& file) : file_(file) {}

  Status error(const std::string& message) const { return Status::error(file_.path() + ": " + message); }

  // A positive integer; some converters store per-layer values as an array, which anvil accepts
  // only when every layer has the same value.
  Result<int64_t> positive(const std::string& key, std::optional<int64_t> fallback = std::nullopt) const {
    const GgufValue* v = file_.find(key);
    if (!v) {
      if (fallback) return *fallback;
      return error("missing required metadata key " + key);
    }
    int64_t value = 0;
    if (v->is_array()) {
      ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> values, file_.get_int_array(key));
      if (values.empty()) return error("metadata key " + key + " is an empty array");
      for (int64_t x : values)
        if (x != values[0]) return error("metadata key " + key + " differs between layers, which anvil does not support");
      value = values[0];
    } else {
      ANVIL_ASSIGN_OR_RETURN(value, file_.get_int(key));
    }
    if (value <= 0 || value > kMaxHyperparameter)
      return error("metadata key " + key + " must be a positive integer, got " + std::to_string(value));
    return value;
  }

  Result<float> positive_float(const std::string& key, std::optional<double> fallback = std::nullopt) const {
    double value = 0;
    if (fallback) {
      ANVIL_ASSIGN_OR_RETURN(value, file_.get_float(key, *fallback));
    } else {
      ANVIL_ASSIGN_OR_RETURN(value, file_.get_float(key));
    }
    if (!(value > 0) || !std::isfinite(value) || value > std::numeric_limits<float>::max())
      return error("metadata key " + key + " must be a positive number, got " + std::to_string(value));
    return static_cast<float>(value);
  }

 private:
  const GgufFile& file_;
};

// Each special token id is optional; like llama.cpp, an id outside the vocabulary is ignored
// (left at its default) rather than failing the whole file.
Status read_token_id(const GgufFile& file, const std::string& key, int64_t n_tokens, int32_t& id) {
  ANVIL_ASSIGN_OR_RETURN(int64_t value, file.get_int(key, -1));
  if (value >= 0 && value < n_tokens) id = static_cast<int32_t>(value);
  return Status::ok();
}

Status check_tensor(const Checkpoint& ckpt, const std::string& name, const std::vector<int64_t>& expected) {
  const Tensor* t = ckpt.find(name);
  if (!t) return Status::error(ckpt.source + ": missing tensor " + name);
  if (t->shape != expected)
    return Status::error(ckpt.source + ": tensor " + name + " has shape " + t->shape_string() + ", expected " +
                         shape_string(expected));
  return Status::ok();
}

// anvil.quantization.* (written by `anvil quantize`; docs/FORMATS.md), all optional.
Result<QuantizationInfo> quantization_from_gguf(const GgufFile& file) {
  QuantizationInfo q;
  ANVIL_ASSIGN_OR_RETURN(q.scheme, file.get_string("anvil.quantization.scheme", ""));
  ANVIL_ASSIGN_OR_RETURN(q.granularity, file.get_string("anvil.quantization.granularity", ""));
  ANVIL_ASSIGN_OR_RETURN(q.group_size, file.get_int("anvil.quantization.group_size", 0));
  ANVIL_ASSIGN_OR_RETURN(q.symmetric, file.get_bool("anvil.quantization.symmetric", true));
  ANVIL_ASSIGN_OR_RETURN(q.act_order, file.get_bool("anvil.quantization.act_order", false));
  ANVIL_ASSIGN_OR_RETURN(q.dynamic_groups, file.get_bool("anvil.quantization.dynamic_groups", false));
  if (file.has("anvil.quantization.smoothquant_alpha")) {
    ANVIL_ASSIGN_OR_RETURN(q.smoothquant_alpha, file.get_float("anvil.quantization.smoothquant_alpha"));
  }
  ANVIL_ASSIGN_OR_RETURN(const std::string activations, file.get_string("anvil.quantization.activations", ""));
  if (!activations.empty()) {
    const std::optional<ActivationQuant> parsed = activation_quant_from_name(activations);
    if (!parsed)
      return Status::error(file.path() + ": anvil.quantization.activations '" + activations +
                           "' is not an activation quantization anvil runs (dynamic-per-token-fp8)");
    q.activations = *parsed;
  }
  if (q.group_size < 0 || q.group_size > kMaxHyperparameter)
    return Status::error(file.path() + ": anvil.quantization.group_size " + std::to_string(q.group_size) +
                         " is out of range");
  return q;
}

}  // namespace

Result<Vocab> vocab_from_gguf(const GgufFile& file) {
  Vocab vocab;
  ANVIL_ASSIGN_OR_RETURN(std::string model, file.get_string("tokenizer.ggml.model", ""));
  // "no_vocab" is what llama.cpp (and anvil's writer) store for models without a tokenizer.
  if (model == "no_vocab" || model == "none" || (model.empty() && !file.has("tokenizer.ggml.tokens"))) return vocab;
  vocab.model = model;
  ANVIL_ASSIGN_OR_RETURN(vocab.pre, file.get_string("tokenizer.ggml.pre", ""));
  ANVIL_ASSIGN_OR_RETURN(vocab.tokens, file.get_string_array("tokenizer.ggml.tokens"));
  const auto n_tokens = static_cast<int64_t>(vocab.tokens.size());
  if (n_tokens == 0 || n_tokens > kMaxHyperparameter)
    return Status::error(file.path() + ": tokenizer.ggml.tokens has " + std::to_string(n_tokens) + " tokens");

  if (file.has("tokenizer.ggml.scores")) {
    ANVIL_ASSIGN_OR_RETURN(vocab.scores, file.get_float_array("tokenizer.ggml.scores"));
    if (static_cast<int64_t>(vocab.scores.size()) != n_tokens)
      return Status::error(file.path() + ": tokenizer.ggml.scores has " + std::to_string(vocab.scores.size()) +
                           " entries for " + std::to_string(n_tokens) + " tokens");
  }
  if (file.has("tokenizer.ggml.token_type")) {
    ANVIL_ASSIGN_OR_RETURN(std::vector<int64_t> types, file.get_int_array("tokenizer.ggml.token_type"));
    if (static_cast<int64_t>(types.size()) != n_tokens)
      return Status::error(file.path() + ": tokenizer.ggml.token_type has " + std::to_string(types.size()) +
                           " entries for " + std::to_string(n_tokens) + " tokens");
    vocab.token_types.reserve(types.size());
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] < 0 || types[i] > static_cast<int64_t>(TokenType::Byte))
        return Status::error(file.path() + ": tokenizer.ggml.token_type[" + std::to_string(i) + "] is " +
                             std::to_string(types[i]) + ", not a known token type");
      vocab.token_types.push_back(static_cast<int32_t>(types[i]));
    }
  }
  if (file.has("tokenizer.ggml.merges")) {
    ANVIL_ASSIGN_OR_RETURN(vocab.merges, file.get_string_array("tokenizer.ggml.merges"));
  }

  // Defaults follow llama.cpp: SentencePiece adds BOS and a leading space and has fixed special
  // ids; byte-level BPE adds neither unless its pre-tokenizer family (Llama 3) does.
  if (model == "llama") {
    vocab.add_bos = true;
    vocab.add_space_prefix = true;
    if (n_tokens > 2) {
      vocab.unk_id = 0;
      vocab.bos_id = 1;
      vocab.eos_id = 2;
    }
  } else if (model == "gpt2") {
    vocab.add_bos = vocab.pre == "llama3" || vocab.pre == "llama-v3" || vocab.pre == "llama-bpe" || vocab.pre == "falcon3";
    vocab.add_space_prefix = false;
  } else if (model == "bert") {
    vocab.add_bos = true;
    vocab.add_sep = true;  // [CLS] text [SEP]
    vocab.add_space_prefix = false;
  } else if (model == "t5") {
    // SentencePiece unigram; llama.cpp's defaults are T5's: </s> appended, no BOS.
    vocab.add_bos = false;
    vocab.add_eos = true;
    vocab.add_space_prefix = true;
    if (n_tokens > 2) {
      vocab.pad_id = 0;
      vocab.eos_id = 1;
      vocab.unk_id = 2;
    }
  }
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.bos_token_id", n_tokens, vocab.bos_id));
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.eos_token_id", n_tokens, vocab.eos_id));
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.unknown_token_id", n_tokens, vocab.unk_id));
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.padding_token_id", n_tokens, vocab.pad_id));
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.eot_token_id", n_tokens, vocab.eot_id));
  // llama.cpp's spelling of the key.
  ANVIL_RETURN_IF_ERROR(read_token_id(file, "tokenizer.ggml.seperator_token_id", n_tokens, vocab.sep_id));
  ANVIL_ASSIGN_OR_RETURN(vocab.add_bos, file.get_bool("tokenizer.ggml.add_bos_token", vocab.add_bos));
  ANVIL_ASSIGN_OR_RETURN(vocab.add_eos, file.get_bool("tokenizer.ggml.add_eos_token", vocab.add_eos));
  ANVIL_ASSIGN_OR_RETURN(vocab.add_sep, file.get_bool("tokenizer.ggml.add_sep_token", vocab.add_sep));
  ANVIL_ASSIGN_OR_RETURN(vocab.add_space_prefix, file.get_bool("tokenizer.ggml.add_space_prefix", vocab.add_space_prefix));
  ANVIL_ASSIGN_OR_RETURN(vocab.remove_extra_whitespaces,
                         file.get_bool("tokenizer.ggml.remove_extra_whitespaces", vocab.remove_extra_whitespaces));
  ANVIL_ASSIGN_OR_RETURN(vocab.chat_template, file.get_string("tokenizer.chat_template", ""));
  return vocab;
}

Result<Vocab> load_gguf_vocab(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
  return vocab_from_gguf(file);
}

Result<ModelConfig> config_from_gguf(const GgufFile& file) {
  ConfigReader r(file);
  ModelConfig c;
  ANVIL_ASSIGN_OR_RETURN(c.arch, file.get_string("general.architecture"));
  if (c.arch == "llama") {
    c.rope_style = RopeStyle::Interleaved;  // llama.cpp's "llama" graph rotates adjacent pairs
  } else if (c.arch == "qwen2") {
    c.rope_style = RopeStyle::NeoX;
  } else {
    return r.error("unknown architecture '" + c.arch + "'; anvil supports: llama, qwen2");
  }
  ANVIL_ASSIGN_OR_RETURN(c.name, file.get_string("general.name", file_stem(file.path())));
  const std::string a = c.arch + ".";

  ANVIL_ASSIGN_OR_RETURN(c.context_length, r.positive(a + "context_length"));
  ANVIL_ASSIGN_OR_RETURN(c.dim, r.positive(a + "embedding_length"));
  ANVIL_ASSIGN_OR_RETURN(c.hidden_dim, r.positive(a + "feed_forward_length"));
  ANVIL_ASSIGN_OR_RETURN(c.n_layers, r.positive(a + "block_count"));
  ANVIL_ASSIGN_OR_RETURN(c.n_heads, r.positive(a + "attention.head_count"));
  ANVIL_ASSIGN_OR_RETURN(c.n_kv_heads, r.positive(a + "attention.head_count_kv", c.n_heads));
  if (c.n_heads % c.n_kv_heads != 0)
    return r.error("attention.head_count " + std::to_string(c.n_heads) + " is not a multiple of head_count_kv " +
                   std::to_string(c.n_kv_heads));
  if (!file.has(a + "attention.key_length") && c.dim % c.n_heads != 0)
    return r.error("embedding_length " + std::to_string(c.dim) + " is not a multiple of head_count " +
                   std::to_string(c.n_heads) + " and " + a + "attention.key_length is missing");
  ANVIL_ASSIGN_OR_RETURN(c.head_dim, r.positive(a + "attention.key_length", c.dim / c.n_heads));
  ANVIL_ASSIGN_OR_RETURN(int64_t value_length, r.positive(a + "attention.value_length", c.head_dim));
  if (value_length != c.head_dim)
    return r.error("attention.value_length " + std::to_string(value_length) + " differs from key_length " +
                   std::to_string(c.head_dim) + ", which anvil does not support");
  if (c.head_dim % 2 != 0) return r.error("head dimension " + std::to_string(c.head_dim) + " is odd; RoPE needs pairs");
  ANVIL_ASSIGN_OR_RETURN(int64_t rope_dims, r.positive(a + "rope.dimension_count", c.head_dim));
  if (rope_dims != c.head_dim)
    return r.error("rope.dimension_count " + std::to_string(rope_dims) + " differs from the head dimension " +
                   std::to_string(c.head_dim) + " (partial rotary embeddings are not supported)");

  ANVIL_ASSIGN_OR_RETURN(c.rms_norm_eps, r.positive_float(a + "attention.layer_norm_rms_epsilon"));
  ANVIL_ASSIGN_OR_RETURN(c.rope_theta, r.positive_float(a + "rope.freq_base", 10000.0));

  ANVIL_ASSIGN_OR_RETURN(std::string scaling, file.get_string(a + "rope.scaling.type", "none"));
  if (scaling == "linear") {
    c.rope_scaling.type = RopeScalingType::Linear;
    ANVIL_ASSIGN_OR_RETURN(c.rope_scaling.factor, r.positive_float(a + "rope.scaling.factor"));
  } else if (scaling == "none") {
    // Older converters wrote linear scaling as rope.scale_linear.
    ANVIL_ASSIGN_OR_RETURN(float scale_linear, r.positive_float(a + "rope.scale_linear", 1.0));
    if (scale_linear != 1.0f) {
      c.rope_scaling.type = RopeScalingType::Linear;
      c.rope_scaling.factor = scale_linear;
    }
  } else {
    return r.error("rope scaling type '" + scaling + "' is not supported (anvil supports: none, linear)");
  }
  // Llama 3.1 scaling needs no config here: GGUF stores its divisors as rope_freqs.weight.

  ANVIL_ASSIGN_OR_RETURN(c.sliding_window, file.get_int(a + "attention.sliding_window", 0));
  if (c.sliding_window < 0 || c.sliding_window > kMaxHyperparameter)
    return r.error("attention.sliding_window must be >= 0, got " + std::to_string(c.sliding_window));

  // Vocab size: explicit key, else the tokenizer's token count, else the embedding's rows.
  if (file.has(a + "vocab_size")) {
    ANVIL_ASSIGN_OR_RETURN(c.vocab_size, r.positive(a + "vocab_size"));
  } else if (const GgufValue* tokens = file.find("tokenizer.ggml.tokens"); tokens && tokens->is_array()) {
    c.vocab_size = static_cast<int64_t>(tokens->size());
  } else if (const GgufTensorInfo* embd = file.find_tensor("token_embd.weight"); embd && embd->ne.size() == 2) {
    c.vocab_size = embd->ne[1];
  }
  if (c.vocab_size <= 0 || c.vocab_size > kMaxHyperparameter)
    return r.error("cannot determine the vocabulary size (no " + a + "vocab_size, tokenizer.ggml.tokens or token_embd.weight)");

  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  c.attn_qkv_bias = file.find_tensor("blk.0.attn_q.bias") != nullptr;
  return c;
}

Status check_checkpoint_tensors(const Checkpoint& ckpt) {
  const ModelConfig& c = ckpt.config;
  if (const Tensor* freqs = ckpt.find("rope_freqs.weight")) {
    ANVIL_RETURN_IF_ERROR(check_tensor(ckpt, "rope_freqs.weight", {c.head_dim / 2}));
    if (freqs->dtype != DType::F32) return Status::error(ckpt.source + ": tensor rope_freqs.weight must be F32");
  }
  for (const RequiredTensor& t : required_tensors(c)) {
    ANVIL_RETURN_IF_ERROR(check_tensor(ckpt, t.name, t.shape));
  }
  return Status::ok();
}

Result<Checkpoint> checkpoint_from_gguf(const GgufFile& file) {
  Checkpoint ckpt;
  ckpt.source = file.path();
  ANVIL_ASSIGN_OR_RETURN(ckpt.config, config_from_gguf(file));
  ANVIL_ASSIGN_OR_RETURN(ckpt.vocab, vocab_from_gguf(file));
  ModelConfig& c = ckpt.config;
  c.bos_token_id = ckpt.vocab.bos_id;
  c.eos_token_id = ckpt.vocab.eos_id;
  // Token ids index the embedding, so the tokenizer may not produce ids beyond it.
  if (ckpt.vocab.size() > c.vocab_size)
    return Status::error(file.path() + ": tokenizer has " + std::to_string(ckpt.vocab.size()) +
                         " tokens but the model's vocabulary size is " + std::to_string(c.vocab_size));

  for (const GgufTensorInfo& info : file.tensors()) {
    Tensor t;
    t.name = info.name;
    t.dtype = info.dtype;
    t.shape = info.shape();
    t.data = info.data;
    t.nbytes = info.nbytes;
    ckpt.tensors.emplace(t.name, std::move(t));
  }
  if (file.mapped_file()) {
    ckpt.storage.push_back(file.mapped_file());
    ckpt.file_mappings.emplace_back(file.mapped_file()->data(), file.mapped_file()->size());
  }
  ANVIL_RETURN_IF_ERROR(attach_quant_companions(ckpt));
  ANVIL_ASSIGN_OR_RETURN(ckpt.quantization, quantization_from_gguf(file));
  apply_activation_quant(ckpt, ckpt.quantization.activations);  // fp8-dynamic: on every F8_E4M3 weight
  ANVIL_RETURN_IF_ERROR(check_checkpoint_tensors(ckpt));
  return ckpt;
}

Result<Checkpoint> load_gguf_checkpoint(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
  return checkpoint_from_gguf(file);
}

}  // namespace anvil
