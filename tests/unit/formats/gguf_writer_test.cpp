// Tests for the GGUF writer: round trips through the reader, the NeoX -> interleaved q/k row
// permutation, RoPE scaling metadata, file layout details llama.cpp relies on, and failures.
#include "formats/gguf_writer.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "../test_paths.h"
#include "formats/gguf_checkpoint.h"
#include "formats/gguf_reader.h"
#include "model/rope.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return anvil::testing::scratch_dir(std::string("gguf_writer/") + info->test_suite_name() + "." + info->name());
}

// Builds checkpoints whose tensors own random bytes (kept alive in checkpoint.storage).
class CheckpointBuilder {
 public:
  explicit CheckpointBuilder(uint32_t seed = 1) : rng_(seed) {}

  void add(Checkpoint& ckpt, const std::string& name, DType dtype, std::vector<int64_t> shape) {
    Tensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    t.nbytes = dtype_bytes(dtype, t.numel());
    auto bytes = std::make_shared<std::vector<std::byte>>(t.nbytes);
    if (dtype == DType::F32) {
      // Finite floats so the values are meaningful when tests compare them.
      std::normal_distribution<float> normal;
      for (size_t i = 0; i < t.nbytes / 4; ++i) {
        const float v = normal(rng_);
        std::memcpy(bytes->data() + 4 * i, &v, 4);
      }
    } else {
      for (auto& b : *bytes) b = static_cast<std::byte>(rng_() & 0xff);
    }
    t.data = bytes->data();
    ckpt.storage.push_back(bytes);
    ckpt.tensors[name] = std::move(t);
  }

 private:
  std::mt19937 rng_;
};

// A 2-layer llama with F32, F16, Q8_0 (and Q4_0/Q4_K/Q6_K) tensors and a small vocabulary.
Checkpoint tiny_checkpoint(bool qkv_bias = false, const std::string& arch = "llama") {
  Checkpoint ckpt;
  ckpt.source = "memory:tiny";
  ModelConfig& c = ckpt.config;
  c.arch = arch;
  c.name = "tiny test model";
  c.vocab_size = 40;
  c.dim = 64;
  c.hidden_dim = 256;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.context_length = 256;
  c.rms_norm_eps = 1e-6f;
  c.rope_theta = 10000.0f;
  c.rope_style = arch == "llama" ? RopeStyle::Interleaved : RopeStyle::NeoX;
  c.attn_qkv_bias = qkv_bias;

  Vocab& v = ckpt.vocab;
  v.model = "gpt2";
  v.pre = "qwen2";
  for (int i = 0; i < 38; ++i) v.tokens.push_back(i == 5 ? std::string("\xC4\xA0the") : std::string("t").append(std::to_string(i)));
  for (int i = 0; i < 38; ++i) v.scores.push_back(-0.5f * i);
  for (int i = 0; i < 38; ++i) v.token_types.push_back(i < 3 ? 3 : 1);
  v.merges = {"t 1", "\xC4\xA0 t"};
  v.bos_id = 1;
  v.eos_id = 2;
  v.pad_id = 0;
  v.add_bos = false;
  v.add_eos = true;
  v.add_space_prefix = false;
  v.chat_template = "{{ messages }}";
  c.bos_token_id = 1;
  c.eos_token_id = 2;

  CheckpointBuilder b;
  b.add(ckpt, "token_embd.weight", DType::F16, {40, 64});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    b.add(ckpt, p + "attn_norm.weight", DType::F32, {64});
    b.add(ckpt, p + "attn_q.weight", DType::Q8_0, {64, 64});
    b.add(ckpt, p + "attn_k.weight", l == 0 ? DType::F16 : DType::F32, {32, 64});
    b.add(ckpt, p + "attn_v.weight", DType::Q8_0, {32, 64});
    if (qkv_bias) {
      b.add(ckpt, p + "attn_q.bias", DType::F32, {64});
      b.add(ckpt, p + "attn_k.bias", DType::F32, {32});
      b.add(ckpt, p + "attn_v.bias", DType::F32, {32});
    }
    b.add(ckpt, p + "attn_output.weight", DType::F32, {64, 64});
    b.add(ckpt, p + "ffn_norm.weight", DType::F32, {64});
    b.add(ckpt, p + "ffn_gate.weight", DType::Q4_0, {256, 64});
    b.add(ckpt, p + "ffn_up.weight", DType::Q8_0, {256, 64});
    b.add(ckpt, p + "ffn_down.weight", l == 0 ? DType::Q4_K : DType::Q6_K, {64, 256});
  }
  b.add(ckpt, "output_norm.weight", DType::F32, {64});
  b.add(ckpt, "output.weight", DType::Q8_0, {40, 64});
  return ckpt;
}

