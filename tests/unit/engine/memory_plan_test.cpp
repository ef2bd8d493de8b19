// Memory planner: KV and weight formulas against hand arithmetic, TP splits, byte sizes, fit searches.
#include "engine/memory_plan.h"

#include <gtest/gtest.h>

#include "engine/kv_block_pool.h"
#include "model/presets.h"
#include "test_paths.h"

namespace anvil {
namespace {

const ModelConfig& preset_config(const std::string& name) {
  const ModelPreset* preset = find_model_preset(name);
  EXPECT_NE(preset, nullptr) << name;
  return preset->config;
}

PlannedWeights preset_weights(const std::string& spec) {
  Result<PlannedWeights> weights = plan_weights_for_spec(spec);
  EXPECT_TRUE(weights.is_ok()) << weights.status().message();
  return std::move(weights).value();
}

MemoryPlanInputs inputs(int64_t seqs, int64_t context, KvDtype kv_dtype, int64_t budget = int64_t{1} << 50) {
  MemoryPlanInputs in;
  in.max_num_seqs = seqs;
  in.context = context;
  in.kv_dtype = kv_dtype;
  in.threads = 4;
  in.budget_bytes = budget;
  return in;
}

MemoryPlan plan_or_die(const PlannedWeights& weights, const MemoryPlanInputs& in) {
  Result<MemoryPlan> plan = plan_memory(weights, in);
  EXPECT_TRUE(plan.is_ok()) << plan.status().message();
  return plan.is_ok() ? std::move(plan).value() : MemoryPlan{};
}

// The figure the issue asks for: 2 x 80 layers x 8 KV heads x 128 x 2 bytes x 32 x 4096.
TEST(MemoryPlan, Llama2_70bFp16KvAt32x4096IsExactly40GiB) {
  const ModelConfig& c = preset_config("llama-2-70b");
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::F16), 2 * 80 * 8 * 128 * 2);
  EXPECT_EQ(kv_bytes_per_token(c, DType::F16), 327680);
  const MemoryPlan plan = plan_or_die(preset_weights("dummy:llama-2-70b"), inputs(32, 4096, KvDtype::F16));
  EXPECT_EQ(plan.kv_bytes_per_token, 327680);
  EXPECT_EQ(plan.kv_bytes_per_sequence, int64_t{327680} * 4096);
  EXPECT_EQ(plan.kv_cache_bytes, int64_t{42949672960});
  EXPECT_EQ(plan.kv_cache_bytes, int64_t{40} << 30);
  EXPECT_EQ(plan.inputs.max_num_batched_tokens, 512);  // max(B, 512)
  EXPECT_EQ(plan.total_bytes, plan.weights_bytes + plan.kv_cache_bytes + plan.activation.total());
}

// Llama 3.2 1B by hand: 16 layers, 8 KV heads of 2048 / 32 = 64 dims.
TEST(MemoryPlan, Llama32_1bGqaKvByHand) {
  const ModelConfig& c = preset_config("llama-3.2-1b");
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::F16), 32768);  // 2 * 16 * 8 * 64 * 2
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::BF16), 32768);
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::F32), 65536);
  // 1-byte codes plus an f32 scale per layer, K/V and KV head: 16384 + 2 * 16 * 8 * 4.
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::Fp8), 17408);
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::Int8), 17408);
  EXPECT_EQ(kv_bytes_per_token(c, DType::F8_E4M3), 17408);
  EXPECT_EQ(kv_bytes_per_token(c, DType::I8), 17408);
  EXPECT_EQ(kv_bytes_per_token(c, DType::BF16), kv_bytes_per_token(c, KvDtype::BF16));
  EXPECT_EQ(kv_bytes_per_token(c, DType::F32), kv_bytes_per_token(c, KvDtype::F32));
  // Q8_0 rows of 8 * 64 = 512 elements: 16 blocks of 34 bytes.
  EXPECT_EQ(kv_bytes_per_token(c, DType::Q8_0), 2 * 16 * 16 * 34);

  const MemoryPlan plan = plan_or_die(preset_weights("dummy:llama-3.2-1b"), inputs(8, 8192, KvDtype::F16));
  EXPECT_EQ(plan.kv_bytes_per_sequence, int64_t{256} << 20);
  EXPECT_EQ(plan.kv_cache_bytes, int64_t{2} << 30);
  // Logits: 8 rows of 128256 f32; forward scratch: 512 tokens of
  // 3 * 2048 (hidden, normed, proj) + 2 * 2048 (q, attn_out) + 2 * 512 (k, v) + 2 * 8192 (gate, up) floats.
  EXPECT_EQ(plan.activation.logits, 8 * 128256 * 4);
  EXPECT_EQ(plan.activation.forward_scratch, int64_t{512} * (3 * 2048 + 2 * 2048 + 2 * 512 + 2 * 8192) * 4);
  EXPECT_GT(plan.activation.attention_scratch, 0);
}

