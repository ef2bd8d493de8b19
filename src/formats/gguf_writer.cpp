// GGUF v3 writing: metadata and tensor table are built in memory (small), tensor data is streamed
// straight from the checkpoint to the file, with q/k rows reordered on the fly when needed.
#include "formats/gguf_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <list>
#include <map>
#include <tuple>

#include "formats/gguf_checkpoint.h"
#include "formats/gguf_reader.h"
#include "formats/quant_companions.h"
#include "formats/rope_permute.h"
#include "model/rope.h"

namespace anvil {
namespace {

constexpr uint64_t kAlignment = 32;
constexpr uint32_t kVersion = 3;

// The per-layer tensors llama.cpp's llama/qwen2 graphs use, in the order they are written.
const char* const kLayerTensors[] = {
    "attn_norm.weight", "attn_q.weight", "attn_q.bias",        "attn_k.weight",   "attn_k.bias",
    "attn_v.weight",    "attn_v.bias",   "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight",
    "ffn_up.weight",    "ffn_down.weight"};

uint64_t align_up(uint64_t n) { return (n + kAlignment - 1) / kAlignment * kAlignment; }

// Little-endian serialization of the header, metadata and tensor infos.
class HeaderBuilder {
 public:
  void u32(uint32_t v) { raw(&v, 4); }
  void u64(uint64_t v) { raw(&v, 8); }
  void f32(float v) { raw(&v, 4); }
  void str(std::string_view s) {
    u64(s.size());
    buf_.append(s.data(), s.size());
  }
  void key(std::string_view k, GgufType type) {
    str(k);
    u32(static_cast<uint32_t>(type));
  }
  void kv_string(std::string_view k, std::string_view v) {
    key(k, GgufType::String);
    str(v);
    ++count_;
  }
  void kv_u32(std::string_view k, uint32_t v) {
    key(k, GgufType::UInt32);
    u32(v);
    ++count_;
  }
  void kv_f32(std::string_view k, float v) {
    key(k, GgufType::Float32);
    f32(v);
    ++count_;
  }
  void kv_bool(std::string_view k, bool v) {
    key(k, GgufType::Bool);
    buf_.push_back(v ? 1 : 0);
    ++count_;
  }
  void kv_strings(std::string_view k, const std::vector<std::string>& v) {
    key(k, GgufType::Array);
    u32(static_cast<uint32_t>(GgufType::String));
    u64(v.size());
    for (const std::string& s : v) str(s);
    ++count_;
  }
  void kv_f32s(std::string_view k, const std::vector<float>& v) {
    key(k, GgufType::Array);
    u32(static_cast<uint32_t>(GgufType::Float32));
    u64(v.size());
    for (float x : v) f32(x);
    ++count_;
  }
  void kv_i32s(std::string_view k, const std::vector<int32_t>& v) {
    key(k, GgufType::Array);
    u32(static_cast<uint32_t>(GgufType::Int32));
    u64(v.size());
    for (int32_t x : v) raw(&x, 4);
    ++count_;
  }

  std::string& bytes() { return buf_; }
  uint64_t count() const { return count_; }

 private:
  // anvil targets little-endian hosts (as GGUF files are), so native bytes are file bytes.
  void raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string buf_;
  uint64_t count_ = 0;
};

struct PlannedTensor {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const std::byte* data = nullptr;
  size_t nbytes = 0;
  RopeRowOrder order = RopeRowOrder::AsStored;
  int64_t head_dim = 0;
  uint64_t offset = 0;  // within the data section
};

// llama.cpp's llama_ftype for the dtype holding most of the weights (informational there).
uint32_t file_type_for(DType dtype) {
  switch (dtype) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 7;
    case DType::Q4_K: return 15;  // Q4_K_M
    case DType::Q6_K: return 18;
    case DType::BF16: return 32;
    // llama.cpp has no file type for anvil's scaled types (and cannot load them): "guessed".
    case DType::F8_E4M3:
    case DType::I8:
    case DType::I4: return 1024;
    case DType::Q8_0_R4:  // refused by check_tensor: never written
    case DType::Q4_0_R4:
    case DType::Q4_K_R4:
    case DType::Count: break;
  }
  return 0;
}

// A FILE* that records the first error and removes the temporary file unless committed.
class OutputFile {
 public:
  ~OutputFile() {
    if (file_) std::fclose(file_);
    if (!committed_ && !tmp_path_.empty()) std::remove(tmp_path_.c_str());
  }