void expect_same_config(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.arch, b.arch);
  EXPECT_EQ(a.name, b.name);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.dim, b.dim);
  EXPECT_EQ(a.hidden_dim, b.hidden_dim);
  EXPECT_EQ(a.n_layers, b.n_layers);
  EXPECT_EQ(a.n_heads, b.n_heads);
  EXPECT_EQ(a.n_kv_heads, b.n_kv_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.context_length, b.context_length);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_style, b.rope_style);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.sliding_window, b.sliding_window);
  EXPECT_EQ(a.tied_embeddings, b.tied_embeddings);
  EXPECT_EQ(a.attn_qkv_bias, b.attn_qkv_bias);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_id, b.eos_token_id);
}

std::vector<std::byte> bytes_of(const Tensor& t) { return {t.data, t.data + t.nbytes}; }

TEST(GgufWriter, RoundTripKeepsConfigVocabAndBytes) {
  const Checkpoint original = tiny_checkpoint();
  const std::string dir = fresh_dir();
  const std::string path = dir + "/tiny.gguf";
  const Status written = write_gguf(original, path);
  ASSERT_TRUE(written.is_ok()) << written.message();
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto loaded = load_gguf_checkpoint(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  expect_same_config(loaded->config, original.config);

  const Vocab& a = loaded->vocab;
  const Vocab& b = original.vocab;
  EXPECT_EQ(a.model, b.model);
  EXPECT_EQ(a.pre, b.pre);
  // The embedding has 40 rows for 38 tokens: the writer pads the token list as llama.cpp needs.
  ASSERT_EQ(a.size(), 40);
  EXPECT_EQ(std::vector<std::string>(a.tokens.begin(), a.tokens.begin() + 38), b.tokens);
  EXPECT_EQ(a.tokens[38], "[PAD38]");
  EXPECT_EQ(a.tokens[39], "[PAD39]");
  EXPECT_EQ(std::vector<float>(a.scores.begin(), a.scores.begin() + 38), b.scores);
  EXPECT_EQ(a.scores[39], -1000.0f);
  EXPECT_EQ(std::vector<int32_t>(a.token_types.begin(), a.token_types.begin() + 38), b.token_types);
  EXPECT_EQ(a.token_types[39], static_cast<int32_t>(TokenType::Unused));
  EXPECT_EQ(a.merges, b.merges);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.add_bos, b.add_bos);
  EXPECT_EQ(a.add_eos, b.add_eos);
  EXPECT_EQ(a.add_space_prefix, b.add_space_prefix);
  EXPECT_EQ(a.chat_template, b.chat_template);

  ASSERT_EQ(loaded->tensors.size(), original.tensors.size());
  for (const auto& [name, t] : original.tensors) {
    const Tensor* u = loaded->find(name);
    ASSERT_NE(u, nullptr) << name;
    EXPECT_EQ(u->dtype, t.dtype) << name;
    EXPECT_EQ(u->shape, t.shape) << name;
    EXPECT_EQ(bytes_of(*u), bytes_of(t)) << name;
  }

  // Writing what was read gives the same file, byte for byte.
  const std::string again = dir + "/again.gguf";
  ASSERT_TRUE(write_gguf(*loaded, again).is_ok());
  auto size = fs::file_size(path);
  ASSERT_EQ(fs::file_size(again), size);
  auto f1 = MappedFile::open(path), f2 = MappedFile::open(again);
  ASSERT_TRUE(f1.is_ok() && f2.is_ok());
  EXPECT_EQ(std::memcmp((*f1)->data(), (*f2)->data(), size), 0);
}

