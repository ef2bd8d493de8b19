// Tests for Hugging Face directories: config.json parsing, loading (single and sharded), writing.
#include "formats/hf_checkpoint.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <list>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "formats/rope_permute.h"
#include "formats/safetensors.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string fresh_test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(ANVIL_TEST_TMP) / "hf_checkpoint" / (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A tiny llama: dim 8, 2 heads of 4 (1 kv head), FFN 12, 2 layers, vocab 16.
json tiny_llama_config() {
  return json{{"architectures", {"LlamaForCausalLM"}},
              {"model_type", "llama"},
              {"hidden_size", 8},
              {"intermediate_size", 12},
              {"num_hidden_layers", 2},
              {"num_attention_heads", 2},
              {"num_key_value_heads", 1},
              {"max_position_embeddings", 64},
              {"rms_norm_eps", 1e-5},
              {"rope_theta", 10000.0},
              {"rope_scaling", nullptr},
              {"tie_word_embeddings", false},
              {"vocab_size", 16},
              {"bos_token_id", 1},
              {"eos_token_id", 2},
              {"torch_dtype", "bfloat16"}};
}

// Owned tensors under HF names, filled with distinct values (tensor index * 1000 + element).
class Weights {
 public:
  void add(const std::string& name, std::vector<int64_t> shape, DType dtype = DType::F32) {
    Tensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    std::vector<float> values(static_cast<size_t>(t.numel()));
    for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(tensors_.size() * 1000 + i);
    t.nbytes = dtype_bytes(dtype, t.numel());
    buffers_.emplace_back(t.nbytes);
    dtype_info(dtype).from_float(values.data(), buffers_.back().data(), t.numel());
    t.data = buffers_.back().data();
    tensors_[name] = t;
  }
  void remove(const std::string& name) { tensors_.erase(name); }
  const Tensor& at(const std::string& name) const { return tensors_.at(name); }
  std::vector<Tensor> all() const {
    std::vector<Tensor> out;
    for (const auto& [name, t] : tensors_) out.push_back(t);
    return out;
  }
  void write(const std::string& path) const { ASSERT_TRUE(write_safetensors(path, all(), {{"format", "pt"}}).is_ok()); }

 private:
  std::list<std::vector<std::byte>> buffers_;
  std::map<std::string, Tensor> tensors_;
};

// The weights a config asks for; layer 0's up_proj is F16 and the final norm BF16 to check dtypes pass through.
Weights tiny_weights(const json& config, bool lm_head = true, bool qkv_bias = false) {
  const int64_t dim = config["hidden_size"], ff = config["intermediate_size"], vocab = config["vocab_size"];
  const int64_t heads = config["num_attention_heads"], kv_heads = config["num_key_value_heads"];
  const int64_t head_dim = config.contains("head_dim") ? config["head_dim"].get<int64_t>() : dim / heads;
  Weights w;
  w.add("model.embed_tokens.weight", {vocab, dim});
  w.add("model.norm.weight", {dim}, DType::BF16);
  if (lm_head) w.add("lm_head.weight", {vocab, dim});
  for (int64_t l = 0; l < config["num_hidden_layers"].get<int64_t>(); ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    w.add(p + "input_layernorm.weight", {dim});
    w.add(p + "self_attn.q_proj.weight", {heads * head_dim, dim});
    w.add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, dim});
    w.add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, dim});
    if (qkv_bias) {
      w.add(p + "self_attn.q_proj.bias", {heads * head_dim});
      w.add(p + "self_attn.k_proj.bias", {kv_heads * head_dim});
      w.add(p + "self_attn.v_proj.bias", {kv_heads * head_dim});
    }
    w.add(p + "self_attn.o_proj.weight", {dim, heads * head_dim});
    w.add(p + "post_attention_layernorm.weight", {dim});
    w.add(p + "mlp.gate_proj.weight", {ff, dim});
    w.add(p + "mlp.up_proj.weight", {ff, dim}, l == 0 ? DType::F16 : DType::F32);
    w.add(p + "mlp.down_proj.weight", {dim, ff});
    w.add(p + "self_attn.rotary_emb.inv_freq", {head_dim / 2});  // old checkpoints carry it; ignored
  }
  return w;
}

