// The preset table and the deterministic random weights behind dummy:<preset>.
#include "model/presets.h"

#include "core/process_stats.h"
#include "core/weight_memory.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>
#include <thread>

#include "model/rope.h"
#include "model/tensor_layout.h"

namespace anvil {
namespace {

ModelConfig llama_shape(const char* name, int64_t vocab, int64_t dim, int64_t hidden, int64_t layers,
                        int64_t heads, int64_t kv_heads, int64_t context, float theta) {
  ModelConfig c;
  c.arch = "llama";
  c.name = name;
  c.vocab_size = vocab;
  c.dim = dim;
  c.hidden_dim = hidden;
  c.n_layers = layers;
  c.n_heads = heads;
  c.n_kv_heads = kv_heads;
  c.head_dim = dim / heads;
  c.context_length = context;
  c.rms_norm_eps = 1e-5f;
  c.rope_theta = theta;
  c.rope_style = RopeStyle::Interleaved;
  c.bos_token_id = 1;
  c.eos_token_id = 2;
  return c;
}

ModelConfig with_llama3_rope(ModelConfig c, float factor) {
  c.rope_scaling = {RopeScalingType::Llama3, factor, 1.0f, 4.0f, 8192};
  return c;
}
ModelConfig tied(ModelConfig c) {
  c.tied_embeddings = true;
  return c;
}
ModelConfig with_window(ModelConfig c, int64_t window) {
  c.sliding_window = window;
  return c;
}
ModelConfig qwen2_shape(const char* name, int64_t vocab, int64_t dim, int64_t hidden, int64_t layers,
                        int64_t heads, int64_t kv_heads, int64_t context) {
  ModelConfig c = llama_shape(name, vocab, dim, hidden, layers, heads, kv_heads, context, 1e6f);
  c.arch = "qwen2";
  c.rms_norm_eps = 1e-6f;
  c.rope_style = RopeStyle::NeoX;
  c.attn_qkv_bias = true;
  c.tied_embeddings = true;
  return c;
}

// Real shapes from each model's published config.json.
const std::vector<ModelPreset> kPresets = {
    {"llama-2-7b", "Llama 2 7B", llama_shape("llama-2-7b", 32000, 4096, 11008, 32, 32, 32, 4096, 1e4f), DType::BF16},
    {"llama-2-13b", "Llama 2 13B", llama_shape("llama-2-13b", 32000, 5120, 13824, 40, 40, 40, 4096, 1e4f), DType::BF16},
    {"llama-2-70b", "Llama 2 70B (GQA)", llama_shape("llama-2-70b", 32000, 8192, 28672, 80, 64, 8, 4096, 1e4f), DType::BF16},
    {"llama-3.1-8b", "Llama 3.1 8B",
     with_llama3_rope(llama_shape("llama-3.1-8b", 128256, 4096, 14336, 32, 32, 8, 131072, 5e5f), 8.0f), DType::BF16},
    {"llama-3.1-70b", "Llama 3.1 70B",
     with_llama3_rope(llama_shape("llama-3.1-70b", 128256, 8192, 28672, 80, 64, 8, 131072, 5e5f), 8.0f), DType::BF16},
    {"llama-3.1-405b", "Llama 3.1 405B",
     with_llama3_rope(llama_shape("llama-3.1-405b", 128256, 16384, 53248, 126, 128, 8, 131072, 5e5f), 8.0f), DType::BF16},
    {"llama-3.2-1b", "Llama 3.2 1B (tied embeddings)",
     tied(with_llama3_rope(llama_shape("llama-3.2-1b", 128256, 2048, 8192, 16, 32, 8, 131072, 5e5f), 32.0f)), DType::BF16},
    {"tinyllama-1.1b", "TinyLlama 1.1B", llama_shape("tinyllama-1.1b", 32000, 2048, 5632, 22, 32, 4, 2048, 1e4f), DType::BF16},
    {"mistral-7b", "Mistral 7B v0.1 (sliding window 4096)",
     with_window(llama_shape("mistral-7b", 32000, 4096, 14336, 32, 32, 8, 32768, 1e4f), 4096), DType::BF16},
    {"qwen2-0.5b", "Qwen2 0.5B (QKV bias, tied)", qwen2_shape("qwen2-0.5b", 151936, 896, 4864, 24, 14, 2, 32768), DType::BF16},
    // Small presets for tests and demos: same graphs, tiny shapes.
    {"tiny-llama", "test: 2-layer Llama, GQA", llama_shape("tiny-llama", 512, 64, 160, 2, 4, 2, 256, 1e4f), DType::F32},
    {"tiny-llama3", "test: Llama 3.1-style rope scaling, tied",
     tied([] {
       ModelConfig c = llama_shape("tiny-llama3", 512, 64, 160, 2, 4, 2, 256, 5e5f);
       c.rope_scaling = {RopeScalingType::Llama3, 8.0f, 1.0f, 4.0f, 32};
       return c;
     }()), DType::F32},
    {"tiny-mistral", "test: sliding window 16", with_window(llama_shape("tiny-mistral", 512, 64, 160, 2, 4, 2, 256, 1e4f), 16), DType::F32},
    {"tiny-qwen2", "test: QKV bias, NeoX RoPE, tied", qwen2_shape("tiny-qwen2", 512, 64, 160, 2, 4, 2, 256), DType::F32},
    {"small-llama", "demo: 8-layer Llama, 34M parameters",
     llama_shape("small-llama", 8192, 512, 1536, 8, 8, 4, 2048, 1e4f), DType::F32},
};

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [-a, a) with a = std * sqrt(3), so the values have the requested std.
void fill_uniform(float* out, int64_t n, float std, uint64_t seed) {
  uint64_t state = seed;
  const float a = std * std::sqrt(3.0f);
  for (int64_t i = 0; i < n; ++i) {
    const uint64_t r = splitmix64(state);
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    out[i] = (2.0f * u - 1.0f) * a;
  }
}

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  float std;      // 0: a norm weight (ones, with small deterministic noise)
  bool keep_f32;  // norms, biases, rope tables
};

std::vector<TensorPlan> plan_tensors(const ModelConfig& c) {
  std::vector<TensorPlan> plan;
  for (RequiredTensor& t : required_tensors(c)) {
    const std::string& name = t.name;
    const bool is_vector = t.shape.size() == 1;
    // Matrices: std 1/sqrt(in_features) keeps activations at unit scale through every layer.
    float std = is_vector ? 0.0f : 1.0f / std::sqrt(static_cast<float>(t.shape.back()));
    if (name == "token_embd.weight" && c.tied_embeddings) {
      // Small embeddings (as in trained models) keep the residual stream from being dominated
      // by the current token, which with tied embeddings would make every model repeat its
      // input. Tied, they are also the output layer: 2/sqrt(dim) gives logits with std ~2.
      std *= 2.0f;
    } else if (name == "output.weight") {
      std *= 2.0f;  // logits with std ~2: peaked enough that greedy text is not uniform noise
    } else if (name.size() > 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
      std = 0.02f;
    }
    // Norms (std 0 here) are ones with small noise; norms and biases stay F32 as in GGUF files.
    plan.push_back({std::move(t.name), std::move(t.shape), std, is_vector});
  }
  return plan;
}

}  // namespace