// End-of-turn and separator ids, add_sep and remove_extra_whitespaces survive a round trip, under
// llama.cpp's key names (including its "seperator" spelling); unset ones are not written.
TEST(GgufWriter, RoundTripKeepsEotSepAndWhitespaceFlags) {
  Checkpoint original = tiny_checkpoint();
  Vocab& v = original.vocab;
  v.eot_id = 7;
  v.sep_id = 9;
  v.add_sep = true;
  v.remove_extra_whitespaces = true;
  const std::string dir = fresh_dir();
  const std::string path = dir + "/tiny.gguf";
  ASSERT_TRUE(write_gguf(original, path).is_ok());
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(*file->get_int("tokenizer.ggml.eot_token_id"), 7);
  EXPECT_EQ(*file->get_int("tokenizer.ggml.seperator_token_id"), 9);
  EXPECT_TRUE(*file->get_bool("tokenizer.ggml.add_sep_token", false));
  EXPECT_TRUE(*file->get_bool("tokenizer.ggml.remove_extra_whitespaces", false));
  auto vocab = load_gguf_vocab(path);
  ASSERT_TRUE(vocab.is_ok()) << vocab.status().message();
  EXPECT_EQ(vocab->eot_id, 7);
  EXPECT_EQ(vocab->sep_id, 9);
  EXPECT_TRUE(vocab->add_sep);
  EXPECT_TRUE(vocab->remove_extra_whitespaces);

  // Unset: no id keys, and flags that read back as false.
  v.eot_id = -1;
  v.sep_id = -1;
  v.add_sep = false;
  v.remove_extra_whitespaces = false;
  const std::string plain = dir + "/plain.gguf";
  ASSERT_TRUE(write_gguf(original, plain).is_ok());
  file = GgufFile::open(plain);
  ASSERT_TRUE(file.is_ok());
  EXPECT_FALSE(file->has("tokenizer.ggml.eot_token_id"));
  EXPECT_FALSE(file->has("tokenizer.ggml.seperator_token_id"));
  EXPECT_FALSE(file->has("tokenizer.ggml.remove_extra_whitespaces"));
  vocab = load_gguf_vocab(plain);
  ASSERT_TRUE(vocab.is_ok());
  EXPECT_EQ(vocab->eot_id, -1);
  EXPECT_EQ(vocab->sep_id, -1);
  EXPECT_FALSE(vocab->add_sep);
  EXPECT_FALSE(vocab->remove_extra_whitespaces);

  // A BERT vocabulary appends [SEP] by default (llama.cpp's), and the written flag can turn it off.
  v.model = "bert";
  v.merges.clear();
  v.sep_id = 3;
  const std::string bert = dir + "/bert.gguf";
  ASSERT_TRUE(write_gguf(original, bert).is_ok());
  vocab = load_gguf_vocab(bert);
  ASSERT_TRUE(vocab.is_ok());
  EXPECT_FALSE(vocab->add_sep);
  EXPECT_EQ(vocab->sep_id, 3);
}