void write_model_dir(const std::string& dir, const json& config, const Weights& weights) {
  fs::create_directories(dir);
  write_text(dir + "/config.json", config.dump(2));
  weights.write(dir + "/model.safetensors");
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype == b.dtype && a.shape == b.shape && a.nbytes == b.nbytes && std::memcmp(a.data, b.data, a.nbytes) == 0;
}

// Expects load_hf_checkpoint(dir) to fail with exactly `message` (or containing it, when partial).
void expect_load_error(const std::string& dir, const std::string& message, bool partial = false) {
  auto checkpoint = load_hf_checkpoint(dir);
  ASSERT_FALSE(checkpoint.is_ok());
  if (partial) {
    EXPECT_NE(checkpoint.status().message().find(message), std::string::npos) << checkpoint.status().message();
    EXPECT_NE(checkpoint.status().message().find(dir), std::string::npos) << checkpoint.status().message();
  } else {
    EXPECT_EQ(checkpoint.status().message(), message);
  }
}

// ---- config.json ----

TEST(HfConfig, ParsesLlama31WithRopeScaling) {
  json config = tiny_llama_config();
  config["rope_theta"] = 500000.0;
  config["max_position_embeddings"] = 131072;
  config["rope_scaling"] = {{"factor", 8.0},
                            {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0},
                            {"original_max_position_embeddings", 8192},
                            {"rope_type", "llama3"}};
  config["bos_token_id"] = 128000;
  config["eos_token_id"] = {128001, 128008, 128009};
  auto parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  const ModelConfig& c = *parsed;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 12);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, 16);
  EXPECT_EQ(c.context_length, 131072);
  EXPECT_FLOAT_EQ(c.rms_norm_eps, 1e-5f);
  EXPECT_FLOAT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::NeoX);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::Llama3);
  EXPECT_FLOAT_EQ(c.rope_scaling.factor, 8.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.low_freq_factor, 1.0f);
  EXPECT_FLOAT_EQ(c.rope_scaling.high_freq_factor, 4.0f);
  EXPECT_EQ(c.rope_scaling.original_context, 8192);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_FALSE(c.attn_qkv_bias);
  EXPECT_EQ(c.bos_token_id, 128000);
  EXPECT_EQ(c.eos_token_id, 128001);
}

TEST(HfConfig, MistralSlidingWindow) {
  json config = tiny_llama_config();
  config["model_type"] = "mistral";
  config["sliding_window"] = 4096;
  auto parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  EXPECT_EQ(parsed->arch, "llama");
  EXPECT_EQ(parsed->sliding_window, 4096);

  config["sliding_window"] = nullptr;  // Mistral v0.2+
  parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(parsed->sliding_window, 0);

  // A llama config's sliding_window (there is none in HF's llama) is ignored.
  config["model_type"] = "llama";
  config["sliding_window"] = 4096;
  parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(parsed->sliding_window, 0);
}

TEST(HfConfig, Qwen2SlidingWindowOnlyWhenEnabled) {
  json config = tiny_llama_config();
  config["model_type"] = "qwen2";
  config["sliding_window"] = 32768;
  config["use_sliding_window"] = false;
  config["tie_word_embeddings"] = true;
  config["eos_token_id"] = 151643;
  auto parsed = parse_hf_config(config.dump(), "q/config.json");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  EXPECT_EQ(parsed->arch, "qwen2");
  EXPECT_EQ(parsed->sliding_window, 0);
  EXPECT_TRUE(parsed->tied_embeddings);
  EXPECT_EQ(parsed->eos_token_id, 151643);

  config["use_sliding_window"] = true;
  parsed = parse_hf_config(config.dump(), "q/config.json");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(parsed->sliding_window, 32768);
}

TEST(HfConfig, DefaultsExplicitHeadDimAndLinearScaling) {
  json config = tiny_llama_config();
  config.erase("num_key_value_heads");
  config.erase("rope_theta");
  config.erase("tie_word_embeddings");
  config.erase("bos_token_id");
  config["eos_token_id"] = nullptr;
  config["head_dim"] = 6;  // not hidden_size / heads
  config["rope_scaling"] = {{"type", "linear"}, {"factor", 2.0}};
  auto parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  EXPECT_EQ(parsed->n_kv_heads, 2);
  EXPECT_EQ(parsed->head_dim, 6);
  EXPECT_FLOAT_EQ(parsed->rope_theta, 10000.0f);
  EXPECT_FALSE(parsed->tied_embeddings);
  EXPECT_EQ(parsed->bos_token_id, -1);
  EXPECT_EQ(parsed->eos_token_id, -1);
  EXPECT_EQ(parsed->rope_scaling.type, RopeScalingType::Linear);
  EXPECT_FLOAT_EQ(parsed->rope_scaling.factor, 2.0f);

  config["rope_scaling"] = {{"rope_type", "default"}};
  parsed = parse_hf_config(config.dump(), "m/config.json");
  ASSERT_TRUE(parsed.is_ok());
  EXPECT_EQ(parsed->rope_scaling.type, RopeScalingType::None);
}

