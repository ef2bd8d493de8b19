// Tests for the GGUF reader and checkpoint loader: real vocab files, every metadata type, and
// hostile input (truncation at every byte, bad magic/version/types/offsets, huge counts).
#include "formats/gguf_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../test_paths.h"
#include "formats/gguf_checkpoint.h"

namespace anvil {
namespace {

namespace fs = std::filesystem;

std::string fresh_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return anvil::testing::scratch_dir(std::string("gguf_reader/") + info->test_suite_name() + "." + info->name());
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Hand-serializes GGUF files so tests can produce any (in)valid variant byte by byte.
class GgufBuilder {
 public:
  uint32_t magic = 0x46554747;
  uint32_t version = 3;
  std::optional<uint64_t> n_kv_override, n_tensors_override;

  static std::string u32(uint32_t v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
  static std::string u64(uint64_t v) { return std::string(reinterpret_cast<const char*>(&v), 8); }
  static std::string f32(float v) { return std::string(reinterpret_cast<const char*>(&v), 4); }
  static std::string str(const std::string& s) { return u64(s.size()) + s; }

  // Sets (or replaces) a key with a raw type id and payload.
  void set(const std::string& key, uint32_t type, const std::string& payload) {
    for (auto& kv : kvs_)
      if (kv.first == key) {
        kv.second = u32(type) + payload;
        return;
      }
    kvs_.emplace_back(key, u32(type) + payload);
  }
  void set_u32(const std::string& key, uint32_t v) { set(key, 4, u32(v)); }
  void set_f32(const std::string& key, float v) { set(key, 6, f32(v)); }
  void set_str(const std::string& key, const std::string& v) { set(key, 8, str(v)); }
  void set_strings(const std::string& key, const std::vector<std::string>& v) {
    std::string payload = u32(8) + u64(v.size());
    for (const auto& s : v) payload += str(s);
    set(key, 9, payload);
  }
  void remove(const std::string& key) {
    std::erase_if(kvs_, [&](const auto& kv) { return kv.first == key; });
  }

  struct TensorSpec {
    std::string name;
    std::vector<uint64_t> ne;
    uint32_t type = 0;  // ggml type id
    std::string data;
    std::optional<uint64_t> offset;  // default: packed, aligned to 32
  };
  void add_tensor(TensorSpec t) { tensors_.push_back(std::move(t)); }
  // An F32 tensor of zeros with numpy-order `shape`.
  void add_f32(const std::string& name, std::vector<int64_t> shape) {
    TensorSpec t;
    t.name = name;
    size_t n = 1;
    for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
      t.ne.push_back(static_cast<uint64_t>(*it));
      n *= static_cast<size_t>(*it);
    }
    t.data.assign(n * 4, '\0');
    tensors_.push_back(std::move(t));
  }
  void remove_tensor(const std::string& name) {
    std::erase_if(tensors_, [&](const auto& t) { return t.name == name; });
  }
  TensorSpec* tensor(const std::string& name) {
    for (auto& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }

  // Tensors with an explicit offset get no data: they exist to point somewhere wrong.
  std::string build() const {
    std::string out = u32(magic) + u32(version) + u64(n_tensors_override.value_or(tensors_.size())) +
                      u64(n_kv_override.value_or(kvs_.size()));
    for (const auto& [key, value] : kvs_) out += str(key) + value;
    uint64_t packed = 0;
    std::vector<uint64_t> offsets;
    for (const auto& t : tensors_) {
      if (t.offset) {
        offsets.push_back(*t.offset);
      } else {
        offsets.push_back(packed);
        packed = (packed + t.data.size() + 31) / 32 * 32;
      }
      out += str(t.name) + u32(static_cast<uint32_t>(t.ne.size()));
      for (uint64_t d : t.ne) out += u64(d);
      out += u32(t.type) + u64(offsets.back());
    }
    data_start_ = (out.size() + 31) / 32 * 32;
    out.resize(data_start_, '\0');
    std::string data(packed, '\0');
    for (size_t i = 0; i < tensors_.size(); ++i)
      if (!tensors_[i].offset) data.replace(offsets[i], tensors_[i].data.size(), tensors_[i].data);
    return out + data;
  }
  size_t data_start() const { return data_start_; }

 private:
  std::vector<std::pair<std::string, std::string>> kvs_;
  std::vector<TensorSpec> tensors_;
  mutable size_t data_start_ = 0;
};

// A complete, valid 2-layer llama model with F32 zero weights and a 16-token vocabulary.
GgufBuilder tiny_llama() {
  GgufBuilder b;
  b.set_str("general.architecture", "llama");
  b.set_str("general.name", "tiny");
  b.set_u32("llama.context_length", 128);
  b.set_u32("llama.embedding_length", 8);
  b.set_u32("llama.feed_forward_length", 12);
  b.set_u32("llama.block_count", 2);
  b.set_u32("llama.attention.head_count", 2);
  b.set_u32("llama.attention.head_count_kv", 1);
  b.set_f32("llama.attention.layer_norm_rms_epsilon", 1e-5f);
  b.set_f32("llama.rope.freq_base", 500000.0f);
  b.set_str("tokenizer.ggml.model", "llama");
  std::vector<std::string> tokens;
  for (int i = 0; i < 16; ++i) tokens.push_back("tok" + std::to_string(i));
  b.set_strings("tokenizer.ggml.tokens", tokens);
  b.set_u32("tokenizer.ggml.bos_token_id", 1);
  b.set_u32("tokenizer.ggml.eos_token_id", 2);
  b.add_f32("token_embd.weight", {16, 8});
  for (int l = 0; l < 2; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    b.add_f32(p + "attn_norm.weight", {8});
    b.add_f32(p + "attn_q.weight", {8, 8});
    b.add_f32(p + "attn_k.weight", {4, 8});
    b.add_f32(p + "attn_v.weight", {4, 8});
    b.add_f32(p + "attn_output.weight", {8, 8});
    b.add_f32(p + "ffn_norm.weight", {8});
    b.add_f32(p + "ffn_gate.weight", {12, 8});
    b.add_f32(p + "ffn_up.weight", {12, 8});
    b.add_f32(p + "ffn_down.weight", {8, 12});
  }
  b.add_f32("output_norm.weight", {8});
  b.add_f32("output.weight", {16, 8});
  return b;
}

// Opens bytes written to a file under the test's directory; returns the status.
Status open_status(const std::string& bytes, const std::string& name = "model.gguf") {
  const std::string path = fresh_dir() + "/" + name;
  write_bytes(path, bytes);
  return GgufFile::open(path).status();
}

Status load_status(const std::string& bytes, const std::string& name = "model.gguf") {
  const std::string path = fresh_dir() + "/" + name;
  write_bytes(path, bytes);
  return load_gguf_checkpoint(path).status();
}

#define EXPECT_ERROR_CONTAINS(status_expr, text)                           \
  do {                                                                     \
    const ::anvil::Status st_ = (status_expr);                             \
    EXPECT_FALSE(st_.is_ok()) << "expected an error containing: " << text; \
    EXPECT_NE(st_.message().find(text), std::string::npos) << st_.message(); \
  } while (0)

// ---- real files --------------------------------------------------------------------------------

TEST(GgufReader, ReadsLlamaSpmVocabFile) {
  const std::string path = anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  auto file = GgufFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(file->version(), 3u);
  EXPECT_TRUE(file->tensors().empty());
  EXPECT_EQ(file->alignment(), 32u);
  EXPECT_EQ(file->metadata().size(), 22u);
  EXPECT_EQ(*file->get_string("general.name"), "llama-spm");
  EXPECT_EQ(*file->get_string("general.architecture"), "llama");
  EXPECT_EQ(*file->get_int("llama.vocab_size"), 32000);
  EXPECT_EQ(*file->get_int("llama.rope.dimension_count"), 128);
  EXPECT_FLOAT_EQ(static_cast<float>(*file->get_float("llama.attention.layer_norm_rms_epsilon")), 1e-5f);
  EXPECT_EQ(*file->get_bool("tokenizer.ggml.add_bos_token"), true);
  const GgufValue* tokens = file->find("tokenizer.ggml.tokens");
  ASSERT_NE(tokens, nullptr);
  EXPECT_EQ(tokens->element_type(), GgufType::String);
  EXPECT_EQ(tokens->size(), 32000u);
  EXPECT_EQ(*tokens->at(1).to_string(), "<s>");
  EXPECT_EQ(tokens->describe(), "array<string>[32000]");
  // Wrong-type and missing lookups are errors naming the key, not crashes.
  EXPECT_ERROR_CONTAINS(file->get_int("general.name").status(), "general.name");
  EXPECT_ERROR_CONTAINS(file->get_string("no.such.key").status(), "no.such.key");
  EXPECT_EQ(*file->get_int("no.such.key", 7), 7);

  auto vocab = load_gguf_vocab(path);
  ASSERT_TRUE(vocab.is_ok()) << vocab.status().message();
  EXPECT_EQ(vocab->model, "llama");
  EXPECT_EQ(vocab->pre, "default");
  EXPECT_EQ(vocab->size(), 32000);
  EXPECT_EQ(vocab->scores.size(), 32000u);
  EXPECT_EQ(vocab->token_types.size(), 32000u);
  EXPECT_EQ(vocab->token_types[0], static_cast<int32_t>(TokenType::Unknown));
  EXPECT_EQ(vocab->token_types[3], static_cast<int32_t>(TokenType::Byte));
  EXPECT_EQ(vocab->tokens[3], "<0x00>");
  EXPECT_EQ(vocab->bos_id, 1);
  EXPECT_EQ(vocab->eos_id, 2);
  EXPECT_EQ(vocab->unk_id, 0);
  EXPECT_EQ(vocab->pad_id, -1);
  EXPECT_TRUE(vocab->add_bos);
  EXPECT_FALSE(vocab->add_eos);
  EXPECT_TRUE(vocab->add_space_prefix);
  EXPECT_TRUE(vocab->merges.empty());
}

TEST(GgufReader, ReadsOtherVocabFiles) {
  auto gpt2 = load_gguf_vocab(anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-gpt-2.gguf"));
  ASSERT_TRUE(gpt2.is_ok()) << gpt2.status().message();
  EXPECT_EQ(gpt2->model, "gpt2");
  EXPECT_EQ(gpt2->pre, "gpt-2");
  EXPECT_EQ(gpt2->size(), 50257);
  EXPECT_EQ(gpt2->merges.size(), 50000u);
  EXPECT_EQ(gpt2->merges[0], "\xC4\xA0 t");  // "Ġ t"
  EXPECT_TRUE(gpt2->scores.empty());
  EXPECT_EQ(gpt2->bos_id, 50256);
  EXPECT_EQ(gpt2->eos_id, 50256);
  EXPECT_FALSE(gpt2->add_bos);
  EXPECT_FALSE(gpt2->add_space_prefix);

  auto phi3 = load_gguf_vocab(anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-phi-3.gguf"));
  ASSERT_TRUE(phi3.is_ok()) << phi3.status().message();
  EXPECT_EQ(phi3->size(), 32064);
  EXPECT_EQ(phi3->eos_id, 32000);
  EXPECT_EQ(phi3->pad_id, 32000);
  EXPECT_NE(phi3->chat_template.find("<|user|>"), std::string::npos);

  auto starcoder = load_gguf_vocab(anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-starcoder.gguf"));
  ASSERT_TRUE(starcoder.is_ok()) << starcoder.status().message();
  EXPECT_EQ(starcoder->size(), 49152);
  EXPECT_EQ(starcoder->pre, "starcoder");
  EXPECT_EQ(starcoder->merges.size(), 48872u);
}

TEST(GgufReader, VocabFileIsNotAModel) {
  const std::string path = anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-gpt-2.gguf");
  EXPECT_ERROR_CONTAINS(load_gguf_checkpoint(path).status(), path + ": unknown architecture 'gpt2'; anvil supports: llama, qwen2");
  const std::string llama = anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  EXPECT_ERROR_CONTAINS(load_gguf_checkpoint(llama).status(), llama + ": missing tensor token_embd.weight");
}

TEST(GgufReader, OpenMemoryMatchesOpen) {
  const std::string path = anvil::testing::shared_data("tokenizer-vectors/ggml-vocab-llama-spm.gguf");
  std::ifstream in(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto file = GgufFile::open_memory(bytes.data(), bytes.size(), "memory.gguf");
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  EXPECT_EQ(file->path(), "memory.gguf");
  EXPECT_EQ(file->mapped_file(), nullptr);
  EXPECT_EQ(file->metadata().size(), 22u);
  auto vocab = vocab_from_gguf(*file);
  ASSERT_TRUE(vocab.is_ok());
  EXPECT_EQ(vocab->size(), 32000);
}

// ---- metadata types ----------------------------------------------------------------------------

TEST(GgufReader, ParsesEveryValueType) {
  GgufBuilder b;
  b.set("u8", 0, std::string(1, '\xff'));
  b.set("i8", 1, std::string(1, '\xff'));
  b.set("u16", 2, std::string("\xfe\xff", 2));
  b.set("i16", 3, std::string("\xfe\xff", 2));
  b.set("u32", 4, GgufBuilder::u32(4000000000u));
  b.set("i32", 5, GgufBuilder::u32(static_cast<uint32_t>(-5)));
  b.set("f32", 6, GgufBuilder::f32(0.25f));
  b.set("bool", 7, std::string(1, '\1'));
  b.set("str", 8, GgufBuilder::str("hello"));
  b.set("u64", 10, GgufBuilder::u64(~uint64_t{0}));
  b.set("i64", 11, GgufBuilder::u64(static_cast<uint64_t>(-1234567890123LL)));
  double d = -2.5;
  b.set("f64", 12, std::string(reinterpret_cast<const char*>(&d), 8));
  b.set("ints", 9, GgufBuilder::u32(5) + GgufBuilder::u64(3) + GgufBuilder::u32(-1) + GgufBuilder::u32(2) + GgufBuilder::u32(3));
  b.set("floats", 9, GgufBuilder::u32(6) + GgufBuilder::u64(2) + GgufBuilder::f32(1.5f) + GgufBuilder::f32(-1));
  b.set("empty", 9, GgufBuilder::u32(8) + GgufBuilder::u64(0));
  // Nested: [[1, 2], ["a"]]
  const std::string inner1 = GgufBuilder::u32(0) + GgufBuilder::u64(2) + "\x01\x02";
  const std::string inner2 = GgufBuilder::u32(8) + GgufBuilder::u64(1) + GgufBuilder::str("a");
  b.set("nested", 9, GgufBuilder::u32(9) + GgufBuilder::u64(2) + inner1 + inner2);
  const std::string bytes = b.build();
  auto f = GgufFile::open_memory(bytes.data(), bytes.size(), "types.gguf");
  ASSERT_TRUE(f.is_ok()) << f.status().message();

  EXPECT_EQ(*f->get_int("u8"), 255);
  EXPECT_EQ(*f->get_int("i8"), -1);
  EXPECT_EQ(*f->get_int("u16"), 65534);
  EXPECT_EQ(*f->get_int("i16"), -2);
  EXPECT_EQ(*f->get_int("u32"), 4000000000LL);
  EXPECT_EQ(*f->get_int("i32"), -5);
  EXPECT_EQ(*f->get_float("f32"), 0.25);
  EXPECT_EQ(*f->get_bool("bool"), true);
  EXPECT_EQ(*f->get_string("str"), "hello");
  EXPECT_FALSE(f->get_int("u64").is_ok());  // does not fit int64: an error, not a wrap-around
  EXPECT_EQ(*f->find("u64")->to_double(), 18446744073709551615.0);
  EXPECT_EQ(*f->get_int("i64"), -1234567890123LL);
  EXPECT_EQ(*f->get_float("f64"), -2.5);
  EXPECT_EQ(*f->get_float("u8"), 255.0);  // integers are accepted where a number is expected
  EXPECT_FALSE(f->get_bool("u8").is_ok());
  EXPECT_EQ(*f->get_int_array("ints"), (std::vector<int64_t>{-1, 2, 3}));
  EXPECT_EQ(*f->get_float_array("floats"), (std::vector<float>{1.5f, -1.0f}));
  EXPECT_FALSE(f->get_string_array("floats").is_ok());
  EXPECT_TRUE(f->get_string_array("empty")->empty());
  const GgufValue* nested = f->find("nested");
  ASSERT_NE(nested, nullptr);
  ASSERT_EQ(nested->size(), 2u);
  EXPECT_EQ(nested->at(0).element_type(), GgufType::UInt8);
  EXPECT_EQ(*nested->at(0).at(1).to_int(), 2);
  EXPECT_EQ(*nested->at(1).at(0).to_string(), "a");
  EXPECT_EQ(nested->describe(), "array<array>[2]");
}

// ---- the tiny model ----------------------------------------------------------------------------

TEST(GgufReader, LoadsTinyModel) {
  const std::string dir = fresh_dir();
  const std::string path = dir + "/tiny.gguf";
  write_bytes(path, tiny_llama().build());
  auto ckpt = load_gguf_checkpoint(path);
  ASSERT_TRUE(ckpt.is_ok()) << ckpt.status().message();
  const ModelConfig& c = ckpt->config;
  EXPECT_EQ(c.arch, "llama");
  EXPECT_EQ(c.name, "tiny");
  EXPECT_EQ(c.dim, 8);
  EXPECT_EQ(c.hidden_dim, 12);
  EXPECT_EQ(c.n_layers, 2);
  EXPECT_EQ(c.n_heads, 2);
  EXPECT_EQ(c.n_kv_heads, 1);
  EXPECT_EQ(c.head_dim, 4);
  EXPECT_EQ(c.vocab_size, 16);  // from the token list: no llama.vocab_size key
  EXPECT_EQ(c.context_length, 128);
  EXPECT_EQ(c.rope_theta, 500000.0f);
  EXPECT_EQ(c.rope_style, RopeStyle::Interleaved);
  EXPECT_EQ(c.rope_scaling.type, RopeScalingType::None);
  EXPECT_FALSE(c.tied_embeddings);
  EXPECT_FALSE(c.attn_qkv_bias);
  EXPECT_EQ(c.bos_token_id, 1);
  EXPECT_EQ(c.eos_token_id, 2);
  EXPECT_EQ(ckpt->source, path);
  EXPECT_EQ(ckpt->tensors.size(), 2u + 2 * 9 + 1);
  const Tensor* embd = ckpt->find("token_embd.weight");
  ASSERT_NE(embd, nullptr);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{16, 8}));
  EXPECT_EQ(embd->nbytes, 16u * 8 * 4);
  ASSERT_EQ(ckpt->storage.size(), 1u);
  const auto* mapped = static_cast<const MappedFile*>(ckpt->storage[0].get());
  EXPECT_GE(embd->data, mapped->data());
  EXPECT_LE(embd->data + embd->nbytes, mapped->data() + mapped->size());
}

TEST(GgufReader, TruncationAtEveryOffsetFailsCleanly) {
  const GgufBuilder b = tiny_llama();
  const std::string bytes = b.build();
  // Every offset through the header and tensor table, then a spread of offsets into the data
  // (all before the end of the last tensor's bytes, so every cut removes needed data).
  std::vector<size_t> cuts;
  for (size_t n = 0; n <= b.data_start() + 8; ++n) cuts.push_back(n);
  for (size_t n = b.data_start() + 9; n < bytes.size() - 32; n += 37) cuts.push_back(n);
  cuts.push_back(bytes.size() - 32);  // output.weight's 512 bytes end exactly at the end of the file
  const std::string name = "/models/cut.gguf";
  for (size_t n : cuts) {
    // A copy of exactly n bytes, so reading past the cut would be caught by ASan.
    const std::vector<char> prefix(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    auto file = GgufFile::open_memory(prefix.data(), prefix.size(), name);
    Status st = file.status();
    if (file.is_ok()) st = checkpoint_from_gguf(*file).status();
    ASSERT_FALSE(st.is_ok()) << "cut at " << n;
    ASSERT_EQ(st.message().rfind(name + ": ", 0), 0u) << "cut at " << n << ": " << st.message();
  }

  // The same through real files, for a sample of the cuts (each in a new file: rewriting one
  // file in place makes ext4 flush it to disk every time).
  const std::string dir = fresh_dir();
  for (size_t i = 0; i < cuts.size(); i += cuts.size() / 40) {
    const std::string path = dir + "/cut" + std::to_string(cuts[i]) + ".gguf";
    write_bytes(path, bytes.substr(0, cuts[i]));
    const Status st = load_gguf_checkpoint(path).status();
    ASSERT_FALSE(st.is_ok()) << "cut at " << cuts[i];
    ASSERT_EQ(st.message().rfind(path + ": ", 0), 0u) << "cut at " << cuts[i] << ": " << st.message();
  }
  write_bytes(dir + "/whole.gguf", bytes);
  EXPECT_TRUE(load_gguf_checkpoint(dir + "/whole.gguf").is_ok());
}

TEST(GgufReader, RejectsBadHeaders) {
  GgufBuilder b = tiny_llama();
  b.magic = 0x46554746;  // "FGUF"
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "not a GGUF file");
  EXPECT_ERROR_CONTAINS(open_status(""), "too small");
  EXPECT_ERROR_CONTAINS(open_status("GGU"), "too small");

  b = tiny_llama();
  b.version = 1;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "GGUF version 1 is not supported");
  b.version = 4;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "unsupported GGUF version 4");
  b.version = 0x03000000;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "big-endian");
  b.version = 2;
  EXPECT_TRUE(open_status(b.build()).is_ok());