TEST(GgufWriter, LayoutIsWhatLlamaCppExpects) {
  const Checkpoint original = tiny_checkpoint();
  const std::string path = fresh_dir() + "/tiny.gguf";
  ASSERT_TRUE(write_gguf(original, path).is_ok());
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_EQ(file->data_offset() % 32, 0u);
  ASSERT_NE(file->find("general.alignment"), nullptr);
  EXPECT_EQ(file->find("general.alignment")->type(), GgufType::UInt32);
  EXPECT_EQ(file->find("llama.block_count")->type(), GgufType::UInt32);
  EXPECT_EQ(file->find("llama.attention.layer_norm_rms_epsilon")->type(), GgufType::Float32);
  EXPECT_EQ(*file->get_int("llama.rope.dimension_count"), 16);
  EXPECT_EQ(*file->get_int("llama.vocab_size"), 40);
  EXPECT_EQ(*file->get_int("general.file_type"), 7);  // mostly Q8_0
  EXPECT_FALSE(file->has("llama.attention.sliding_window"));
  EXPECT_FALSE(file->has("llama.rope.scaling.type"));
  EXPECT_EQ(file->find("tokenizer.ggml.token_type")->element_type(), GgufType::Int32);
  EXPECT_EQ(file->find("tokenizer.ggml.scores")->element_type(), GgufType::Float32);

  // Canonical order, and offsets packed back to back with 32-byte padding (llama.cpp checks).
  std::vector<std::string> names;
  uint64_t expected_offset = 0;
  for (const GgufTensorInfo& t : file->tensors()) {
    names.push_back(t.name);
    EXPECT_EQ(t.offset, expected_offset) << t.name;
    expected_offset += (t.nbytes + 31) / 32 * 32;
  }
  EXPECT_EQ(file->data_offset() + expected_offset, file->file_size());
  ASSERT_EQ(names.size(), 1u + 2 * 9 + 2);
  EXPECT_EQ(names.front(), "token_embd.weight");
  EXPECT_EQ(names[1], "blk.0.attn_norm.weight");
  EXPECT_EQ(names[2], "blk.0.attn_q.weight");
  EXPECT_EQ(names[9], "blk.0.ffn_down.weight");
  EXPECT_EQ(names[10], "blk.1.attn_norm.weight");
  EXPECT_EQ(names[names.size() - 2], "output_norm.weight");
  EXPECT_EQ(names.back(), "output.weight");
  const GgufTensorInfo* q = file->find_tensor("blk.0.attn_q.weight");
  EXPECT_EQ(q->ne, (std::vector<int64_t>{64, 64}));
  const GgufTensorInfo* k = file->find_tensor("blk.0.attn_k.weight");
  EXPECT_EQ(k->ne, (std::vector<int64_t>{64, 32}));  // GGUF order: innermost first
  EXPECT_EQ(k->ggml_type, 1u);
}

// Source row of output row r for llama.cpp's permute: (n_head, 2, hd/2) -> (n_head, hd/2, 2).
int64_t neox_source_row(int64_t r, int64_t head_dim) {
  const int64_t head = r / head_dim, j = r % head_dim;
  return head * head_dim + (j % 2) * (head_dim / 2) + j / 2;
}

void expect_rows_permuted(const Tensor& written, const Tensor& source, int64_t head_dim) {
  ASSERT_EQ(written.shape, source.shape);
  const int64_t rows = source.shape[0];
  const size_t row_bytes = source.nbytes / static_cast<size_t>(rows);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = neox_source_row(r, head_dim);
    EXPECT_EQ(std::memcmp(written.data + r * row_bytes, source.data + s * row_bytes, row_bytes), 0)
        << written.name << " row " << r << " should be source row " << s;
  }
}