TEST(HfConfig, ErrorsNameTheFileAndTheProblem) {
  const std::string path = "models/x/config.json";
  struct Case {
    std::function<void(json&)> mutate;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](json& c) { c["model_type"] = "gpt_neox"; },
       path + ": unknown model_type 'gpt_neox'; anvil supports: llama, mistral, qwen2"},
      {[](json& c) { c.erase("model_type"); }, path + ": missing field 'model_type'"},
      {[](json& c) { c.erase("hidden_size"); }, path + ": missing field 'hidden_size'"},
      {[](json& c) { c.erase("intermediate_size"); }, path + ": missing field 'intermediate_size'"},
      {[](json& c) { c.erase("num_hidden_layers"); }, path + ": missing field 'num_hidden_layers'"},
      {[](json& c) { c.erase("num_attention_heads"); }, path + ": missing field 'num_attention_heads'"},
      {[](json& c) { c.erase("vocab_size"); }, path + ": missing field 'vocab_size'"},
      {[](json& c) { c.erase("max_position_embeddings"); }, path + ": missing field 'max_position_embeddings'"},
      {[](json& c) { c.erase("rms_norm_eps"); }, path + ": missing field 'rms_norm_eps'"},
      {[](json& c) { c["hidden_size"] = "4096"; },
       path + ": field 'hidden_size' must be an integer, got string \"4096\""},
      {[](json& c) { c["hidden_size"] = 8.5; }, path + ": field 'hidden_size' must be an integer, got number 8.5"},
      {[](json& c) { c["num_hidden_layers"] = -2; },
       path + ": field 'num_hidden_layers' must be a positive integer below 2^31, got number -2"},
      {[](json& c) { c["vocab_size"] = 1ull << 40; },
       path + ": field 'vocab_size' must be a positive integer below 2^31, got number 1099511627776"},
      {[](json& c) { c["rms_norm_eps"] = "tiny"; }, path + ": field 'rms_norm_eps' must be a number, got string \"tiny\""},
      {[](json& c) { c["tie_word_embeddings"] = 1; },
       path + ": field 'tie_word_embeddings' must be true or false, got number 1"},
      {[](json& c) { c["model_type"] = 7; }, path + ": field 'model_type' must be a string, got number 7"},
      {[](json& c) { c["eos_token_id"] = "</s>"; },
       path + ": field 'eos_token_id' must be a token id (or a list of them), got string \"</s>\""},
      {[](json& c) { c["num_key_value_heads"] = 3; },
       path + ": num_attention_heads 2 is not a multiple of num_key_value_heads 3"},
      {[](json& c) { c["head_dim"] = 5; }, path + ": head_dim 5 is odd; RoPE needs pairs"},
      {[](json& c) { c["hidden_size"] = 9; },
       path + ": hidden_size 9 is not a multiple of num_attention_heads 2 (and there is no head_dim)"},
      {[](json& c) { c["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}}; },
       path + ": rope_scaling type 'yarn' is not supported; anvil supports: linear, llama3"},
      {[](json& c) { c["rope_scaling"] = {{"factor", 4.0}}; },
       path + ": rope_scaling has neither 'rope_type' nor 'type'"},
      {[](json& c) { c["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}}; },
       path + ": missing field 'rope_scaling.low_freq_factor'"},
      {[](json& c) { c["rope_scaling"] = 2; }, path + ": field 'rope_scaling' must be an object or null, got number 2"},
      {[](json& c) { c = json::array({1, 2}); }, path + ": not a JSON object"},
  };
  for (const Case& c : cases) {
    json config = tiny_llama_config();
    c.mutate(config);
    auto parsed = parse_hf_config(config.dump(), path);
    ASSERT_FALSE(parsed.is_ok()) << c.message;
    EXPECT_EQ(parsed.status().message(), c.message);
  }
  auto parsed = parse_hf_config("{\"model_type\": \"llama\",", path);
  ASSERT_FALSE(parsed.is_ok());
  EXPECT_EQ(parsed.status().message().rfind(path + ": not valid JSON (", 0), 0u) << parsed.status().message();
  parsed = parse_hf_config("{\"hidden_size\": " + std::string(100000, '[') + std::string(100000, ']') + "}", path);
  ASSERT_FALSE(parsed.is_ok());
  EXPECT_EQ(parsed.status().message(), path + ": JSON is nested deeper than 64 levels");
}

// ---- loading ----

TEST(HfCheckpoint, LoadsLlamaDirectory) {
  const std::string dir = fresh_test_dir() + "/TinyLlama-test";
  const json config = tiny_llama_config();
  const Weights weights = tiny_weights(config);
  write_model_dir(dir, config, weights);
  write_text(dir + "/tokenizer_config.json", R"({"bos_token": "<s>", "chat_template": "{{ messages }}"})");

  auto loaded = load_hf_checkpoint(dir + "/");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  const Checkpoint& ckpt = *loaded;
  EXPECT_EQ(ckpt.config.name, "TinyLlama-test");
  EXPECT_EQ(ckpt.source, dir + "/");
  EXPECT_EQ(ckpt.config.arch, "llama");
  EXPECT_EQ(ckpt.config.rope_style, RopeStyle::NeoX);
  EXPECT_FALSE(ckpt.config.tied_embeddings);
  EXPECT_FALSE(ckpt.config.attn_qkv_bias);
  EXPECT_EQ(ckpt.vocab.chat_template, "{{ messages }}");
  EXPECT_TRUE(ckpt.vocab.empty());
  EXPECT_FALSE(ckpt.storage.empty());
  EXPECT_EQ(ckpt.tensors.size(), 3u + 2u * 9u);  // no inv_freq

  const std::map<std::string, std::string> names = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.1.attn_norm.weight", "model.layers.1.input_layernorm.weight"},
      {"blk.1.attn_q.weight", "model.layers.1.self_attn.q_proj.weight"},
      {"blk.1.attn_k.weight", "model.layers.1.self_attn.k_proj.weight"},
      {"blk.1.attn_v.weight", "model.layers.1.self_attn.v_proj.weight"},
      {"blk.1.attn_output.weight", "model.layers.1.self_attn.o_proj.weight"},
      {"blk.1.ffn_norm.weight", "model.layers.1.post_attention_layernorm.weight"},
      {"blk.0.ffn_gate.weight", "model.layers.0.mlp.gate_proj.weight"},
      {"blk.0.ffn_up.weight", "model.layers.0.mlp.up_proj.weight"},
      {"blk.0.ffn_down.weight", "model.layers.0.mlp.down_proj.weight"},
  };
  for (const auto& [canonical, hf] : names) {
    SCOPED_TRACE(canonical);
    const Tensor* t = ckpt.find(canonical);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->name, canonical);
    EXPECT_TRUE(same_bytes(*t, weights.at(hf)));  // q/k rows as stored: no permutation on load
    EXPECT_EQ(hf_tensor_name(canonical), hf);
    EXPECT_EQ(canonical_tensor_name(hf), canonical);
  }
  EXPECT_EQ(ckpt.find("blk.0.ffn_up.weight")->dtype, DType::F16);
  EXPECT_EQ(ckpt.find("output_norm.weight")->dtype, DType::BF16);
  EXPECT_EQ(canonical_tensor_name("model.layers.0.self_attn.rotary_emb.inv_freq"), "");
  EXPECT_EQ(hf_tensor_name("blk.x.attn_q.weight"), "");
  EXPECT_TRUE(is_hf_checkpoint_dir(dir));
  EXPECT_FALSE(is_hf_checkpoint_dir(dir + "/model.safetensors"));
}