  b = tiny_llama();
  b.n_kv_override = uint64_t{1} << 62;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "metadata entries");
  b = tiny_llama();
  b.n_tensors_override = ~uint64_t{0};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "tensors");
  b = tiny_llama();
  b.n_kv_override = 100;  // plausible for the size, but the entries are not there
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "truncated");
}

TEST(GgufReader, RejectsBadMetadata) {
  GgufBuilder b = tiny_llama();
  b.set("general.name", 8, GgufBuilder::u64(uint64_t{1} << 60) + "x");  // huge string length
  EXPECT_ERROR_CONTAINS(open_status(b.build(), "huge_string.gguf"), "huge_string.gguf: truncated");

  b = tiny_llama();
  b.set("big.array", 9, GgufBuilder::u32(4) + GgufBuilder::u64(uint64_t{1} << 61));
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "big.array claims 2305843009213693952 elements");

  b = tiny_llama();
  b.set("bad.type", 13, "");
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "bad.type has unknown value type 13");

  b = tiny_llama();
  b.set("bad.bool", 7, "\x02");
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "bad.bool");

  // Arrays nested beyond any legitimate use are rejected (and do not recurse without bound).
  std::string deep = GgufBuilder::u32(0) + GgufBuilder::u64(0);
  for (int i = 0; i < 1000; ++i) deep = GgufBuilder::u32(9) + GgufBuilder::u64(1) + deep;
  b = tiny_llama();
  b.set("deep", 9, deep);
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "nests arrays");

  b = tiny_llama();
  b.set("general.alignment", 4, GgufBuilder::u32(24));
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "general.alignment must be a power of two");

  // Duplicate keys: build by hand since the builder replaces.
  b = tiny_llama();
  std::string bytes = b.build();
  const std::string key = GgufBuilder::str("general.name");
  const size_t at = bytes.find(GgufBuilder::str("general.architecture"));
  ASSERT_NE(at, std::string::npos);
  bytes.replace(at, GgufBuilder::str("general.architecture").size() + 4 + GgufBuilder::str("llama").size(),
                GgufBuilder::str("general.name") + GgufBuilder::u32(8) + GgufBuilder::str("dupli"));
  EXPECT_ERROR_CONTAINS(open_status(bytes), "duplicate metadata key general.name");
}

