// Tests for the safetensors reader/writer: round trips, an independent numpy writer, hostile input.
#include "formats/safetensors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace anvil {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, so tests can run in parallel processes.
std::string fresh_test_dir() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  fs::path dir = fs::path(ANVIL_TEST_TMP) / "safetensors" / (std::string(info->test_suite_name()) + "." + info->name());
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A safetensors file from a header text and a data section, with the header length as given.
std::string raw_file(const std::string& header, const std::string& data) {
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return bytes + header + data;
}

template <typename T>
Tensor view_of(const std::string& name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  Tensor t;
  t.name = name;
  t.dtype = dtype;
  t.shape = std::move(shape);
  t.data = reinterpret_cast<const std::byte*>(values.data());
  t.nbytes = values.size() * sizeof(T);
  return t;
}

std::vector<float> to_floats(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.numel()));
  dtype_info(t.dtype).to_float(t.data, out.data(), t.numel());
  return out;
}

// Opens `path` and expects an error that names the file (and contains `needle`, if given).
void expect_open_error(const std::string& path, const std::string& needle = "") {
  auto file = SafetensorsFile::open(path);
  ASSERT_FALSE(file.is_ok()) << path;
  EXPECT_NE(file.status().message().find(path), std::string::npos) << file.status().message();
  if (!needle.empty()) {
    EXPECT_NE(file.status().message().find(needle), std::string::npos) << file.status().message();
  }
}

std::string python_command(const std::string& args) {
  return std::string("\"") + ANVIL_PYTHON + "\" \"" + ANVIL_SOURCE_DIR +
         "/tests/golden/write_safetensors_fixture.py\" " + args;
}

bool python_available() {
  const std::string python = ANVIL_PYTHON;
  return !python.empty() && python.find("NOTFOUND") == std::string::npos;
}

struct RoundTripData {
  std::vector<float> f32 = {0.0f, 1.5f, -2.25f, 3.0e-3f, 1e20f, -7.0f};
  std::vector<uint16_t> f16 = {float_to_fp16(1.0f), float_to_fp16(-0.5f), float_to_fp16(65504.0f)};
  std::vector<uint16_t> bf16 = {float_to_bf16(2.0f), float_to_bf16(-3.0f), float_to_bf16(1e-30f),
                                float_to_bf16(0.15625f)};
  std::vector<Tensor> tensors() const {
    // The odd-sized F16 tensor is listed first: the writer must still keep the F32 one aligned.
    return {view_of("z.half", DType::F16, {3}, f16), view_of("a.float", DType::F32, {2, 3}, f32),
            view_of("m.brain", DType::BF16, {2, 1, 2}, bf16)};
  }
};

TEST(Safetensors, RoundTripF32F16BF16) {
  const std::string path = fresh_test_dir() + "/round.safetensors";
  RoundTripData data;
  ASSERT_TRUE(write_safetensors(path, data.tensors(), {{"format", "pt"}, {"note", "round trip"}}).is_ok());
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  auto file = SafetensorsFile::open(path);
  ASSERT_TRUE(file.is_ok()) << file.status().message();
  const SafetensorsFile& st = **file;
  EXPECT_EQ(st.data_start() % 8, 0u);
  EXPECT_EQ(st.metadata().at("format"), "pt");
  EXPECT_EQ(st.metadata().at("note"), "round trip");
  ASSERT_EQ(st.entries().size(), 3u);
  EXPECT_EQ(st.entries()[0].name, "a.float");  // sorted by name

  for (const Tensor& original : data.tensors()) {
    auto loaded = st.tensor(original.name);
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
    EXPECT_EQ(loaded->name, original.name);
    EXPECT_EQ(loaded->dtype, original.dtype);
    EXPECT_EQ(loaded->shape, original.shape);
    ASSERT_EQ(loaded->nbytes, original.nbytes);
    EXPECT_EQ(std::memcmp(loaded->data, original.data, original.nbytes), 0) << original.name;
    // Zero copy: the view points into the page-aligned map at the entry's file offset.
    const SafetensorsEntry* entry = st.find(original.name);
    ASSERT_NE(entry, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded->data) % 4096, entry->file_offset % 4096);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(loaded->data) % dtype_info(original.dtype).block_bytes, 0u);
  }
  EXPECT_EQ(st.entries()[0].dtype, "F32");
  EXPECT_EQ(st.find("m.brain")->dtype, "BF16");
  EXPECT_EQ(st.find("missing"), nullptr);
  auto missing = st.tensor("missing");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().message(), path + ": no tensor named missing");
}