TEST(HfCheckpoint, TiedEmbeddings) {
  const std::string root = fresh_test_dir();
  json config = tiny_llama_config();
  write_model_dir(root + "/no_lm_head", config, tiny_weights(config, /*lm_head=*/false));
  auto loaded = load_hf_checkpoint(root + "/no_lm_head");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_TRUE(loaded->config.tied_embeddings);
  EXPECT_EQ(loaded->find("output.weight"), nullptr);

  config["tie_word_embeddings"] = true;  // a stored lm_head copy is ignored
  write_model_dir(root + "/tied_copy", config, tiny_weights(config, /*lm_head=*/true));
  loaded = load_hf_checkpoint(root + "/tied_copy");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_TRUE(loaded->config.tied_embeddings);
  EXPECT_EQ(loaded->find("output.weight"), nullptr);
}

TEST(HfCheckpoint, Qwen2Biases) {
  const std::string dir = fresh_test_dir() + "/qwen";
  json config = tiny_llama_config();
  config["model_type"] = "qwen2";
  const Weights weights = tiny_weights(config, true, /*qkv_bias=*/true);
  write_model_dir(dir, config, weights);
  auto loaded = load_hf_checkpoint(dir);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_EQ(loaded->config.arch, "qwen2");
  EXPECT_TRUE(loaded->config.attn_qkv_bias);
  for (const char* name : {"attn_q.bias", "attn_k.bias", "attn_v.bias"}) {
    const Tensor* bias = loaded->find(std::string("blk.1.") + name);
    ASSERT_NE(bias, nullptr) << name;
    EXPECT_EQ(bias->shape.size(), 1u);
  }
  EXPECT_TRUE(same_bytes(*loaded->find("blk.1.attn_k.bias"), weights.at("model.layers.1.self_attn.k_proj.bias")));

  // One layer missing its k bias is reported, not skipped.
  Weights partial = tiny_weights(config, true, true);
  partial.remove("model.layers.1.self_attn.k_proj.bias");
  write_model_dir(dir, config, partial);
  expect_load_error(dir, dir + ": missing tensor model.layers.1.self_attn.k_proj.bias");
}