const std::vector<ModelPreset>& model_presets() { return kPresets; }

const ModelPreset* find_model_preset(const std::string& name) {
  for (const ModelPreset& p : kPresets)
    if (name == p.name) return &p;
  return nullptr;
}

Vocab synthetic_byte_vocab(int64_t vocab_size) {
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  auto add = [&](std::string piece, TokenType type) {
    v.tokens.push_back(std::move(piece));
    v.scores.push_back(0.0f);
    v.token_types.push_back(static_cast<int32_t>(type));
  };
  add("<unk>", TokenType::Unknown);
  add("<s>", TokenType::Control);
  add("</s>", TokenType::Control);
  for (int b = 0; b < 256; ++b) add(fmt::format("<0x{:02X}>", b), TokenType::Byte);
  add("\xE2\x96\x81", TokenType::Normal);  // "▁": SentencePiece's space
  // The rest are pseudo-words ("▁ka", "▁tobe", ...) so a random model's output is visible text.
  // Index k is written in bijective base 70 over consonant-vowel syllables, so pieces are unique.
  static constexpr char kConsonants[] = "bdfgklmnprstvz", kVowels[] = "aeiou";
  constexpr int64_t kSyllables = 14 * 5;
  for (int64_t k = 0; v.size() < vocab_size; ++k) {
    std::string word;
    for (int64_t n = k + 1; n > 0; n = (n - 1) / kSyllables) {
      const int64_t digit = (n - 1) % kSyllables;
      word.insert(0, {kConsonants[digit / 5], kVowels[digit % 5]});
    }
    add("\xE2\x96\x81" + word, TokenType::Normal);
  }
  v.tokens.resize(vocab_size);
  v.scores.resize(vocab_size);
  v.token_types.resize(vocab_size);
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  v.add_bos = true;
  v.add_space_prefix = false;
  return v;
}

uint64_t dummy_weight_bytes(const ModelConfig& config, DType dtype) {
  uint64_t bytes = 0;
  for (const TensorPlan& t : plan_tensors(config)) {
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    bytes += t.keep_f32 ? n * 4 : dtype_bytes(dtype, n);
  }
  return bytes;
}