TEST(Safetensors, RoundTripEmptyFileAndScalar) {
  const std::string dir = fresh_test_dir();
  ASSERT_TRUE(write_safetensors(dir + "/empty.safetensors", {}, {}).is_ok());
  auto empty = SafetensorsFile::open(dir + "/empty.safetensors");
  ASSERT_TRUE(empty.is_ok()) << empty.status().message();
  EXPECT_TRUE((*empty)->entries().empty());

  std::vector<float> value = {3.5f};
  std::vector<float> none;
  ASSERT_TRUE(write_safetensors(dir + "/scalar.safetensors",
                                {view_of("s", DType::F32, {}, value), view_of("e", DType::F32, {0, 4}, none)}, {})
                  .is_ok());
  auto scalar = SafetensorsFile::open(dir + "/scalar.safetensors");
  ASSERT_TRUE(scalar.is_ok()) << scalar.status().message();
  auto s = (*scalar)->tensor("s");
  ASSERT_TRUE(s.is_ok());
  EXPECT_TRUE(s->shape.empty());
  EXPECT_EQ(to_floats(*s), std::vector<float>({3.5f}));
  auto e = (*scalar)->tensor("e");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->nbytes, 0u);
  EXPECT_EQ(e->shape, std::vector<int64_t>({0, 4}));
}

TEST(Safetensors, WriterRejectsBadTensors) {
  const std::string path = fresh_test_dir() + "/bad.safetensors";
  std::vector<float> six(6, 1.0f);
  std::vector<uint8_t> block(34, 0);

  Tensor quantized = view_of("q", DType::Q8_0, {1, 32}, block);
  Status status = write_safetensors(path, {quantized}, {});
  ASSERT_FALSE(status.is_ok());
  EXPECT_EQ(status.message(), path + ": tensor q has type Q8_0; safetensors files are written from F32, F16 or BF16 tensors only");

  status = write_safetensors(path, {view_of("x", DType::F32, {2, 3}, six), view_of("x", DType::F32, {6}, six)}, {});
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("given twice"), std::string::npos);

  status = write_safetensors(path, {view_of("x", DType::F32, {2, 2}, six)}, {});
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("needs 16"), std::string::npos) << status.message();

  status = write_safetensors(path, {view_of("__metadata__", DType::F32, {6}, six)}, {});
  EXPECT_FALSE(status.is_ok());

  status = write_safetensors(fresh_test_dir() + "/no/such/dir/x.safetensors", {view_of("x", DType::F32, {6}, six)}, {});
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("cannot create"), std::string::npos);
  EXPECT_FALSE(fs::exists(path));
}

// The numpy fixture writes the format by hand; values here match tests/golden/write_safetensors_fixture.py.
TEST(Safetensors, ReadsIndependentNumpyWriter) {
  if (!python_available()) GTEST_SKIP() << "no python3";
  const std::string dir = fresh_test_dir();
  ASSERT_EQ(std::system(python_command("write \"" + dir + "\"").c_str()), 0);

  for (const char* file_name : {"padded.safetensors", "unpadded.safetensors"}) {
    SCOPED_TRACE(file_name);
    const std::string path = dir + "/" + file_name;
    auto file = SafetensorsFile::open(path);
    ASSERT_TRUE(file.is_ok()) << file.status().message();
    const SafetensorsFile& st = **file;
    EXPECT_EQ(st.metadata().at("format"), "pt");
    EXPECT_EQ(st.metadata().at("source"), "numpy");
    EXPECT_EQ(st.entries().size(), 7u);

    auto f32 = st.tensor("weight.f32");
    ASSERT_TRUE(f32.is_ok()) << f32.status().message();
    EXPECT_EQ(f32->shape, std::vector<int64_t>({3, 4}));
    std::vector<float> expected_f32;
    for (int i = 0; i < 12; ++i) expected_f32.push_back(i * 0.5f - 2.0f);
    EXPECT_EQ(to_floats(*f32), expected_f32);
    // Unpadded headers leave the data section at an odd offset; the reader hands out aligned copies.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(f32->data) % 4, 0u);

    auto f16 = st.tensor("weight.f16");
    ASSERT_TRUE(f16.is_ok());
    EXPECT_EQ(f16->dtype, DType::F16);
    EXPECT_EQ(to_floats(*f16), std::vector<float>({-0.5f, -0.25f, 0.0f, 0.25f, 0.5f, 0.75f}));

    auto bf16 = st.tensor("weight.bf16");
    ASSERT_TRUE(bf16.is_ok());
    EXPECT_EQ(bf16->dtype, DType::BF16);
    EXPECT_EQ(to_floats(*bf16), std::vector<float>({1.5f, -2.25f, 3.0f, 0.0078125f, -1024.0f}));

    auto scalar = st.tensor("scalar.f32");
    ASSERT_TRUE(scalar.is_ok());
    EXPECT_EQ(to_floats(*scalar), std::vector<float>({42.0f}));
    auto empty = st.tensor("empty.f32");
    ASSERT_TRUE(empty.is_ok());
    EXPECT_EQ(empty->numel(), 0);

    // Types anvil cannot compute with stay listed with their raw bytes for later loaders.
    const SafetensorsEntry* i8 = st.find("scale.i8");
    ASSERT_NE(i8, nullptr);
    EXPECT_EQ(i8->dtype, "I8");
    ASSERT_EQ(i8->nbytes, 4u);
    const auto* raw = reinterpret_cast<const int8_t*>(i8->data);
    EXPECT_EQ(std::vector<int8_t>(raw, raw + 4), std::vector<int8_t>({-128, -1, 0, 127}));
    const SafetensorsEntry* fp8 = st.find("weight.fp8");
    ASSERT_NE(fp8, nullptr);
    EXPECT_EQ(static_cast<uint8_t>(fp8->data[1]), 0xB8);
    auto fp8_tensor = st.tensor("weight.fp8");
    ASSERT_FALSE(fp8_tensor.is_ok());
    EXPECT_EQ(fp8_tensor.status().message(), path + ": tensor weight.fp8 has dtype F8_E4M3, which anvil cannot load yet");
  }
}