TEST(GgufReader, RejectsBadTensorInfo) {
  GgufBuilder b = tiny_llama();
  b.tensor("blk.0.ffn_up.weight")->type = 6;  // Q5_0
  EXPECT_ERROR_CONTAINS(open_status(b.build(), "q5.gguf"),
                        "q5.gguf: tensor blk.0.ffn_up.weight has type Q5_0, which anvil cannot read yet");
  b.tensor("blk.0.ffn_up.weight")->type = 1234;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "has type type 1234");

  b = tiny_llama();
  b.tensor("output.weight")->offset = 1 << 20;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "tensor output.weight");
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "extends past the end of the file");
  b.tensor("output.weight")->offset = ~uint64_t{0} - 31;  // offset + size overflows
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "extends past the end of the file");

  b = tiny_llama();
  b.tensor("output_norm.weight")->offset = 4;
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "not a multiple of the alignment");

  b = tiny_llama();
  b.tensor("blk.1.attn_q.weight")->ne = {8, 8, 1, 1, 1};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "blk.1.attn_q.weight has 5 dimensions");
  b.tensor("blk.1.attn_q.weight")->ne = {};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "blk.1.attn_q.weight has 0 dimensions");
  b.tensor("blk.1.attn_q.weight")->ne = {8, 0};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "invalid dimension 0");
  b.tensor("blk.1.attn_q.weight")->ne = {uint64_t{1} << 40, uint64_t{1} << 40};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "overflow");
  b.tensor("blk.1.attn_q.weight")->ne = {uint64_t{1} << 40};
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "needs more bytes than the file has");

  b = tiny_llama();
  GgufBuilder::TensorSpec q8;
  q8.name = "extra.weight";
  q8.ne = {48, 1};
  q8.type = 8;  // Q8_0 with a row of 48: not whole blocks
  q8.data.assign(68, '\0');
  b.add_tensor(q8);
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "extra.weight has rows of 48 elements, not a multiple of the Q8_0 block size 32");

  b = tiny_llama();
  b.add_f32("output.weight", {16, 8});  // a second tensor with the same name
  EXPECT_ERROR_CONTAINS(open_status(b.build()), "duplicate tensor output.weight");
}