TEST(MemoryPlan, PresetWeightsMatchTheRandomWeightPlanWithoutMaterializing) {
  for (const char* name : {"llama-2-70b", "llama-3.2-1b", "qwen2-0.5b", "tiny-llama"}) {
    const ModelPreset* preset = find_model_preset(name);
    ASSERT_NE(preset, nullptr);
    const PlannedWeights weights = preset_weights(std::string("dummy:") + name);
    int64_t sum = 0;
    for (const PlannedTensor& t : weights.tensors) sum += t.bytes;
    EXPECT_EQ(static_cast<uint64_t>(sum), dummy_weight_bytes(preset->config, preset->default_dtype)) << name;
    EXPECT_EQ(weight_bytes_per_rank(weights.tensors, weights.config, 1), sum) << name;
  }
  // The spec's dtype and --weights-dtype both re-plan the matrices (norms stay F32).
  const ModelConfig& c = preset_config("llama-2-70b");
  const PlannedWeights q4 = preset_weights("dummy:llama-2-70b:q4_0");
  int64_t q4_bytes = 0;
  for (const PlannedTensor& t : q4.tensors) q4_bytes += t.bytes;
  EXPECT_EQ(static_cast<uint64_t>(q4_bytes), dummy_weight_bytes(c, DType::Q4_0));
  Result<PlannedWeights> replanned = plan_weights_for_spec("dummy:llama-2-70b", DType::Q4_0);
  ASSERT_TRUE(replanned.is_ok());
  EXPECT_EQ(weight_bytes_per_rank(replanned->tensors, c, 1), q4_bytes);
  EXPECT_EQ(q4.dtype_summary, "Q4_0 + F32");
}

// tiny-llama in F32: dim 64, 4 heads of 16, 2 KV heads, ffn 160, vocab 512, 2 layers, untied.
//   embeddings + output 2 * 512 * 64 * 4 = 262144, output_norm 256; per layer: 2 norms of 256,
//   q and o 16384 each, k and v 8192 each, gate/up/down 40960 each.
TEST(MemoryPlan, TensorParallelSplitsMatricesAndKvHeads) {
  const PlannedWeights weights = preset_weights("dummy:tiny-llama");
  const ModelConfig& c = weights.config;
  EXPECT_EQ(weight_bytes_per_rank(weights.tensors, c, 1), 262144 + 256 + 2 * (512 + 2 * 16384 + 2 * 8192 + 3 * 40960));
  // tp 2: one KV head per rank, every matrix halved, norms whole.
  EXPECT_EQ(kv_heads_per_rank(c, 2), 1);
  EXPECT_EQ(weight_bytes_per_rank(weights.tensors, c, 2),
            262144 / 2 + 256 + 2 * (512 + 2 * 16384 / 2 + 2 * 8192 / 2 + 3 * 40960 / 2));

  const ModelConfig& big = preset_config("llama-2-70b");
  EXPECT_EQ(kv_heads_per_rank(big, 4), 2);
  EXPECT_EQ(kv_bytes_per_token(big, KvDtype::F16, 4), 2 * 80 * 2 * 128 * 2);
  EXPECT_EQ(kv_bytes_per_token(big, KvDtype::F16, 8), 2 * 80 * 1 * 128 * 2);
  MemoryPlanInputs in = inputs(32, 4096, KvDtype::F16);
  in.tp = 4;
  const MemoryPlan plan = plan_or_die(preset_weights("dummy:llama-2-70b"), in);
  EXPECT_EQ(plan.kv_cache_bytes, int64_t{10} << 30);  // a quarter of 40 GiB per rank
  EXPECT_EQ(plan.kv_cache_bytes_all_ranks, int64_t{40} << 30);
  EXPECT_EQ(plan.weights_bytes_all_ranks, 4 * plan.weights_bytes);
  const MemoryPlan single = plan_or_die(preset_weights("dummy:llama-2-70b"), inputs(32, 4096, KvDtype::F16));
  // A rank holds a quarter of the matrices plus the whole norms: a little over a quarter.
  EXPECT_GT(plan.weights_bytes, single.weights_bytes / 4);
  EXPECT_LT(plan.weights_bytes, single.weights_bytes / 4 + 2 * 161 * 8192 * 4);
}