TEST(Safetensors, IndependentReaderAcceptsAnvilOutput) {
  if (!python_available()) GTEST_SKIP() << "no python3";
  const std::string path = fresh_test_dir() + "/anvil.safetensors";
  std::vector<float> a = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f};
  std::vector<uint16_t> b = {float_to_fp16(1.0f), float_to_fp16(-2.0f), float_to_fp16(0.5f)};
  std::vector<uint16_t> c = {float_to_bf16(1.0f), float_to_bf16(2.0f), float_to_bf16(3.0f), float_to_bf16(-4.0f)};
  ASSERT_TRUE(write_safetensors(path,
                                {view_of("b.f16", DType::F16, {3}, b), view_of("a.f32", DType::F32, {2, 3}, a),
                                 view_of("c.bf16", DType::BF16, {2, 2}, c)},
                                {{"format", "pt"}})
                  .is_ok());
  EXPECT_EQ(std::system(python_command("verify \"" + path + "\"").c_str()), 0);
}

TEST(Safetensors, TruncatedAtEveryOffsetFails) {
  const std::string dir = fresh_test_dir();
  const std::string good = dir + "/good.safetensors";
  RoundTripData data;
  ASSERT_TRUE(write_safetensors(good, data.tensors(), {{"format", "pt"}}).is_ok());
  const std::string bytes = read_bytes(good);
  ASSERT_GT(bytes.size(), 100u);
  // The last tensor ends at the end of the file, so every proper prefix is broken somewhere:
  // in the length, in the JSON, or in a tensor's data.
  const std::string path = dir + "/truncated.safetensors";
  for (size_t size = 0; size < bytes.size(); ++size) {
    SCOPED_TRACE(size);
    write_bytes(path, bytes.substr(0, size));
    expect_open_error(path);
  }
  write_bytes(path, bytes);
  EXPECT_TRUE(SafetensorsFile::open(path).is_ok());
}

TEST(Safetensors, RejectsBadHeaderLength) {
  const std::string dir = fresh_test_dir();
  const std::string path = dir + "/bad.safetensors";
  std::string bytes = raw_file("{}", "");
  bytes[5] = 0x01;  // 2^40 + 2
  write_bytes(path, bytes);
  expect_open_error(path, "over the 100 MB limit");

  bytes = raw_file("{}", "");
  bytes[0] = 3;  // one byte more than the file holds
  write_bytes(path, bytes);
  expect_open_error(path, "runs past the end of the file");

  write_bytes(path, "abc");
  expect_open_error(path, "too short");
  write_bytes(path, "");
  expect_open_error(path, "too short");

  expect_open_error(dir + "/does-not-exist.safetensors", "cannot open");
}