TEST(GgufReader, RejectsInconsistentModels) {
  GgufBuilder b = tiny_llama();
  b.remove("llama.block_count");
  EXPECT_ERROR_CONTAINS(load_status(b.build(), "nokey.gguf"), "nokey.gguf: missing required metadata key llama.block_count");

  b = tiny_llama();
  b.remove("general.architecture");
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "general.architecture");

  b = tiny_llama();
  b.set_str("general.architecture", "gpt2");
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "unknown architecture 'gpt2'; anvil supports: llama, qwen2");

  b = tiny_llama();
  b.set_str("llama.embedding_length", "eight");
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "llama.embedding_length is string 'eight', expected an integer");

  b = tiny_llama();
  b.set_u32("llama.attention.head_count", 0);
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "llama.attention.head_count must be a positive integer");

  b = tiny_llama();
  b.set_str("llama.rope.scaling.type", "yarn");
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "rope scaling type 'yarn' is not supported");

  b = tiny_llama();
  b.remove_tensor("blk.1.ffn_up.weight");
  EXPECT_ERROR_CONTAINS(load_status(b.build(), "x.gguf"), "x.gguf: missing tensor blk.1.ffn_up.weight");

  b = tiny_llama();
  b.tensor("blk.0.attn_k.weight")->ne = {8, 8};
  b.tensor("blk.0.attn_k.weight")->data.assign(8 * 8 * 4, '\0');
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "tensor blk.0.attn_k.weight has shape (8, 8), expected (4, 8)");

  b = tiny_llama();
  b.set_u32("llama.vocab_size", 8);  // fewer than the tokenizer's tokens
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "tokenizer has 16 tokens");

  b = tiny_llama();
  b.set("tokenizer.ggml.scores", 9, GgufBuilder::u32(6) + GgufBuilder::u64(1) + GgufBuilder::f32(0));
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "tokenizer.ggml.scores has 1 entries for 16 tokens");

  // Optional pieces: a tied output, linear RoPE scaling, qkv biases, rope_freqs.
  b = tiny_llama();
  b.remove_tensor("output.weight");
  b.set_str("llama.rope.scaling.type", "linear");
  b.set_f32("llama.rope.scaling.factor", 4.0f);
  b.set_u32("llama.attention.sliding_window", 64);
  b.add_f32("rope_freqs.weight", {2});
  for (int l = 0; l < 2; ++l) {
    b.add_f32("blk." + std::to_string(l) + ".attn_q.bias", {8});
    b.add_f32("blk." + std::to_string(l) + ".attn_k.bias", {4});
    b.add_f32("blk." + std::to_string(l) + ".attn_v.bias", {4});
  }
  const std::string path = fresh_dir() + "/optional.gguf";
  write_bytes(path, b.build());
  auto ckpt = load_gguf_checkpoint(path);
  ASSERT_TRUE(ckpt.is_ok()) << ckpt.status().message();
  EXPECT_TRUE(ckpt->config.tied_embeddings);
  EXPECT_TRUE(ckpt->config.attn_qkv_bias);
  EXPECT_EQ(ckpt->config.rope_scaling.type, RopeScalingType::Linear);
  EXPECT_EQ(ckpt->config.rope_scaling.factor, 4.0f);
  EXPECT_EQ(ckpt->config.sliding_window, 64);
  EXPECT_NE(ckpt->find("rope_freqs.weight"), nullptr);

  b.remove_tensor("blk.1.attn_v.bias");
  EXPECT_ERROR_CONTAINS(load_status(b.build()), "missing tensor blk.1.attn_v.bias");
}

}  // namespace
}  // namespace anvil