TEST(HfCheckpoint, LoadsShardedIndex) {
  const std::string dir = fresh_test_dir() + "/sharded";
  fs::create_directories(dir);
  const json config = tiny_llama_config();
  write_text(dir + "/config.json", config.dump());
  const Weights weights = tiny_weights(config);
  std::vector<Tensor> shard1, shard2;
  json weight_map = json::object();
  for (const Tensor& t : weights.all()) {
    const bool first = t.name.find("layers.1.") == std::string::npos;
    (first ? shard1 : shard2).push_back(t);
    weight_map[t.name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  ASSERT_TRUE(write_safetensors(dir + "/model-00001-of-00002.safetensors", shard1, {{"format", "pt"}}).is_ok());
  ASSERT_TRUE(write_safetensors(dir + "/model-00002-of-00002.safetensors", shard2, {{"format", "pt"}}).is_ok());
  const json index = {{"metadata", {{"total_size", 1234}}}, {"weight_map", weight_map}};
  write_text(dir + "/model.safetensors.index.json", index.dump(2));

  auto loaded = load_hf_checkpoint(dir);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_EQ(loaded->storage.size(), 2u);
  EXPECT_TRUE(same_bytes(*loaded->find("blk.0.attn_q.weight"), weights.at("model.layers.0.self_attn.q_proj.weight")));
  EXPECT_TRUE(same_bytes(*loaded->find("blk.1.ffn_down.weight"), weights.at("model.layers.1.mlp.down_proj.weight")));

  // The index points a tensor at the wrong shard.
  json wrong = index;
  wrong["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
  write_text(dir + "/model.safetensors.index.json", wrong.dump());
  expect_load_error(dir,
                    dir + "/model-00002-of-00002.safetensors: no tensor model.norm.weight, which "
                          "model.safetensors.index.json places in this shard");

  // A shard outside the directory is refused; a missing shard is reported by path.
  wrong = index;
  wrong["weight_map"]["model.norm.weight"] = "../elsewhere.safetensors";
  write_text(dir + "/model.safetensors.index.json", wrong.dump());
  expect_load_error(dir, "which is not a plain file name", true);
  wrong = index;
  wrong["weight_map"]["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_text(dir + "/model.safetensors.index.json", wrong.dump());
  expect_load_error(dir, dir + "/model-00003-of-00002.safetensors: cannot open", true);

  write_text(dir + "/model.safetensors.index.json", R"({"metadata": {}})");
  expect_load_error(dir, dir + "/model.safetensors.index.json: missing object 'weight_map'");
  write_text(dir + "/model.safetensors.index.json", R"({"weight_map": )");
  expect_load_error(dir, dir + "/model.safetensors.index.json: not valid JSON", true);
}

TEST(HfCheckpoint, ReportsMissingAndMisshapenTensors) {
  const std::string dir = fresh_test_dir() + "/bad";
  json config = tiny_llama_config();
  config["num_hidden_layers"] = 4;
  Weights weights = tiny_weights(config);
  weights.remove("model.layers.3.mlp.up_proj.weight");
  write_model_dir(dir, config, weights);
  expect_load_error(dir, dir + ": missing tensor model.layers.3.mlp.up_proj.weight");

  weights = tiny_weights(config);
  weights.add("model.layers.2.self_attn.k_proj.weight", {8, 8});  // 2 kv heads' worth instead of 1
  write_model_dir(dir, config, weights);
  expect_load_error(dir, dir + ": tensor model.layers.2.self_attn.k_proj.weight has shape (8, 8), expected (4, 8)");

  weights = tiny_weights(config);
  weights.add("model.norm.weight", {8, 1});
  write_model_dir(dir, config, weights);
  expect_load_error(dir, dir + ": tensor model.norm.weight has shape (8, 1), expected (8,)");

  weights = tiny_weights(config);
  weights.add("model.layers.0.self_attn.o_proj.bias", {8});
  write_model_dir(dir, config, weights);
  expect_load_error(dir, dir + ": tensor model.layers.0.self_attn.o_proj.bias is a bias anvil's llama has no place for");
}

TEST(HfCheckpoint, ReportsUnsupportedDtype) {
  // F8 weights cannot come from write_safetensors, so this file is assembled by hand.
  const std::string dir = fresh_test_dir() + "/fp8";
  json config = tiny_llama_config();
  Weights weights = tiny_weights(config);
  weights.remove("model.embed_tokens.weight");
  write_model_dir(dir, config, weights);
  auto original = SafetensorsFile::open(dir + "/model.safetensors");
  ASSERT_TRUE(original.is_ok());
  json header = json::object();
  std::string data;
  for (const SafetensorsEntry& e : (*original)->entries()) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {data.size(), data.size() + e.nbytes}}};
    data.append(reinterpret_cast<const char*>(e.data), e.nbytes);
  }
  header["model.embed_tokens.weight"] = {{"dtype", "F8_E4M3"}, {"shape", {16, 8}}, {"data_offsets", {data.size(), data.size() + 128}}};
  data.append(128, '\x38');
  std::string text = header.dump();
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  original = Status::error("closed");
  write_text(dir + "/model.safetensors", bytes + text + data);
  expect_load_error(dir, dir + "/model.safetensors: tensor model.embed_tokens.weight has dtype F8_E4M3, which anvil cannot load yet");
}

TEST(HfCheckpoint, DirectoryErrors) {
  const std::string root = fresh_test_dir();
  expect_load_error(root + "/nope", root + "/nope: no such directory");

  write_text(root + "/file", "x");
  expect_load_error(root + "/file", root + "/file: not a directory (expected a Hugging Face model directory with config.json)");

  fs::create_directories(root + "/empty");
  expect_load_error(root + "/empty", root + "/empty: no config.json (not a Hugging Face model directory?)");

  const json config = tiny_llama_config();
  fs::create_directories(root + "/no_weights");
  write_text(root + "/no_weights/config.json", config.dump());
  expect_load_error(root + "/no_weights", root + "/no_weights: no model.safetensors or model.safetensors.index.json");
  write_text(root + "/no_weights/pytorch_model.bin", "pickle");
  expect_load_error(root + "/no_weights",
                    root + "/no_weights: has only pytorch_model.bin weights; anvil reads safetensors (model.safetensors)");

  json bad = config;
  bad["model_type"] = "gpt_neox";
  write_text(root + "/no_weights/config.json", bad.dump());
  expect_load_error(root + "/no_weights",
                    root + "/no_weights/config.json: unknown model_type 'gpt_neox'; anvil supports: llama, mistral, qwen2");

  // A truncated weights file and a broken tokenizer_config.json are named by path.
  const std::string dir = root + "/truncated";
  write_model_dir(dir, config, tiny_weights(config));
  std::string bytes;
  {
    std::ifstream in(dir + "/model.safetensors", std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  write_text(dir + "/model.safetensors", bytes.substr(0, bytes.size() - 10));
  expect_load_error(dir, dir + "/model.safetensors: tensor", true);
  write_text(dir + "/model.safetensors", bytes);
  write_text(dir + "/tokenizer_config.json", "{");
  expect_load_error(dir, dir + "/tokenizer_config.json: not valid JSON", true);
}

// ---- writing ----

TEST(HfCheckpoint, WriteThenLoadRoundTrip) {
  const std::string root = fresh_test_dir();
  json config = tiny_llama_config();
  config["rope_theta"] = 500000.0;
  config["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                            {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  write_model_dir(root + "/src", config, tiny_weights(config, /*lm_head=*/false));
  write_text(root + "/src/tokenizer_config.json", R"({"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]})");
  auto original = load_hf_checkpoint(root + "/src");
  ASSERT_TRUE(original.is_ok()) << original.status().message();
  EXPECT_EQ(original->vocab.chat_template, "D");

  ASSERT_TRUE(write_hf_checkpoint(*original, root + "/out/nested").is_ok());
  auto reloaded = load_hf_checkpoint(root + "/out/nested");
  ASSERT_TRUE(reloaded.is_ok()) << reloaded.status().message();
  const ModelConfig& a = original->config;
  const ModelConfig& b = reloaded->config;
  EXPECT_EQ(b.name, "nested");
  EXPECT_EQ(b.arch, a.arch);
  EXPECT_EQ(b.dim, a.dim);
  EXPECT_EQ(b.hidden_dim, a.hidden_dim);
  EXPECT_EQ(b.n_layers, a.n_layers);
  EXPECT_EQ(b.n_heads, a.n_heads);
  EXPECT_EQ(b.n_kv_heads, a.n_kv_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(b.context_length, a.context_length);
  EXPECT_EQ(b.rms_norm_eps, a.rms_norm_eps);
  EXPECT_EQ(b.rope_theta, a.rope_theta);
  EXPECT_EQ(b.rope_scaling.type, RopeScalingType::Llama3);
  EXPECT_EQ(b.rope_scaling.factor, a.rope_scaling.factor);
  EXPECT_EQ(b.rope_scaling.original_context, 8192);
  EXPECT_EQ(b.tied_embeddings, true);
  EXPECT_EQ(b.bos_token_id, a.bos_token_id);
  EXPECT_EQ(b.eos_token_id, a.eos_token_id);
  EXPECT_EQ(reloaded->vocab.chat_template, "D");
  ASSERT_EQ(reloaded->tensors.size(), original->tensors.size());
  for (const auto& [name, t] : original->tensors) {
    const Tensor* r = reloaded->find(name);
    ASSERT_NE(r, nullptr) << name;
    EXPECT_TRUE(same_bytes(t, *r)) << name;
  }
  // config.json is plain HF: floats written at float precision, the metadata transformers requires.
  std::ifstream in(root + "/out/nested/config.json");
  const json written = json::parse(in);
  EXPECT_EQ(written["rms_norm_eps"].get<double>(), 1e-05);
  EXPECT_EQ(written["model_type"], "llama");
  auto st = SafetensorsFile::open(root + "/out/nested/model.safetensors");
  ASSERT_TRUE(st.is_ok());
  EXPECT_EQ((*st)->metadata().at("format"), "pt");
}

TEST(HfCheckpoint, WriteQwen2AndMistral) {
  const std::string root = fresh_test_dir();
  json config = tiny_llama_config();
  config["model_type"] = "qwen2";
  config["use_sliding_window"] = true;
  config["sliding_window"] = 32;
  write_model_dir(root + "/qwen", config, tiny_weights(config, true, true));
  auto qwen = load_hf_checkpoint(root + "/qwen");
  ASSERT_TRUE(qwen.is_ok()) << qwen.status().message();
  ASSERT_TRUE(write_hf_checkpoint(*qwen, root + "/qwen_out").is_ok());
  auto qwen_back = load_hf_checkpoint(root + "/qwen_out");
  ASSERT_TRUE(qwen_back.is_ok()) << qwen_back.status().message();
  EXPECT_EQ(qwen_back->config.arch, "qwen2");
  EXPECT_TRUE(qwen_back->config.attn_qkv_bias);
  EXPECT_EQ(qwen_back->config.sliding_window, 32);
  EXPECT_TRUE(same_bytes(*qwen->find("blk.0.attn_q.bias"), *qwen_back->find("blk.0.attn_q.bias")));

  // A llama-arch checkpoint with a sliding window is written as HF mistral.
  Checkpoint windowed = std::move(qwen_back).value();
  windowed.config.arch = "llama";
  windowed.config.attn_qkv_bias = false;
  for (const char* bias : {"attn_q.bias", "attn_k.bias", "attn_v.bias"})
    for (const char* layer : {"blk.0.", "blk.1."}) windowed.tensors.erase(std::string(layer) + bias);
  ASSERT_TRUE(write_hf_checkpoint(windowed, root + "/mistral_out").is_ok());
  auto mistral = load_hf_checkpoint(root + "/mistral_out");
  ASSERT_TRUE(mistral.is_ok()) << mistral.status().message();
  EXPECT_EQ(mistral->config.sliding_window, 32);
  EXPECT_FALSE(mistral->config.attn_qkv_bias);
  std::ifstream in(root + "/mistral_out/config.json");
  EXPECT_EQ(json::parse(in)["model_type"], "mistral");
}

// An Interleaved checkpoint (as from GGUF "llama") must come back as NeoX with the rows permuted.
TEST(HfCheckpoint, WritePermutesInterleavedQK) {
  const std::string root = fresh_test_dir();
  const json config = tiny_llama_config();
  write_model_dir(root + "/src", config, tiny_weights(config));
  auto neox = load_hf_checkpoint(root + "/src");
  ASSERT_TRUE(neox.is_ok()) << neox.status().message();

  Checkpoint interleaved = *neox;
  interleaved.config.rope_style = RopeStyle::Interleaved;
  std::list<std::vector<std::byte>> buffers;
  for (auto& [name, t] : interleaved.tensors) {
    const bool is_q = name.find(".attn_q.") != std::string::npos;
    if (!is_q && name.find(".attn_k.") == std::string::npos) continue;
    buffers.push_back(permute_rows_neox_to_interleaved(t, is_q ? 2 : 1));
    ASSERT_EQ(buffers.back().size(), t.nbytes);
    t.data = buffers.back().data();
  }
  ASSERT_FALSE(same_bytes(*interleaved.find("blk.0.attn_q.weight"), *neox->find("blk.0.attn_q.weight")));
  ASSERT_TRUE(write_hf_checkpoint(interleaved, root + "/out").is_ok());
  auto back = load_hf_checkpoint(root + "/out");
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->config.rope_style, RopeStyle::NeoX);
  for (const auto& [name, t] : neox->tensors) EXPECT_TRUE(same_bytes(t, *back->find(name))) << name;
}

TEST(HfCheckpoint, WriteRejectsWhatHfCannotHold) {
  const std::string root = fresh_test_dir();
  const json config = tiny_llama_config();
  write_model_dir(root + "/src", config, tiny_weights(config));
  auto loaded = load_hf_checkpoint(root + "/src");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();

  Checkpoint quantized = *loaded;
  quantized.tensors["blk.1.ffn_up.weight"].dtype = DType::Q8_0;
  Status status = write_hf_checkpoint(quantized, root + "/q");
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.message(), root + "/q: tensor blk.1.ffn_up.weight has type Q8_0; Hugging Face checkpoints "
                                     "are written from F32, F16 or BF16 tensors only");
  EXPECT_FALSE(fs::exists(root + "/q/model.safetensors"));

  Checkpoint misshapen = *loaded;
  misshapen.tensors["blk.1.ffn_up.weight"].shape = {8, 12};
  status = write_hf_checkpoint(misshapen, root + "/s");
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.message(), root + "/s: tensor blk.1.ffn_up.weight has shape (8, 12), expected (12, 8)");

  Checkpoint extra = *loaded;
  extra.tensors["blk.0.attn_q.bias"] = extra.tensors["output_norm.weight"];
  status = write_hf_checkpoint(extra, root + "/e");
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.message(), root + "/e: tensor blk.0.attn_q.bias does not belong in this llama checkpoint");

  Checkpoint other = *loaded;
  other.config.arch = "gpt2";
  status = write_hf_checkpoint(other, root + "/g");
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("cannot write arch 'gpt2'"), std::string::npos);

  Checkpoint missing = *loaded;
  missing.tensors.erase("blk.0.attn_v.weight");
  status = write_hf_checkpoint(missing, root + "/m");
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("has no tensor blk.0.attn_v.weight"), std::string::npos) << status.message();

  Checkpoint biased = *loaded;
  biased.config.attn_qkv_bias = true;
  status = write_hf_checkpoint(biased, root + "/b");
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("has no Hugging Face layout"), std::string::npos) << status.message();
}

}  // namespace
}  // namespace anvil