TEST(Safetensors, RejectsMalformedHeaders) {
  const std::string dir = fresh_test_dir();
  const std::string path = dir + "/bad.safetensors";
  const std::string data(24, '\0');
  struct Case {
    std::string header;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {"{\"a\": {\"dtype\": \"F32\"", "not valid JSON"},
      {"not json at all", "not valid JSON"},
      {"", "not valid JSON"},
      {"[1, 2]", "not an object"},
      {std::string(200, '[') + std::string(200, ']'), "nested deeper"},
      {"{\"__metadata__\": {\"x\": " + std::string(100, '[') + std::string(100, ']') + "}}", "nested deeper"},
      {"{\"__metadata__\": [1]}", "__metadata__ is not a JSON object"},
      {R"({"a": 5})", "tensor a is not described by a JSON object"},
      {R"({"a": {"shape": [2], "data_offsets": [0, 8]}})", "tensor a has no string 'dtype'"},
      {R"({"a": {"dtype": "Q9", "shape": [2], "data_offsets": [0, 8]}})", "tensor a has unknown dtype 'Q9'"},
      {R"({"a": {"dtype": "F32", "data_offsets": [0, 8]}})", "tensor a has no 'shape' array"},
      {R"({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}})", "not a non-negative integer: -2"},
      {R"({"a": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", "not a non-negative integer"},
      {R"({"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})", "overflows"},
      {R"({"a": {"dtype": "F32", "shape": [2]}})", "no 'data_offsets' pair"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", "no 'data_offsets' pair"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [-8, 0]}})", "no 'data_offsets' pair"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}})", "reversed data_offsets [8, 0]"},
      {R"({"a": {"dtype": "F32", "shape": [8], "data_offsets": [0, 32]}})",
       "data_offsets [0, 32] past the end of the data section (24 bytes"},
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [18446744073709551615, 18446744073709551615]}})",
       "past the end of the data section"},
      {R"({"a": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}})",
       "tensor a has dtype F32 and shape (2, 3), which need 24 bytes, but data_offsets [0, 20] hold 20"},
      {R"({"a": {"dtype": "F4", "shape": [3], "data_offsets": [0, 2]}})", "not a whole number of bytes"},
      {R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
       "tensors a and b overlap"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.header.substr(0, 80));
    write_bytes(path, raw_file(c.header, data));
    expect_open_error(path, c.needle);
  }
  // Well-formed corner cases are accepted: spaces after the JSON, zero-size tensors sharing an offset.
  write_bytes(path, raw_file(R"({"a": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}, "b": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}   )", data));
  EXPECT_TRUE(SafetensorsFile::open(path).is_ok());
}

// Random corruption of the header and length: anything may come back, but never a crash
// (run under ANVIL_SANITIZE to also rule out out-of-bounds reads).
TEST(Safetensors, SurvivesRandomCorruption) {
  const std::string dir = fresh_test_dir();
  const std::string good = dir + "/good.safetensors";
  RoundTripData data;
  ASSERT_TRUE(write_safetensors(good, data.tensors(), {{"format", "pt"}}).is_ok());
  const std::string bytes = read_bytes(good);
  const std::string path = dir + "/fuzzed.safetensors";
  std::mt19937 rng(1234);
  std::uniform_int_distribution<size_t> header_pos(0, bytes.size() - 1);
  const char alphabet[] = "0123456789[]{}\",:- eE.FUBIdtypeshaparofs\xff";
  std::uniform_int_distribution<size_t> pick(0, sizeof(alphabet) - 2);
  int opened = 0;
  for (int round = 0; round < 300; ++round) {
    std::string mutated = bytes;
    const int flips = 1 + round % 4;
    for (int i = 0; i < flips; ++i) mutated[header_pos(rng) % std::min<size_t>(mutated.size(), 200)] = alphabet[pick(rng)];
    write_bytes(path, mutated);
    auto file = SafetensorsFile::open(path);
    if (!file.is_ok()) {
      EXPECT_NE(file.status().message().find(path), std::string::npos);
      continue;
    }
    ++opened;
    for (const SafetensorsEntry& entry : (*file)->entries()) {
      ASSERT_LE(entry.file_offset + entry.nbytes, mutated.size());
      auto tensor = (*file)->tensor(entry);
      if (tensor.is_ok()) {
        EXPECT_EQ(tensor->nbytes, dtype_bytes(tensor->dtype, tensor->numel()));
      }
    }
  }
  EXPECT_GT(opened, 0);  // some mutations only touch data bytes or harmless header bytes
}

TEST(Safetensors, DTypeTable) {
  EXPECT_EQ(safetensors_dtype_bits("F32"), 32);
  EXPECT_EQ(safetensors_dtype_bits("F8_E4M3"), 8);
  EXPECT_EQ(safetensors_dtype_bits("I32"), 32);
  EXPECT_EQ(safetensors_dtype_bits("F4"), 4);
  EXPECT_EQ(safetensors_dtype_bits("f32"), 0);  // the spec's spelling is upper case
  EXPECT_EQ(safetensors_dtype_to_anvil("BF16"), DType::BF16);
  EXPECT_EQ(safetensors_dtype_to_anvil("I8"), std::nullopt);
  EXPECT_STREQ(safetensors_dtype_name(DType::F16), "F16");
  EXPECT_EQ(safetensors_dtype_name(DType::Q4_K), nullptr);
}

}  // namespace
}  // namespace anvil