TEST(MemoryPlan, FewerKvHeadsThanRanksAreReplicated) {
  const PlannedWeights weights = preset_weights("dummy:tiny-llama");
  const ModelConfig& c = weights.config;
  // 2 KV heads over 4 ranks: each rank keeps one (each head lives on two ranks).
  EXPECT_EQ(kv_heads_per_rank(c, 4), 1);
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::F16, 4), 2 * 2 * 1 * 16 * 2);
  EXPECT_EQ(kv_bytes_per_token(c, KvDtype::F16, 1), 2 * 2 * 2 * 16 * 2);
  // k/v projections: half of each (one of two heads) per rank, not a quarter.
  EXPECT_EQ(weight_bytes_per_rank(weights.tensors, c, 4),
            262144 / 4 + 256 + 2 * (512 + 2 * 16384 / 4 + 2 * 8192 / 2 + 3 * 40960 / 4));
  EXPECT_TRUE(check_tensor_parallel(c, 4).is_ok());

  const ModelConfig& big = preset_config("llama-2-70b");  // 8 KV heads
  EXPECT_EQ(kv_heads_per_rank(big, 16), 1);
  EXPECT_EQ(kv_bytes_per_token(big, KvDtype::F16, 16), 2 * 80 * 1 * 128 * 2);
  MemoryPlanInputs in = inputs(32, 4096, KvDtype::F16);
  in.tp = 16;
  const MemoryPlan plan = plan_or_die(preset_weights("dummy:llama-2-70b"), in);
  EXPECT_EQ(plan.kv_cache_bytes_all_ranks, int64_t{80} << 30);  // every head held twice
}

TEST(MemoryPlan, RejectsTensorParallelSizesThatDoNotSplitTheHeads) {
  const ModelConfig& big = preset_config("llama-2-70b");
  Status status = check_tensor_parallel(big, 3);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("64 attention heads"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("1, 2, 4, 8, 16, 32, 64"), std::string::npos) << status.message();
  EXPECT_FALSE(check_tensor_parallel(big, 0).is_ok());
  EXPECT_TRUE(check_tensor_parallel(big, 8).is_ok());
  // qwen2-0.5b: 14 heads, 2 KV heads; 7 divides 14 but neither splits nor replicates 2 KV heads.
  status = check_tensor_parallel(preset_config("qwen2-0.5b"), 7);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("2 KV heads"), std::string::npos) << status.message();

  MemoryPlanInputs in = inputs(32, 4096, KvDtype::F16);
  in.tp = 3;
  EXPECT_FALSE(plan_memory(preset_weights("dummy:llama-2-70b"), in).is_ok());
}

TEST(MemoryPlan, ParsesByteSizes) {
  const std::pair<const char*, int64_t> cases[] = {
      {"24GiB", int64_t{24} << 30}, {"500MiB", int64_t{500} << 20}, {"40GB", 40000000000},
      {"123456", 123456},           {"1.5 GiB", int64_t{3} << 29},   {"64g", int64_t{64} << 30},
      {" 2 kib ", 2048},            {"1TB", 1000000000000},          {"7b", 7},
      {"0", 0},                     {"2TiB", int64_t{2} << 40},      {"0.5K", 512},
  };
  for (const auto& [text, bytes] : cases) {
    Result<int64_t> parsed = parse_byte_size(text);
    ASSERT_TRUE(parsed.is_ok()) << text << ": " << parsed.status().message();
    EXPECT_EQ(*parsed, bytes) << text;
  }
  for (const char* bad : {"", "   ", "abc", "GiB", "-5GiB", "24XB", "1e3", "1.5.GB", "99999999999999999999",
                          "9000000TiB", "12 Gibibytes"}) {
    Result<int64_t> parsed = parse_byte_size(bad);
    ASSERT_FALSE(parsed.is_ok()) << "'" << bad << "' parsed as " << *parsed;
    EXPECT_NE(parsed.status().message().find("is not a byte size"), std::string::npos);
  }
  EXPECT_NE(parse_byte_size("24XB").status().message().find("unknown unit 'XB'"), std::string::npos);
}