  Status open(const std::string& tmp_path) {
    tmp_path_ = tmp_path;
    file_ = std::fopen(tmp_path.c_str(), "wb");
    if (!file_) {
      const int err = errno;
      tmp_path_.clear();  // nothing to clean up
      return Status::error(tmp_path + ": cannot create: " + std::strerror(err));
    }
    std::setvbuf(file_, nullptr, _IOFBF, 1 << 20);
    return Status::ok();
  }

  Status write(const void* data, size_t n) {
    if (n == 0) return Status::ok();
    if (std::fwrite(data, 1, n, file_) != n) return io_error("write failed");
    written_ += n;
    return Status::ok();
  }
  Status pad_to(uint64_t target) {
    static const char zeros[kAlignment] = {};
    while (written_ < target) ANVIL_RETURN_IF_ERROR(write(zeros, std::min<uint64_t>(kAlignment, target - written_)));
    return Status::ok();
  }
  uint64_t written() const { return written_; }

  // Flushes to disk (so a full disk is reported here, not discovered later) and renames.
  Status commit(const std::string& final_path) {
    if (std::fflush(file_) != 0) return io_error("write failed");
    if (::fsync(fileno(file_)) != 0) return io_error("fsync failed");
    const int rc = std::fclose(file_);
    file_ = nullptr;
    if (rc != 0) return io_error("close failed");
    if (std::rename(tmp_path_.c_str(), final_path.c_str()) != 0)
      return Status::error(final_path + ": cannot rename " + tmp_path_ + " into place: " + std::strerror(errno));
    committed_ = true;
    return Status::ok();
  }

 private:
  Status io_error(const char* what) const {
    return Status::error(tmp_path_ + ": " + what + ": " + std::strerror(errno ? errno : EIO));
  }
  std::FILE* file_ = nullptr;
  std::string tmp_path_;
  uint64_t written_ = 0;
  bool committed_ = false;
};

Status check_u32(const std::string& path, const char* what, int64_t value) {
  if (value < 0 || value > std::numeric_limits<uint32_t>::max())
    return Status::error(path + ": " + what + " " + std::to_string(value) + " does not fit in GGUF's uint32");
  return Status::ok();
}

Status validate_tensor(const std::string& path, const Tensor& t) {
  const std::string what = path + ": tensor " + t.name;
  if (t.shape.empty() || t.shape.size() > 4)
    return Status::error(what + " has " + std::to_string(t.shape.size()) + " dimensions (GGUF allows 1 to 4)");
  for (int64_t d : t.shape)
    if (d <= 0) return Status::error(what + " has shape " + t.shape_string());
  const DTypeInfo& info = dtype_info(t.dtype);
  if (dtype_is_panels(t.dtype))
    return Status::error(what + " is in " + info.name +
                         ", the decode kernels' in-memory layout; write the checkpoint as loaded, before repacking");
  if (t.shape.back() % info.block_elems != 0)
    return Status::error(what + " has rows of " + std::to_string(t.shape.back()) + " elements, not a multiple of the " +
                         info.name + " block size");
  if (t.nbytes != dtype_bytes(t.dtype, t.numel()) || (t.data == nullptr && t.nbytes > 0))
    return Status::error(what + " " + t.shape_string() + " " + info.name + " has " + std::to_string(t.nbytes) +
                         " bytes of data, expected " + std::to_string(dtype_bytes(t.dtype, t.numel())));
  return check_quant_scales(t).with_context(path);
}

// Splits "blk.12.attn_q.weight" into (12, "attn_q.weight"); nullopt for other names.
std::optional<std::pair<int64_t, std::string>> split_layer_name(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return std::nullopt;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4 || dot - 4 > 9) return std::nullopt;
  int64_t layer = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return std::nullopt;
    layer = layer * 10 + (name[i] - '0');
  }
  return std::make_pair(layer, name.substr(dot + 1));
}

}  // namespace