TEST(GgufWriter, PermutesNeoxQkRowsForLlama) {
  Checkpoint neox = tiny_checkpoint(/*qkv_bias=*/true);
  neox.config.rope_style = RopeStyle::NeoX;  // as a Hugging Face Llama arrives
  const std::string path = fresh_dir() + "/neox.gguf";
  ASSERT_TRUE(write_gguf(neox, path).is_ok());
  auto loaded = load_gguf_checkpoint(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_EQ(loaded->config.rope_style, RopeStyle::Interleaved);
  EXPECT_TRUE(loaded->config.attn_qkv_bias);

  // Hand-checked case: head_dim 16, so output row 1 is source row 8 and row 2 is source row 1.
  EXPECT_EQ(neox_source_row(1, 16), 8);
  EXPECT_EQ(neox_source_row(2, 16), 1);
  EXPECT_EQ(neox_source_row(17, 16), 24);

  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    for (const char* name : {"attn_q.weight", "attn_k.weight", "attn_q.bias", "attn_k.bias"})
      expect_rows_permuted(*loaded->find(p + name), *neox.find(p + name), 16);
    for (const char* name : {"attn_v.weight", "attn_v.bias", "attn_output.weight", "ffn_down.weight"})
      EXPECT_EQ(bytes_of(*loaded->find(p + name)), bytes_of(*neox.find(p + name))) << p + name;
  }

  // The permuted model is the same model: q rotated NeoX-style before equals q rotated
  // interleaved after, for a random input (dot products of rotated q with x are preserved).
  const Tensor& q_src = *neox.find("blk.1.attn_k.weight");  // F32 on layer 1
  const Tensor& q_out = *loaded->find("blk.1.attn_k.weight");
  std::vector<float> x(64);
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  for (float& v : x) v = normal(rng);
  auto project = [&](const Tensor& w) {
    std::vector<float> y(w.shape[0]);
    const auto* f = reinterpret_cast<const float*>(w.data);
    for (int64_t r = 0; r < w.shape[0]; ++r)
      for (int64_t c = 0; c < 64; ++c) y[r] += f[r * 64 + c] * x[c];
    return y;
  };
  const std::vector<float> y_neox = project(q_src), y_inter = project(q_out);
  const float pos = 3.0f;
  for (int64_t head = 0; head < 2; ++head) {
    for (int64_t i = 0; i < 8; ++i) {
      const float angle = pos * std::pow(10000.0f, -2.0f * i / 16);
      const float a0 = y_neox[head * 16 + i], a1 = y_neox[head * 16 + i + 8];
      const float b0 = y_inter[head * 16 + 2 * i], b1 = y_inter[head * 16 + 2 * i + 1];
      EXPECT_FLOAT_EQ(a0 * std::cos(angle) - a1 * std::sin(angle), b0 * std::cos(angle) - b1 * std::sin(angle));
      EXPECT_FLOAT_EQ(a0 * std::sin(angle) + a1 * std::cos(angle), b0 * std::sin(angle) + b1 * std::cos(angle));
    }
  }
}

TEST(GgufWriter, Qwen2KeepsNeoxRowsAndInterleavedIsConverted) {
  Checkpoint qwen = tiny_checkpoint(/*qkv_bias=*/true, "qwen2");
  qwen.vocab = Vocab();  // no tokenizer: written as llama.cpp's "no_vocab"
  qwen.config.tied_embeddings = true;
  qwen.tensors.erase("output.weight");
  qwen.config.sliding_window = 128;
  const std::string dir = fresh_dir();
  ASSERT_TRUE(write_gguf(qwen, dir + "/qwen.gguf").is_ok());
  auto loaded = load_gguf_checkpoint(dir + "/qwen.gguf");
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  qwen.config.bos_token_id = qwen.config.eos_token_id = -1;
  expect_same_config(loaded->config, qwen.config);
  EXPECT_TRUE(loaded->vocab.empty());
  for (const auto& [name, t] : qwen.tensors) EXPECT_EQ(bytes_of(*loaded->find(name)), bytes_of(t)) << name;

  // A qwen2 checkpoint whose rows are interleaved goes back to NeoX order (the inverse permute).
  Checkpoint inter = qwen;
  inter.config.rope_style = RopeStyle::Interleaved;
  ASSERT_TRUE(write_gguf(inter, dir + "/inter.gguf").is_ok());
  auto back = load_gguf_checkpoint(dir + "/inter.gguf");
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(back->config.rope_style, RopeStyle::NeoX);
  // Applying the forward permute to the result must give the interleaved source back.
  for (const char* name : {"blk.0.attn_q.weight", "blk.1.attn_k.bias"})
    expect_rows_permuted(*inter.find(name), *back->find(name), 16);
}