// The planner's bytes per token are what the engine's block pool allocates, for every KV dtype
// (and per rank under tensor parallelism, where the pool holds that rank's heads).
TEST(MemoryPlan, KvBytesPerTokenMatchTheBlockPool) {
  for (const char* name : {"llama-3.2-1b", "llama-2-70b", "tiny-llama"})
    for (KvDtype kv : {KvDtype::F32, KvDtype::F16, KvDtype::BF16, KvDtype::Fp8, KvDtype::Int8}) {
      const ModelConfig& c = preset_config(name);
      EXPECT_EQ(kv_bytes_per_token(c, kv) * 16, static_cast<int64_t>(KvBlockPool::block_bytes(c, kv_cache_dtype(kv), 16)))
          << name << " " << kv_dtype_name(kv);
      Result<KvBlockPool> pool = KvBlockPool::create(c, kv_cache_dtype(kv), 16, 3);
      ASSERT_TRUE(pool) << pool.status().message();
      EXPECT_GE(static_cast<int64_t>(pool->bytes()), 3 * 16 * kv_bytes_per_token(c, kv));
      EXPECT_LE(static_cast<int64_t>(pool->bytes()), 3 * 16 * kv_bytes_per_token(c, kv) + 64);  // scale alignment
      EXPECT_EQ(static_cast<int64_t>(pool->view().key_scales.size()),
                kv == KvDtype::Fp8 || kv == KvDtype::Int8 ? c.n_layers : 0);
    }
  EXPECT_EQ(kv_cache_dtype(KvDtype::Fp8), DType::F8_E4M3);
  EXPECT_EQ(kv_cache_dtype(KvDtype::Int8), DType::I8);
}

TEST(MemoryPlan, KvDtypeNames) {
  EXPECT_EQ(kv_dtype_from_name("FP8"), KvDtype::Fp8);
  EXPECT_EQ(kv_dtype_from_name("bf16"), KvDtype::BF16);
  EXPECT_EQ(kv_dtype_from_name("int8"), KvDtype::Int8);
  EXPECT_FALSE(kv_dtype_from_name("q4_0").has_value());
  EXPECT_FALSE(kv_dtype_from_name("f8").has_value());
  EXPECT_STREQ(kv_dtype_name(KvDtype::F16), "f16");
  EXPECT_EQ(kv_element_bytes(KvDtype::F32), 4);
}

// With a fixed step size every sequence costs its KV plus one logits row, so the fit is plain
// division: budget = fixed + 10 sequences fits exactly 10, one byte less fits 9.
TEST(MemoryPlan, MaxSequencesFitIsTheBudgetArithmetic) {
  const PlannedWeights weights = preset_weights("dummy:tiny-llama");
  MemoryPlanInputs in = inputs(1, 256, KvDtype::F16);
  in.max_num_batched_tokens = 512;
  const int64_t per_sequence = 256 * kv_bytes_per_token(weights.config, KvDtype::F16) + 512 * 4;
  const int64_t fixed = plan_or_die(weights, in).total_bytes - per_sequence;

  in.budget_bytes = fixed + 10 * per_sequence;
  EXPECT_EQ(plan_or_die(weights, in).max_num_seqs_fit, 10);
  in.max_num_seqs = 10;
  EXPECT_TRUE(plan_or_die(weights, in).fits);  // total == budget fits
  in.budget_bytes -= 1;
  EXPECT_FALSE(plan_or_die(weights, in).fits);
  EXPECT_EQ(plan_or_die(weights, in).max_num_seqs_fit, 9);
  // One sequence of one token (a whole block of 16 rows) is the least that can fit.
  in.max_num_seqs = 1;
  in.budget_bytes = fixed + 512 * 4 + 16 * kv_bytes_per_token(weights.config, KvDtype::F16) - 1;
  EXPECT_EQ(plan_or_die(weights, in).max_num_seqs_fit, 0);
  EXPECT_EQ(plan_or_die(weights, in).max_context_fit, 0);
  in.budget_bytes += 1;
  EXPECT_EQ(plan_or_die(weights, in).max_context_fit, 16);
}

// With the default step size (max(B, 512) tokens) the search must still land on the boundary.
TEST(MemoryPlan, MaxSequencesFitIsTheLargestThatFits) {
  const PlannedWeights weights = preset_weights("dummy:llama-3.2-1b");
  for (int64_t budget : {int64_t{3} << 30, int64_t{24} << 30, int64_t{500} << 30}) {
    MemoryPlanInputs in = inputs(1, 8192, KvDtype::F16, budget);
    const int64_t fit = plan_or_die(weights, in).max_num_seqs_fit;
    ASSERT_GT(fit, 0) << budget;
    in.max_num_seqs = fit;
    EXPECT_TRUE(plan_or_die(weights, in).fits) << budget;
    in.max_num_seqs = fit + 1;
    EXPECT_FALSE(plan_or_die(weights, in).fits) << budget;
  }
}