Result<Checkpoint> create_dummy_checkpoint(const std::string& spec, const ProgressCallback& progress) {
  std::string rest = spec.substr(spec.find(':') + 1);
  std::string preset_name = rest, dtype_name;
  if (size_t colon = rest.find(':'); colon != std::string::npos) {
    preset_name = rest.substr(0, colon);
    dtype_name = rest.substr(colon + 1);
  }
  const ModelPreset* preset = find_model_preset(preset_name);
  if (!preset) {
    std::string names;
    for (const ModelPreset& p : kPresets) names += (names.empty() ? "" : ", ") + std::string(p.name);
    return Status::error(fmt::format("{}: unknown preset '{}'; presets: {}", spec, preset_name, names));
  }
  DType dtype = preset->default_dtype;
  if (!dtype_name.empty()) {
    std::optional<DType> parsed = dtype_from_name(dtype_name);
    if (parsed && dtype_has_external_scales(*parsed))
      return Status::error(fmt::format("{}: {} weights need scales; make them with `anvil quantize --model dummy:{} "
                                       "--scheme fp8|w8a8|w4a16-rtn --out FILE.gguf`",
                                       spec, dtype_info(*parsed).name, preset_name));
    if (!parsed || !dtype_info(*parsed).from_float)
      return Status::error(fmt::format("{}: unknown weight dtype '{}'; use f32, f16, bf16, q8_0, q4_0, q4_k or q6_k",
                                       spec, dtype_name));
    dtype = *parsed;
  }
  const ModelConfig& config = preset->config;
  for (const TensorPlan& t : plan_tensors(config))
    if (!t.keep_f32 && t.shape.back() % dtype_info(dtype).block_elems != 0)
      return Status::error(fmt::format("{}: {} has rows of {} elements, not a multiple of {}'s block of {}", spec,
                                       t.name, t.shape.back(), dtype_name, dtype_info(dtype).block_elems));

  const uint64_t needed = dummy_weight_bytes(config, dtype);
  const uint64_t available = static_cast<uint64_t>(mem_available_bytes().value_or(INT64_MAX));
  if (needed > available)
    return Status::error(fmt::format("{}: random weights need {:.1f} GiB at {}, but only {:.1f} GiB of memory is "
                                     "available; try a smaller preset or a quantized dtype (e.g. {}:q4_0)",
                                     spec, needed / 1073741824.0, dtype_name.empty() ? dtype_info(dtype).name : dtype_name,
                                     available / 1073741824.0, spec.substr(0, spec.find(':', 6))));

  Checkpoint checkpoint;
  checkpoint.config = config;
  checkpoint.vocab = synthetic_byte_vocab(config.vocab_size);
  checkpoint.source = spec;
  const uint64_t model_seed = fnv1a(preset->name);
  uint64_t bytes_done = 0;
  for (const TensorPlan& t : plan_tensors(config)) {
    Tensor tensor;
    tensor.name = t.name;
    tensor.shape = t.shape;
    tensor.dtype = t.keep_f32 ? DType::F32 : dtype;
    const int64_t rows = tensor.rows(), cols = tensor.cols();
    tensor.nbytes = dtype_bytes(tensor.dtype, tensor.numel());
    std::shared_ptr<std::byte[]> buffer = allocate_weight_memory(tensor.nbytes);
    const DTypeInfo& info = dtype_info(tensor.dtype);
    const uint64_t tensor_seed = model_seed ^ fnv1a(t.name);
    // Rows are generated independently from (tensor, row) seeds so the result does not depend
    // on the thread count; two threads halve the time on large presets.
    auto fill_rows = [&](int64_t begin, int64_t end) {
      std::vector<float> row(cols);
      for (int64_t r = begin; r < end; ++r) {
        if (t.std == 0.0f) {
          fill_uniform(row.data(), cols, 0.05f, tensor_seed + r);
          for (float& x : row) x += 1.0f;
        } else {
          fill_uniform(row.data(), cols, t.std, tensor_seed + static_cast<uint64_t>(r) * 0x9E3779B97F4A7C15ull);
        }
        info.from_float(row.data(), buffer.get() + static_cast<size_t>(r) * tensor.row_bytes(), cols);
      }
    };
    const int64_t half = rows / 2;
    if (rows >= 64) {
      std::thread other(fill_rows, half, rows);
      fill_rows(0, half);
      other.join();
    } else {
      fill_rows(0, rows);
    }
    tensor.data = buffer.get();
    checkpoint.storage.push_back(std::shared_ptr<const void>(buffer, buffer.get()));
    bytes_done += tensor.nbytes;
    checkpoint.tensors.emplace(t.name, std::move(tensor));
    if (progress) progress(bytes_done, needed);
  }
  return checkpoint;
}

}  // namespace anvil