TEST(GgufWriter, WritesRopeScaling) {
  Checkpoint ckpt = tiny_checkpoint();
  ckpt.config.rope_scaling.type = RopeScalingType::Linear;
  ckpt.config.rope_scaling.factor = 2.0f;
  const std::string dir = fresh_dir();
  ASSERT_TRUE(write_gguf(ckpt, dir + "/linear.gguf").is_ok());
  auto linear = load_gguf_checkpoint(dir + "/linear.gguf");
  ASSERT_TRUE(linear.is_ok()) << linear.status().message();
  expect_same_config(linear->config, ckpt.config);

  ckpt.config.rope_scaling = RopeScaling();
  ckpt.config.rope_scaling.type = RopeScalingType::Llama3;
  ckpt.config.rope_scaling.factor = 8.0f;
  ckpt.config.rope_scaling.original_context = 64;  // small, so the tiny head gets all three regimes
  ckpt.config.rope_theta = 500000.0f;
  ASSERT_TRUE(write_gguf(ckpt, dir + "/llama3.gguf").is_ok());
  auto llama3 = load_gguf_checkpoint(dir + "/llama3.gguf");
  ASSERT_TRUE(llama3.is_ok()) << llama3.status().message();
  const Tensor* freqs = llama3->find("rope_freqs.weight");
  ASSERT_NE(freqs, nullptr);
  EXPECT_EQ(freqs->dtype, DType::F32);
  EXPECT_EQ(freqs->shape, (std::vector<int64_t>{8}));
  const std::vector<float> expected = rope_frequency_divisors(ckpt.config);
  std::vector<float> got(8);
  std::memcpy(got.data(), freqs->data, 32);
  EXPECT_EQ(got, expected);
  EXPECT_NE(expected.front(), expected.back());
}

TEST(GgufWriter, RejectsBadCheckpoints) {
  const std::string dir = fresh_dir();
  Checkpoint ckpt = tiny_checkpoint();
  ckpt.config.arch = "gpt2";
  EXPECT_NE(write_gguf(ckpt, dir + "/a.gguf").message().find("'gpt2'"), std::string::npos);

  ckpt = tiny_checkpoint();
  ckpt.tensors.erase("blk.1.ffn_up.weight");
  Status st = write_gguf(ckpt, dir + "/b.gguf");
  EXPECT_NE(st.message().find("missing tensor blk.1.ffn_up.weight"), std::string::npos) << st.message();

  ckpt = tiny_checkpoint();
  ckpt.tensors["blk.0.ffn_up.weight"].nbytes -= 1;
  st = write_gguf(ckpt, dir + "/c.gguf");
  EXPECT_NE(st.message().find("blk.0.ffn_up.weight"), std::string::npos) << st.message();

  ckpt = tiny_checkpoint();
  ckpt.tensors["mystery.weight"] = ckpt.tensors["output_norm.weight"];
  st = write_gguf(ckpt, dir + "/d.gguf");
  EXPECT_NE(st.message().find("mystery.weight is not part of a llama model"), std::string::npos) << st.message();

  st = write_gguf(tiny_checkpoint(), dir + "/no/such/dir/e.gguf");
  EXPECT_NE(st.message().find("e.gguf.tmp: cannot create"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(dir + "/a.gguf") || fs::exists(dir + "/b.gguf") || fs::exists(dir + "/c.gguf"));
  for (const auto& entry : fs::directory_iterator(dir)) ADD_FAILURE() << "left behind: " << entry.path();
}

TEST(GgufWriter, ReportsDiskFull) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  // write_gguf writes PATH.tmp; a symlink there to /dev/full makes every write fail with ENOSPC.
  const std::string dir = fresh_dir();
  fs::create_symlink("/dev/full", dir + "/full.gguf.tmp");
  const Status st = write_gguf(tiny_checkpoint(), dir + "/full.gguf");
  EXPECT_FALSE(st.is_ok());
  EXPECT_NE(st.message().find("full.gguf.tmp"), std::string::npos) << st.message();
  EXPECT_FALSE(fs::exists(dir + "/full.gguf"));
}

}  // namespace
}  // namespace anvil