Status write_gguf(const Checkpoint& checkpoint, const std::string& path, const ProgressCallback& progress) {
  const ModelConfig& c = checkpoint.config;
  if (c.arch != "llama" && c.arch != "qwen2")
    return Status::error(path + ": cannot write architecture '" + c.arch + "' to GGUF; anvil supports: llama, qwen2");
  ANVIL_RETURN_IF_ERROR(check_checkpoint_tensors(checkpoint).with_context("writing " + path));

  // llama.cpp's "llama" graph rotates adjacent pairs and its "qwen2" graph rotates halves.
  const RopeStyle file_style = c.arch == "llama" ? RopeStyle::Interleaved : RopeStyle::NeoX;
  RopeRowOrder qk_order = RopeRowOrder::AsStored;
  if (c.rope_style != file_style)
    qk_order = file_style == RopeStyle::Interleaved ? RopeRowOrder::NeoXToInterleaved : RopeRowOrder::InterleavedToNeoX;

  // Llama 3.1 scaling lives in a tensor of per-frequency divisors in GGUF.
  std::vector<float> rope_freqs;
  if (c.rope_scaling.type == RopeScalingType::Llama3 && !checkpoint.find("rope_freqs.weight")) {
    if (c.arch != "llama")
      return Status::error(path + ": llama3 RoPE scaling cannot be stored for architecture " + c.arch);
    rope_freqs = rope_frequency_divisors(c);
  }

  // Order the tensors: token_embd, blk.0.* ... blk.N.*, output_norm, output, rope_freqs.
  std::vector<PlannedTensor> plan;
  std::list<std::vector<float>> companion_buffers;  // companions converted for writing
  std::map<std::tuple<int, int64_t, int>, const Tensor*> ordered;
  for (const auto& [name, tensor] : checkpoint.tensors) {
    ANVIL_RETURN_IF_ERROR(validate_tensor(path, tensor));
    std::tuple<int, int64_t, int> key;
    if (name == "token_embd.weight") {
      key = {0, 0, 0};
    } else if (name == "output_norm.weight") {
      key = {2, 0, 0};
    } else if (name == "output.weight") {
      key = {3, 0, 0};
    } else if (name == "rope_freqs.weight") {
      if (c.arch != "llama") continue;  // qwen2 has no such tensor; llama.cpp would reject the extra one
      key = {4, 0, 0};
    } else if (auto layer = split_layer_name(name); layer && layer->first < c.n_layers) {
      const auto* it = std::find(std::begin(kLayerTensors), std::end(kLayerTensors), layer->second);
      if (it == std::end(kLayerTensors))
        return Status::error(path + ": tensor " + name + " is not part of a " + c.arch + " model");
      key = {1, layer->first, static_cast<int>(it - std::begin(kLayerTensors))};
    } else {
      return Status::error(path + ": tensor " + name + " is not part of a " + c.arch + " model");
    }
    ordered.emplace(key, &tensor);
  }
  for (const auto& [key, tensor] : ordered) {
    PlannedTensor p{tensor->name, tensor->dtype, tensor->shape, tensor->data, tensor->nbytes};
    const std::string& n = tensor->name;
    const bool is_qk = n.ends_with(".attn_q.weight") || n.ends_with(".attn_q.bias") || n.ends_with(".attn_k.weight") ||
                       n.ends_with(".attn_k.bias");
    if (is_qk && qk_order != RopeRowOrder::AsStored) {
      if (p.shape.size() == 1 && dtype_info(p.dtype).block_elems != 1)
        return Status::error(path + ": tensor " + n + " is a block-quantized vector; cannot reorder its rows");
      p.order = qk_order;
      p.head_dim = c.head_dim;
    }
    const RopeRowOrder order = p.order;
    plan.push_back(std::move(p));
    // Scales and zero points follow their weight, one row per weight row (reordered with it); an
    // input column order is per column, the same for every row.
    for (const Tensor& companion : quant_companion_tensors(*tensor, companion_buffers)) {
      PlannedTensor q{companion.name, companion.dtype, companion.shape, companion.data, companion.nbytes};
      q.order = companion.shape.size() == 2 ? order : RopeRowOrder::AsStored;
      q.head_dim = c.head_dim;
      plan.push_back(std::move(q));
    }
  }
  if (!rope_freqs.empty()) {
    PlannedTensor p{"rope_freqs.weight", DType::F32, {static_cast<int64_t>(rope_freqs.size())},
                    reinterpret_cast<const std::byte*>(rope_freqs.data()), rope_freqs.size() * sizeof(float)};
    plan.push_back(std::move(p));
  }
  uint64_t data_size = 0;
  for (PlannedTensor& p : plan) {
    p.offset = data_size;
    data_size += align_up(p.nbytes);
  }

  // Metadata.
  ANVIL_RETURN_IF_ERROR(check_u32(path, "context_length", c.context_length));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "dim", c.dim));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "hidden_dim", c.hidden_dim));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "n_layers", c.n_layers));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "n_heads", c.n_heads));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "n_kv_heads", c.n_kv_heads));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "head_dim", c.head_dim));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "vocab_size", c.vocab_size));
  ANVIL_RETURN_IF_ERROR(check_u32(path, "sliding_window", c.sliding_window));

  std::map<DType, int64_t> weight_elems;
  bool quantized = false;
  for (const PlannedTensor& p : plan) {
    if (p.shape.size() == 2) {
      int64_t n = 1;
      for (int64_t d : p.shape) n *= d;
      weight_elems[p.dtype] += n;
    }
    quantized |= dtype_is_ggml_block(p.dtype);
  }
  DType main_dtype = DType::F32;
  int64_t most = -1;
  for (const auto& [dtype, n] : weight_elems)
    if (n > most) most = n, main_dtype = dtype;

  HeaderBuilder kv;
  const std::string a = c.arch + ".";
  kv.kv_string("general.architecture", c.arch);
  kv.kv_string("general.name", c.name);
  kv.kv_u32("general.alignment", kAlignment);
  kv.kv_u32("general.file_type", file_type_for(main_dtype));
  if (quantized) kv.kv_u32("general.quantization_version", 2);
  if (const QuantizationInfo& q = checkpoint.quantization; !q.scheme.empty()) {
    ANVIL_RETURN_IF_ERROR(check_u32(path, "quantization group size", q.group_size));
    kv.kv_string("anvil.quantization.scheme", q.scheme);
    kv.kv_string("anvil.quantization.granularity", q.granularity);
    kv.kv_u32("anvil.quantization.group_size", static_cast<uint32_t>(q.group_size));
    kv.kv_bool("anvil.quantization.symmetric", q.symmetric);
    if (q.smoothquant_alpha) kv.kv_f32("anvil.quantization.smoothquant_alpha", static_cast<float>(*q.smoothquant_alpha));
    if (q.act_order) kv.kv_bool("anvil.quantization.act_order", true);
    if (q.dynamic_groups) kv.kv_bool("anvil.quantization.dynamic_groups", true);
  }
  // What the F8_E4M3 weights do to their activations is theirs (QuantScales), recorded once.
  ANVIL_ASSIGN_OR_RETURN(const ActivationQuant activations, recorded_activation_quant(checkpoint));
  if (activations != ActivationQuant::None)
    kv.kv_string("anvil.quantization.activations", activation_quant_name(activations));
  kv.kv_u32(a + "context_length", static_cast<uint32_t>(c.context_length));
  kv.kv_u32(a + "embedding_length", static_cast<uint32_t>(c.dim));
  kv.kv_u32(a + "feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  kv.kv_u32(a + "block_count", static_cast<uint32_t>(c.n_layers));
  kv.kv_u32(a + "attention.head_count", static_cast<uint32_t>(c.n_heads));
  kv.kv_u32(a + "attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  kv.kv_u32(a + "attention.key_length", static_cast<uint32_t>(c.head_dim));
  kv.kv_u32(a + "attention.value_length", static_cast<uint32_t>(c.head_dim));
  kv.kv_f32(a + "attention.layer_norm_rms_epsilon", c.rms_norm_eps);
  kv.kv_f32(a + "rope.freq_base", c.rope_theta);
  kv.kv_u32(a + "rope.dimension_count", static_cast<uint32_t>(c.head_dim));
  kv.kv_u32(a + "vocab_size", static_cast<uint32_t>(c.vocab_size));
  if (c.sliding_window > 0) kv.kv_u32(a + "attention.sliding_window", static_cast<uint32_t>(c.sliding_window));
  if (c.rope_scaling.type == RopeScalingType::Linear) {
    kv.kv_string(a + "rope.scaling.type", "linear");
    kv.kv_f32(a + "rope.scaling.factor", c.rope_scaling.factor);
  }

  const Vocab& v = checkpoint.vocab;
  if (v.empty()) {
    kv.kv_string("tokenizer.ggml.model", "no_vocab");  // llama.cpp's marker for "no tokenizer"
  } else {
    if (v.size() > c.vocab_size)
      return Status::error(path + ": vocab has " + std::to_string(v.size()) + " tokens but the model's vocab_size is " +
                           std::to_string(c.vocab_size));
    if (!v.scores.empty() && v.scores.size() != v.tokens.size())
      return Status::error(path + ": vocab has " + std::to_string(v.scores.size()) + " scores for " +
                           std::to_string(v.tokens.size()) + " tokens");
    if (!v.token_types.empty() && v.token_types.size() != v.tokens.size())
      return Status::error(path + ": vocab has " + std::to_string(v.token_types.size()) + " token types for " +
                           std::to_string(v.tokens.size()) + " tokens");
    // llama.cpp sizes the embedding by the token count, so an embedding padded beyond the
    // tokenizer (Qwen2, ...) gets placeholder tokens, as convert_hf_to_gguf.py adds them.
    std::vector<std::string> tokens = v.tokens;
    std::vector<float> scores = v.scores;
    std::vector<int32_t> token_types = v.token_types;
    for (int64_t id = v.size(); id < c.vocab_size; ++id) {
      tokens.push_back("[PAD" + std::to_string(id) + "]");
      if (!scores.empty()) scores.push_back(-1000.0f);
      if (!token_types.empty()) token_types.push_back(static_cast<int32_t>(TokenType::Unused));
    }
    kv.kv_string("tokenizer.ggml.model", !v.model.empty() ? v.model : (v.merges.empty() ? "llama" : "gpt2"));
    if (!v.pre.empty()) kv.kv_string("tokenizer.ggml.pre", v.pre);
    kv.kv_strings("tokenizer.ggml.tokens", tokens);
    if (!scores.empty()) kv.kv_f32s("tokenizer.ggml.scores", scores);
    if (!token_types.empty()) kv.kv_i32s("tokenizer.ggml.token_type", token_types);
    if (!v.merges.empty()) kv.kv_strings("tokenizer.ggml.merges", v.merges);
    if (v.bos_id >= 0) kv.kv_u32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(v.bos_id));
    if (v.eos_id >= 0) kv.kv_u32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(v.eos_id));
    if (v.unk_id >= 0) kv.kv_u32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(v.unk_id));
    if (v.pad_id >= 0) kv.kv_u32("tokenizer.ggml.padding_token_id", static_cast<uint32_t>(v.pad_id));
    if (v.eot_id >= 0) kv.kv_u32("tokenizer.ggml.eot_token_id", static_cast<uint32_t>(v.eot_id));
    if (v.sep_id >= 0) kv.kv_u32("tokenizer.ggml.seperator_token_id", static_cast<uint32_t>(v.sep_id));  // sic, llama.cpp's key
    kv.kv_bool("tokenizer.ggml.add_bos_token", v.add_bos);
    kv.kv_bool("tokenizer.ggml.add_eos_token", v.add_eos);
    kv.kv_bool("tokenizer.ggml.add_sep_token", v.add_sep);
    kv.kv_bool("tokenizer.ggml.add_space_prefix", v.add_space_prefix);
    if (v.remove_extra_whitespaces) kv.kv_bool("tokenizer.ggml.remove_extra_whitespaces", true);
    if (!v.chat_template.empty()) kv.kv_string("tokenizer.chat_template", v.chat_template);
  }

  HeaderBuilder header;
  header.u32(0x46554747);  // "GGUF"
  header.u32(kVersion);
  header.u64(plan.size());
  header.u64(kv.count());
  header.bytes() += kv.bytes();
  for (const PlannedTensor& p : plan) {
    header.str(p.name);
    header.u32(static_cast<uint32_t>(p.shape.size()));
    for (auto it = p.shape.rbegin(); it != p.shape.rend(); ++it) header.u64(static_cast<uint64_t>(*it));
    header.u32(dtype_info(p.dtype).ggml_type);
    header.u64(p.offset);
  }

  // Stream everything out.
  OutputFile out;
  const std::string tmp_path = path + ".tmp";
  ANVIL_RETURN_IF_ERROR(out.open(tmp_path));
  ANVIL_RETURN_IF_ERROR(out.write(header.bytes().data(), header.bytes().size()));
  const uint64_t data_start = align_up(out.written());
  ANVIL_RETURN_IF_ERROR(out.pad_to(data_start));
  for (const PlannedTensor& p : plan) {
    if (progress) progress(data_start + p.offset, data_start + data_size);
    ANVIL_RETURN_IF_ERROR(out.pad_to(data_start + p.offset));
    if (p.order == RopeRowOrder::AsStored) {
      ANVIL_RETURN_IF_ERROR(out.write(p.data, p.nbytes));
    } else {
      const int64_t rows = p.shape[0];
      const size_t row_bytes = p.nbytes / static_cast<size_t>(rows);
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t src = rope_permuted_source_row(r, p.head_dim, p.order);
        ANVIL_RETURN_IF_ERROR(out.write(p.data + static_cast<size_t>(src) * row_bytes, row_bytes));
      }
    }
  }
  ANVIL_RETURN_IF_ERROR(out.pad_to(data_start + data_size));
  return out.commit(path);
}

}  // namespace anvil
