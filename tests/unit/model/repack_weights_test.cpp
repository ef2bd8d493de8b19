// repack_weights_for_decode: which tensors become panels, what happens to the memory they came
// from, and a model on panels giving the logits of the same model on GGML rows (decode, prefill on
// the oneDNN path, embedding lookups of a tied table), the other matrices of a file mapping moving
// into weight memory, and GGUF writers refusing panels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <numeric>

#include "compute/cpu/gemv.h"
#include "formats/gguf_writer.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "model/presets.h"
#include "model/repack_weights.h"
#include "quant/quantize_checkpoint.h"

namespace anvil {
namespace {

Checkpoint preset(const std::string& spec) {
  Result<Checkpoint> c = create_dummy_checkpoint(spec);
  EXPECT_TRUE(c) << c.status().message();
  return std::move(c).value();
}

// Logits of every position of `tokens` in one forward pass (all_logits), then of `more` decoded one
// at a time after them.
std::vector<float> run_logits(const Checkpoint& checkpoint, const std::vector<int32_t>& tokens, int more) {
  auto model = DecoderModel::create(std::make_shared<const Checkpoint>(checkpoint));
  EXPECT_TRUE(model) << model.status().message();
  ThreadPool pool(2);
  const int64_t vocab = checkpoint.config.vocab_size;
  SequenceKvCache cache = (*model)->make_cache(static_cast<int64_t>(tokens.size()) + more);
  std::vector<float> logits(tokens.size() * vocab);
  EXPECT_TRUE((*model)->forward(tokens, cache, pool, logits.data(), /*all_logits=*/true).is_ok());
  for (int i = 0; i < more; ++i) {
    std::vector<float> step(vocab);
    const int32_t next = static_cast<int32_t>((tokens.back() * 7 + i * 13) % vocab);
    EXPECT_TRUE((*model)->forward(std::vector<int32_t>{next}, cache, pool, step.data(), false).is_ok());
    logits.insert(logits.end(), step.begin(), step.end());
  }
  return logits;
}

TEST(RepackWeights, PanelModelsGiveTheLogitsOfTheGgmlModel) {
  if (!gemv_prefers_panels(DType::Q4_0)) GTEST_SKIP() << "no panel kernels at this ISA (AVX2 or AVX-512)";
  // tiny-llama3 ties its output to the embedding table: the lookups read panels too. 100 prompt
  // tokens take the oneDNN prefill path (>= kQuantizedGemmMinTokens), the rest decode on GEMV.
  // Q4_K needs rows of whole 256-blocks: small-llama (512 wide, 1536 FFN).
  for (const char* spec :
       {"dummy:tiny-llama:q4_0", "dummy:tiny-llama:q8_0", "dummy:tiny-llama3:q4_0", "dummy:small-llama:q4_k"}) {
    SCOPED_TRACE(spec);
    const Checkpoint rows = preset(spec);
    Checkpoint panels = preset(spec);
    const RepackReport report = repack_weights_for_decode(panels, 2);
    int64_t quantized = 0;
    for (const auto& [name, t] : rows.tensors) quantized += t.shape.size() == 2 && dtype_is_ggml_block(t.dtype);
    EXPECT_EQ(report.tensors, quantized);
    for (const auto& [name, t] : panels.tensors) {
      if (t.shape.size() != 2 || !dtype_is_ggml_block(t.dtype)) continue;
      EXPECT_TRUE(dtype_is_panels(t.dtype)) << name;
      EXPECT_EQ(t.nbytes, rows.tensors.at(name).nbytes) << name;
    }
    std::vector<int32_t> prompt(100);
    std::iota(prompt.begin(), prompt.end(), 3);
    const std::vector<float> want = run_logits(rows, prompt, 8);
    const std::vector<float> got = run_logits(panels, prompt, 8);
    ASSERT_EQ(want.size(), got.size());
    // Prefill converts panels to exactly the bf16 values of the GGML rows: the same logits.
    const size_t prefill = prompt.size() * rows.config.vocab_size;
    for (size_t i = 0; i < prefill; ++i) ASSERT_EQ(got[i], want[i]) << "prefill logit " << i;
    float max_abs = 0, max_diff = 0;
    for (size_t i = prefill; i < want.size(); ++i) {
      max_abs = std::max(max_abs, std::fabs(want[i]));
      max_diff = std::max(max_diff, std::fabs(want[i] - got[i]));
    }
    // Decode: same int8 codes and exact integer block dots, only the f32 order of summing blocks
    // differs (Gemv.PanelsGiveTheResultsOfTheirGgmlRows: within 2e-6). In the tiny models that
    // stays ~1e-6 of the logits; in small-llama's 8 random layers a last-bit difference moves
    // some activation across an int8 rounding boundary (a whole step, ~1% of its block) and the
    // next layers carry that on, so there only the magnitude is checked.
    const bool deep = std::string(spec).find("small-llama") != std::string::npos;
    EXPECT_LT(max_diff, (deep ? 5e-2f : 1e-5f) * max_abs) << "max |diff| " << max_diff << " of max |logit| " << max_abs;
  }
}

// From a GGUF file: the panels are copies, the file's pages are dropped from the process (and
// come back from the file for whatever still reads them, e.g. the norms beside the matrices).
TEST(RepackWeights, GgufCheckpointsRepackFromTheMappedFile) {
  if (!gemv_prefers_panels(DType::Q4_0)) GTEST_SKIP() << "no panel kernels at this ISA (AVX2 or AVX-512)";
  const std::string path = (std::filesystem::temp_directory_path() / "anvil_repack_q4_0.gguf").string();
  ASSERT_TRUE(write_gguf(preset("dummy:tiny-llama:q4_0"), path).is_ok());
  Result<Checkpoint> rows = load_checkpoint(path);
  Result<Checkpoint> panels = load_checkpoint(path);
  ASSERT_TRUE(rows && panels);
  ASSERT_EQ(panels->file_mappings.size(), 1u);
  EXPECT_GT(repack_weights_for_decode(*panels).tensors, 0);
  std::vector<int32_t> prompt(20);
  std::iota(prompt.begin(), prompt.end(), 5);
  const std::vector<float> want = run_logits(*rows, prompt, 4);
  const std::vector<float> got = run_logits(*panels, prompt, 4);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f * (1.0f + std::fabs(want[i]))) << i;
  std::filesystem::remove(path);
}

bool in_mapping(const Checkpoint& c, const void* p) {
  for (const auto& [start, size] : c.file_mappings)
    if (static_cast<const std::byte*>(p) >= start && static_cast<const std::byte*>(p) < start + size) return true;
  return false;
}

// The other matrices of a GGUF (here W4A16 with zero points, and the F32 embedding table and norms
// beside them) leave the file mapping for weight memory with their scales and zero points; the
// logits stay bit for bit those of the mapped model.
TEST(RepackWeights, MappedMatricesMoveIntoWeightMemoryWithTheirScales) {
  Checkpoint source = preset("dummy:tiny-llama");
  QuantizeOptions options;
  options.scheme = QuantScheme::W4A16Rtn;
  options.group_size = 32;
  options.asymmetric = true;
  ThreadPool pool(2);
  ASSERT_TRUE(quantize_checkpoint(source, options, pool).is_ok());
  const std::string path = (std::filesystem::temp_directory_path() / "anvil_move_w4a16.gguf").string();
  ASSERT_TRUE(write_gguf(source, path).is_ok());
  Result<Checkpoint> mapped = load_checkpoint(path);
  Result<Checkpoint> moved = load_checkpoint(path);
  ASSERT_TRUE(mapped && moved);
  ASSERT_EQ(moved->file_mappings.size(), 1u);
  const RepackReport report = repack_weights_for_decode(*moved);
  EXPECT_EQ(report.tensors, 0);
  int64_t matrices = 0, i4 = 0;
  for (const auto& [name, t] : moved->tensors) {
    if (t.shape.size() != 2) {
      EXPECT_TRUE(in_mapping(*moved, t.data)) << name << ": 1-D tensors stay in the mapping";
      continue;
    }
    ++matrices;
    EXPECT_FALSE(in_mapping(*moved, t.data)) << name;
    EXPECT_EQ(std::memcmp(t.data, mapped->tensors.at(name).data, t.nbytes), 0) << name;
    if (t.dtype != DType::I4) continue;
    ++i4;
    ASSERT_NE(t.quant.scale, nullptr);
    ASSERT_NE(t.quant.zero, nullptr);
    EXPECT_FALSE(in_mapping(*moved, t.quant.scale)) << name;
    EXPECT_FALSE(in_mapping(*moved, t.quant.zero)) << name;
    const size_t values = static_cast<size_t>(t.rows() * (t.cols() / t.quant.group)) * sizeof(float);
    EXPECT_EQ(std::memcmp(t.quant.scale, mapped->tensors.at(name).quant.scale, values), 0) << name;
    EXPECT_EQ(std::memcmp(t.quant.zero, mapped->tensors.at(name).quant.zero, values), 0) << name;
  }
  EXPECT_EQ(report.moved_tensors, matrices);
  EXPECT_GT(i4, 0);
  std::vector<int32_t> prompt(20);
  std::iota(prompt.begin(), prompt.end(), 3);
  EXPECT_EQ(run_logits(*moved, prompt, 4), run_logits(*mapped, prompt, 4));
  std::filesystem::remove(path);
}

TEST(RepackWeights, ReleasesMemoryItAloneHeldAndLeavesSharedBytesIntact) {
  if (!gemv_prefers_panels(DType::Q4_0)) GTEST_SKIP() << "no panel kernels at this ISA (AVX2 or AVX-512)";
  Checkpoint alone = preset("dummy:tiny-llama:q4_0");
  const size_t storage_before = alone.storage.size();
  repack_weights_for_decode(alone);
  EXPECT_EQ(alone.storage.size(), storage_before) << "each source buffer replaced by its panels";

  Checkpoint original = preset("dummy:tiny-llama:q4_0");
  Checkpoint copy = original;  // shares every buffer
  const Tensor before = original.tensors.at("blk.0.ffn_up.weight");
  std::vector<std::byte> bytes(before.data, before.data + before.nbytes);
  const RepackReport report = repack_weights_for_decode(copy);
  EXPECT_EQ(copy.storage.size(), original.storage.size() + static_cast<size_t>(report.tensors));
  const Tensor& after = original.tensors.at("blk.0.ffn_up.weight");
  EXPECT_EQ(after.dtype, DType::Q4_0);
  EXPECT_EQ(std::memcmp(after.data, bytes.data(), bytes.size()), 0) << "the other checkpoint's rows are untouched";
}

TEST(RepackWeights, OffSwitchAndOtherDtypesLeaveTheCheckpointAsLoaded) {
  Checkpoint f32 = preset("dummy:tiny-llama");
  EXPECT_EQ(repack_weights_for_decode(f32).tensors, 0);
  ::setenv("ANVIL_REPACK", "0", 1);
  Checkpoint q4 = preset("dummy:tiny-llama:q4_0");
  EXPECT_EQ(repack_weights_for_decode(q4).tensors, 0);
  ::unsetenv("ANVIL_REPACK");
  EXPECT_EQ(q4.tensors.at("blk.0.attn_q.weight").dtype, DType::Q4_0);
}

TEST(RepackWeights, GgufWriterRefusesPanels) {
  if (!gemv_prefers_panels(DType::Q4_0)) GTEST_SKIP() << "no panel kernels at this ISA (AVX2 or AVX-512)";
  Checkpoint q4 = preset("dummy:tiny-llama:q4_0");
  repack_weights_for_decode(q4);
  const std::string path = (std::filesystem::temp_directory_path() / "anvil_panels_refused.gguf").string();
  const Status written = write_gguf(q4, path);
  ASSERT_FALSE(written.is_ok());
  EXPECT_NE(written.message().find("Q4_0_R4"), std::string::npos) << written.message();
  EXPECT_NE(written.message().find("before repacking"), std::string::npos) << written.message();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace anvil