// Sequences take whole blocks: a budget sized for 100 tokens per sequence also holds 112.
TEST(MemoryPlan, MaxContextFitCountsWholeBlocks) {
  const PlannedWeights weights = preset_weights("dummy:tiny-llama");
  MemoryPlanInputs in = inputs(4, 100, KvDtype::F16);
  EXPECT_EQ(plan_or_die(weights, in).max_context_fit, 256);  // the model's limit
  in.budget_bytes = plan_or_die(weights, in).total_bytes;
  const MemoryPlan plan = plan_or_die(weights, in);
  EXPECT_TRUE(plan.fits);
  EXPECT_EQ(plan.kv_bytes_per_sequence, 112 * kv_bytes_per_token(weights.config, KvDtype::F16));
  EXPECT_EQ(plan.max_context_fit, 112);
}

TEST(MemoryPlan, RejectsBadInputsWithClearMessages) {
  const PlannedWeights weights = preset_weights("dummy:llama-2-70b");
  Result<MemoryPlan> plan = plan_memory(weights, inputs(32, 8192, KvDtype::F16));
  ASSERT_FALSE(plan.is_ok());
  EXPECT_NE(plan.status().message().find("context length of 4096"), std::string::npos) << plan.status().message();
  EXPECT_FALSE(plan_memory(weights, inputs(0, 4096, KvDtype::F16)).is_ok());
  EXPECT_FALSE(plan_memory(weights, inputs(1, -5, KvDtype::F16)).is_ok());
  // Context 0 means the model's whole context.
  ASSERT_TRUE(plan_memory(weights, inputs(1, 0, KvDtype::F16)).is_ok());
  EXPECT_EQ(plan_memory(weights, inputs(1, 0, KvDtype::F16))->inputs.context, 4096);

  Result<PlannedWeights> unknown = plan_weights_for_spec("dummy:llama-9");
  ASSERT_FALSE(unknown.is_ok());
  EXPECT_NE(unknown.status().message().find("unknown preset 'llama-9'"), std::string::npos);
  EXPECT_FALSE(plan_weights_for_spec("dummy:llama-2-70b:q9").is_ok());
  // Q4_K blocks are 256 elements; tiny-llama's rows are 64.
  Result<PlannedWeights> blocks = plan_weights_for_spec("dummy:tiny-llama", DType::Q4_K);
  ASSERT_FALSE(blocks.is_ok());
  EXPECT_NE(blocks.status().message().find("block of 256"), std::string::npos) << blocks.status().message();
  EXPECT_FALSE(plan_weights_for_spec(testing::shared_data("models/no-such-model.gguf")).is_ok());
}

TEST(MemoryPlan, FilesSumTheirTensorBytes) {
  const std::string path = testing::shared_data("models/stories260K.bin");
  Result<PlannedWeights> weights = plan_weights_for_spec(path);
  ASSERT_TRUE(weights.is_ok()) << weights.status().message();
  int64_t bytes = 0, params = 0, matrix_params = 0;
  for (const PlannedTensor& t : weights->tensors) {
    bytes += t.bytes;
    int64_t n = 1;
    for (int64_t d : t.shape) n *= d;
    params += n;
    if (t.shape.size() >= 2) matrix_params += n;
  }
  EXPECT_EQ(bytes, params * 4);  // llama2.c checkpoints are F32
  // Re-planned at F16 from the parameter counts: matrices halve, norms stay F32.
  Result<PlannedWeights> f16 = plan_weights_for_spec(path, DType::F16);
  ASSERT_TRUE(f16.is_ok()) << f16.status().message();
  EXPECT_EQ(weight_bytes_per_rank(f16->tensors, f16->config, 1), bytes - matrix_params * 2);
  // Its FFN rows are 172 wide: no whole Q8_0 blocks, and the message says so.
  Result<PlannedWeights> q8 = plan_weights_for_spec(path, DType::Q8_0);
  ASSERT_FALSE(q8.is_ok());
  EXPECT_NE(q8.status().message().find("rows of 172 elements"), std::string::npos) << q8.status().message();
  EXPECT_TRUE(plan_memory(*weights, inputs(4, 0, KvDtype::F32)).is_ok());
}

TEST(MemoryPlan, AvailableMemoryIsPositive) {
  Result<int64_t> available = available_memory_bytes();
  ASSERT_TRUE(available.is_ok()) << available.status().message();
  EXPECT_GT(*available, 0);
}

}  // namespace
}  // namespace anvil
