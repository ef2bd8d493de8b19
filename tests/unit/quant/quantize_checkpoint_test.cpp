// quantize_checkpoint on a random-weight model for every scheme, the GGUF round trip of scaled
// weights (companion tensors, metadata, RoPE row reordering) and the loader's companion errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "compute/cpu/matmul.h"
#include "engine/memory_plan.h"
#include "formats/gguf_checkpoint.h"
#include "formats/gguf_writer.h"
#include "formats/quant_companions.h"
#include "formats/rope_permute.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "quant/fp8.h"
#include "quant/calibration.h"
#include "quant/int8_w8a8.h"
#include "quant/quantize_checkpoint.h"
#include "test_paths.h"

namespace anvil {
namespace {

Checkpoint tiny() {
  Result<Checkpoint> c = load_checkpoint("dummy:tiny-llama");
  EXPECT_TRUE(c.is_ok()) << c.status().message();
  return std::move(c).value();
}

QuantizeOptions options_for(QuantScheme scheme, int64_t group = 32, bool asym = false, bool per_tensor = false) {
  QuantizeOptions o;
  o.scheme = scheme;
  o.group_size = group;
  o.asymmetric = asym;
  o.per_tensor = per_tensor;
  return o;
}

std::vector<float> last_logits(std::shared_ptr<const Checkpoint> checkpoint) {
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(std::move(checkpoint));
  EXPECT_TRUE(model.is_ok()) << model.status().message();
  if (!model) return {};
  ThreadPool pool(1);
  SequenceKvCache cache = (*model)->make_cache(8);
  std::vector<float> logits((*model)->config().vocab_size);
  const std::vector<int32_t> prompt = {1, 5, 9, 200};
  EXPECT_TRUE((*model)->forward(prompt, cache, pool, logits.data(), false).is_ok());
  return logits;
}

std::vector<float> all_logits(std::shared_ptr<const Checkpoint> checkpoint, const std::vector<int32_t>& tokens) {
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(std::move(checkpoint));
  EXPECT_TRUE(model.is_ok()) << model.status().message();
  if (!model) return {};
  ThreadPool pool(1);
  SequenceKvCache cache = (*model)->make_cache(static_cast<int64_t>(tokens.size()));
  std::vector<float> logits(tokens.size() * (*model)->config().vocab_size);
  EXPECT_TRUE((*model)->forward(tokens, cache, pool, logits.data(), true).is_ok());
  return logits;
}

std::vector<float> rows_f32(const Tensor& t) {
  std::vector<float> out(t.numel());
  for (int64_t r = 0; r < t.rows(); ++r) weight_row_to_f32(t, r, out.data() + r * t.cols());
  return out;
}

TEST(QuantizeCheckpoint, EverySchemeQuantizesTheLinearLayersOnly) {
  ThreadPool pool(2);
  struct Case {
    QuantizeOptions options;
    DType dtype;
    double max_rms;  // relative RMS round-trip error bound for these Gaussian-ish weights
  };
  const std::vector<Case> cases = {
      {options_for(QuantScheme::Fp8), DType::F8_E4M3, 0.04},
      {options_for(QuantScheme::Fp8, 32, false, true), DType::F8_E4M3, 0.04},
      {options_for(QuantScheme::Fp8Dynamic), DType::F8_E4M3, 0.04},
      {options_for(QuantScheme::Fp8Dynamic, 32, false, true), DType::F8_E4M3, 0.04},
      {options_for(QuantScheme::W8A8), DType::I8, 0.006},
      {options_for(QuantScheme::W4A16Rtn, 32), DType::I4, 0.1},
      {options_for(QuantScheme::W4A16Rtn, 32, true), DType::I4, 0.1},
      {options_for(QuantScheme::Q8_0), DType::Q8_0, 0.006},
      {options_for(QuantScheme::Q4_0), DType::Q4_0, 0.1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(quant_scheme_name(c.options.scheme));
    Checkpoint ckpt = tiny();
    Result<QuantizeReport> report = quantize_checkpoint(ckpt, c.options, pool);
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_EQ(report->tensors.size(), 2u * 7);
    EXPECT_LT(report->max_relative_rms_error(), c.max_rms);
    EXPECT_GT(report->max_relative_rms_error(), 0.0);
    EXPECT_LT(report->checkpoint_bytes_after, report->checkpoint_bytes_before);
    for (const auto& [name, t] : ckpt.tensors) {
      EXPECT_EQ(t.dtype, is_quantized_linear_weight(name) ? c.dtype : DType::F32) << name;
      EXPECT_TRUE(check_quant_scales(t).is_ok()) << check_quant_scales(t).message();
      // fp8-dynamic is fp8's weights with per-token E4M3 activations.
      const bool dynamic = c.options.scheme == QuantScheme::Fp8Dynamic && is_quantized_linear_weight(name);
      EXPECT_EQ(t.quant.activations, dynamic ? ActivationQuant::DynamicPerTokenFp8 : ActivationQuant::None) << name;
    }
    EXPECT_EQ(ckpt.quantization.scheme, quant_scheme_name(c.options.scheme));
    EXPECT_EQ(ckpt.quantization.activations, c.options.activations());
    EXPECT_FALSE(last_logits(std::make_shared<const Checkpoint>(ckpt)).empty());
  }
}

TEST(QuantizeCheckpoint, RowsThatDoNotFitTheGroupOrBlockAreClearErrors) {
  ThreadPool pool(1);
  Checkpoint ckpt = tiny();  // ffn_down rows have 160 elements
  Result<QuantizeReport> report = quantize_checkpoint(ckpt, options_for(QuantScheme::W4A16Rtn, 128), pool);
  ASSERT_FALSE(report.is_ok());
  // The first misfit is named; the hint is the largest group that fits every linear layer.
  EXPECT_NE(report.status().message().find("has rows of 64 elements, not a multiple of --group 128; try --group 32"),
            std::string::npos)
      << report.status().message();
  Checkpoint third = tiny();
  report = quantize_checkpoint(third, options_for(QuantScheme::W4A16Rtn, 64), pool);
  ASSERT_FALSE(report.is_ok());
  EXPECT_NE(report.status().message().find("ffn_down.weight has rows of 160 elements, not a multiple of --group 64; "
                                           "try --group 32"),
            std::string::npos)
      << report.status().message();
  Checkpoint again = tiny();
  report = quantize_checkpoint(again, options_for(QuantScheme::Q4_K), pool);
  ASSERT_FALSE(report.is_ok());
  EXPECT_NE(report.status().message().find("not a multiple of the Q4_K block of 256"), std::string::npos);
}

TEST(QuantizeOptions, RefusesOptionsTheSchemeDoesNotTake) {
  auto request = [](std::string scheme, std::optional<int64_t> group = {}, bool asym = false, bool per_tensor = false,
                    bool smoothquant = false, std::string calib = "") {
    QuantizeRequest r;
    r.scheme = std::move(scheme);
    r.group_size = group;
    r.asymmetric = asym;
    r.per_tensor = per_tensor;
    r.smoothquant = smoothquant;
    r.calibration_file = std::move(calib);
    return r;
  };
  auto error = [](const QuantizeRequest& r) { return make_quantize_options(r).status().message(); };
  Result<QuantizeOptions> ok = make_quantize_options(request("w4a16-rtn", 64, true));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->group_size, 64);
  EXPECT_TRUE(ok->asymmetric);
  EXPECT_EQ(make_quantize_options(request("w4a16-rtn"))->group_size, 128);
  EXPECT_NE(error(request("fp9")).find("unknown scheme 'fp9'"), std::string::npos);
  EXPECT_NE(error(request("w4a16-gptq")).find("--scheme w4a16-gptq needs calibration data: give --calib FILE"),
            std::string::npos);
  EXPECT_NE(error(request("w8a8", {}, false, false, true)).find("SmoothQuant needs calibration data"), std::string::npos);
  EXPECT_NE(error(request("fp8", {}, false, false, false, "calib.txt")).find("--calib: scheme fp8 takes no"),
            std::string::npos);
  EXPECT_NE(error(request("fp8", 64)).find("--group applies to w4a16-rtn and w4a16-gptq only"), std::string::npos);
  EXPECT_NE(error(request("w8a8", {}, true)).find("--asym applies"), std::string::npos);
  EXPECT_NE(error(request("w8a8", {}, false, true)).find("--per-tensor applies to fp8 and fp8-dynamic only"),
            std::string::npos);
  Result<QuantizeOptions> dynamic = make_quantize_options(request("fp8-dynamic", {}, false, true));
  ASSERT_TRUE(dynamic.is_ok()) << dynamic.status().message();
  EXPECT_EQ(dynamic->scheme, QuantScheme::Fp8Dynamic);
  EXPECT_TRUE(dynamic->per_tensor);
  EXPECT_EQ(dynamic->activations(), ActivationQuant::DynamicPerTokenFp8);
  EXPECT_EQ(quantization_info(*dynamic).scheme, "fp8-dynamic");
  EXPECT_EQ(quantization_info(*dynamic).granularity, "per-tensor");
  EXPECT_EQ(make_quantize_options(request("fp8"))->activations(), ActivationQuant::None);
  EXPECT_NE(error(request("fp8-dynamic", 64)).find("--group applies to w4a16-rtn and w4a16-gptq only"),
            std::string::npos);
  EXPECT_NE(error(request("w4a16-rtn", 48)).find("must be 32, 64 or 128"), std::string::npos);
}

// The output layer and the embeddings: llama-quantize's choices for the GGML schemes, kept
// (llm-compressor's lm_head ignore) for the others, and what --output-tensor-type /
// --token-embedding-type ask for.
TEST(QuantizeOptions, OutputAndEmbeddingTypesFollowLlamaQuantizeForTheGgmlSchemes) {
  auto options = [](std::string scheme, std::string output = "", std::string embedding = "") {
    QuantizeRequest r;
    r.scheme = std::move(scheme);
    r.output_tensor_type = std::move(output);
    r.token_embedding_type = std::move(embedding);
    return make_quantize_options(r);
  };
  for (const char* scheme : {"q4_0", "q4_k"}) {
    Result<QuantizeOptions> o = options(scheme);
    ASSERT_TRUE(o.is_ok()) << o.status().message();
    EXPECT_EQ(o->output_type, DType::Q6_K) << scheme;
    EXPECT_EQ(o->embedding_type, quant_scheme_dtype(o->scheme)) << scheme;
    EXPECT_FALSE(o->output_type_given || o->embedding_type_given);
  }
  EXPECT_EQ(options("q8_0")->output_type, DType::Q8_0);
  EXPECT_EQ(options("q8_0")->embedding_type, DType::Q8_0);
  for (const char* scheme : {"fp8", "fp8-dynamic", "w8a8", "w4a16-rtn"}) {
    EXPECT_FALSE(options(scheme)->output_type.has_value()) << scheme;
    EXPECT_FALSE(options(scheme)->embedding_type.has_value()) << scheme;
  }
  Result<QuantizeOptions> asked = options("q4_0", "keep", "q8_0");
  ASSERT_TRUE(asked.is_ok()) << asked.status().message();
  EXPECT_FALSE(asked->output_type.has_value());
  EXPECT_TRUE(asked->output_type_given);
  EXPECT_EQ(asked->embedding_type, DType::Q8_0);
  EXPECT_TRUE(asked->embedding_type_given);
  EXPECT_EQ(options("fp8", "bf16")->output_type, DType::BF16);
  EXPECT_NE(options("q4_0", "q5_k").status().message().find(
                "--output-tensor-type q5_k: use f32, f16, bf16, q8_0, q4_0, q4_k, q6_k or keep"),
            std::string::npos)
      << options("q4_0", "q5_k").status().message();
  EXPECT_NE(options("q4_0", "", "i8").status().message().find("--token-embedding-type i8: use"), std::string::npos);
}

TEST(QuantizeCheckpoint, OutputLayerAndEmbeddingTakeTheirTypes) {
  ThreadPool pool(2);
  QuantizeOptions q4 = options_for(QuantScheme::Q4_0);
  q4.output_type = DType::Q6_K;
  q4.embedding_type = DType::Q4_0;
  {
    // Untied (tiny-llama): rows of 64 are not whole Q6_K blocks, so the output layer falls back
    // to Q8_0 as llama-quantize's does; the embedding takes the scheme's type.
    Checkpoint ckpt = tiny();
    const std::vector<float> output_before = rows_f32(ckpt.tensors.at("output.weight"));
    Result<QuantizeReport> report = quantize_checkpoint(ckpt, q4, pool);
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_EQ(ckpt.tensors.at("output.weight").dtype, DType::Q8_0);
    EXPECT_EQ(ckpt.tensors.at("token_embd.weight").dtype, DType::Q4_0);
    ASSERT_EQ(report->head_tensors.size(), 2u);
    EXPECT_EQ(report->tensors.size(), 2u * 7);  // the linear-weight figures leave them out
    for (const TensorQuantReport& t : report->head_tensors) {
      EXPECT_EQ(t.from, DType::F32) << t.name;
      EXPECT_GT(t.relative_rms_error, 0.0) << t.name;
      EXPECT_LT(t.relative_rms_error, t.to == DType::Q8_0 ? 0.006 : 0.1) << t.name;
    }
    // The round-trip error is against the source rows: recompute it for the output layer.
    const std::vector<float> output_after = rows_f32(ckpt.tensors.at("output.weight"));
    double e2 = 0, r2 = 0;
    for (size_t i = 0; i < output_after.size(); ++i) {
      e2 += (output_after[i] - output_before[i]) * static_cast<double>(output_after[i] - output_before[i]);
      r2 += output_before[i] * static_cast<double>(output_before[i]);
    }
    const auto output_report = std::find_if(report->head_tensors.begin(), report->head_tensors.end(),
                                            [](const TensorQuantReport& t) { return t.name == "output.weight"; });
    ASSERT_NE(output_report, report->head_tensors.end());
    EXPECT_NEAR(output_report->relative_rms_error, std::sqrt(e2 / r2), 1e-9);
    EXPECT_FALSE(last_logits(std::make_shared<const Checkpoint>(ckpt)).empty());
  }
  {
    // Tied (tiny-llama3): the embedding is the output layer and takes the output type.
    Result<Checkpoint> loaded = load_checkpoint("dummy:tiny-llama3");
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
    Checkpoint ckpt = std::move(loaded).value();
    ASSERT_EQ(ckpt.tensors.count("output.weight"), 0u);
    QuantizeOptions q8 = q4;
    q8.output_type = DType::Q8_0;
    Result<QuantizeReport> report = quantize_checkpoint(ckpt, q8, pool);
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_EQ(ckpt.tensors.at("token_embd.weight").dtype, DType::Q8_0);
    ASSERT_EQ(report->head_tensors.size(), 1u);
    EXPECT_FALSE(last_logits(std::make_shared<const Checkpoint>(ckpt)).empty());
    // --token-embedding-type, when given, wins for the shared tensor (as in llama-quantize).
    Result<Checkpoint> again = load_checkpoint("dummy:tiny-llama3");
    ASSERT_TRUE(again.is_ok());
    QuantizeOptions embedding_asked = q8;
    embedding_asked.embedding_type = DType::F16;
    embedding_asked.embedding_type_given = true;
    ASSERT_TRUE(quantize_checkpoint(*again, embedding_asked, pool).is_ok());
    EXPECT_EQ(again->tensors.at("token_embd.weight").dtype, DType::F16);
  }
  {
    // Asked for: a type the rows do not fit is an error, not a fallback, found before any weight
    // is quantized.
    Checkpoint ckpt = tiny();
    QuantizeOptions asked = q4;
    asked.output_type_given = true;
    Result<QuantizeReport> report = quantize_checkpoint(ckpt, asked, pool);
    ASSERT_FALSE(report.is_ok());
    EXPECT_NE(report.status().message().find("--output-tensor-type Q6_K: tensor output.weight has rows of 64 elements, "
                                             "not whole 256-element blocks"),
              std::string::npos)
        << report.status().message();
    EXPECT_EQ(ckpt.tensors.at("blk.0.attn_q.weight").dtype, DType::F32);
  }
  {
    // Kept (the non-GGML schemes' default): untouched, not reported.
    Checkpoint ckpt = tiny();
    Result<QuantizeReport> report = quantize_checkpoint(ckpt, options_for(QuantScheme::W8A8), pool);
    ASSERT_TRUE(report.is_ok()) << report.status().message();
    EXPECT_TRUE(report->head_tensors.empty());
    EXPECT_EQ(ckpt.tensors.at("output.weight").dtype, DType::F32);
    EXPECT_EQ(ckpt.tensors.at("token_embd.weight").dtype, DType::F32);
  }
}

TEST(QuantizeOptions, CalibratedSchemesAndTheirOptions) {
  QuantizeRequest gptq;
  gptq.scheme = "w4a16-gptq";
  gptq.calibration_file = "calib.txt";
  gptq.group_size = 64;
  gptq.asymmetric = true;
  gptq.act_order = true;
  gptq.calibration_samples = 16;
  gptq.calibration_seq_len = 256;
  Result<QuantizeOptions> o = make_quantize_options(gptq);
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(o->scheme, QuantScheme::W4A16Gptq);
  EXPECT_TRUE(o->calibrated());
  EXPECT_EQ(o->calibration_source.text_file, "calib.txt");
  EXPECT_EQ(o->calibration.samples, 16);
  EXPECT_EQ(o->calibration.seq_len, 256);
  EXPECT_EQ(o->group_size, 64);
  EXPECT_TRUE(o->act_order);
  EXPECT_EQ(quantization_info(*o).scheme, "w4a16-gptq");
  EXPECT_TRUE(quantization_info(*o).act_order);

  QuantizeRequest sq;
  sq.scheme = "w8a8-smoothquant";
  sq.calibration_tokens_file = "ids.txt";
  sq.alpha = 0.8;
  o = make_quantize_options(sq);
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_EQ(o->scheme, QuantScheme::W8A8);
  EXPECT_TRUE(o->smoothquant);
  EXPECT_EQ(o->calibration.samples, 128);  // llm-compressor's defaults
  EXPECT_EQ(o->calibration.seq_len, 0);  // 512, or the model's context when shorter
  EXPECT_EQ(quantization_info(*o).scheme, "w8a8-smoothquant");
  EXPECT_EQ(quantization_info(*o).smoothquant_alpha, 0.8);

  auto error = [](QuantizeRequest r) { return make_quantize_options(r).status().message(); };
  QuantizeRequest r = sq;
  r.calibration_file = "calib.txt";
  EXPECT_NE(error(r).find("give one calibration source"), std::string::npos);
  r = sq;
  r.alpha = 1.5;
  EXPECT_NE(error(r).find("--alpha 1.5: SmoothQuant's migration strength must be between 0 and 1"), std::string::npos);
  r = gptq;
  r.alpha = 0.5;
  EXPECT_NE(error(r).find("--alpha applies to w8a8 --smoothquant only"), std::string::npos);
  r = sq;
  r.scheme = "fp8";
  r.smoothquant = true;
  EXPECT_NE(error(r).find("--smoothquant applies to w8a8 only, not fp8"), std::string::npos);
  r = sq;
  r.act_order = true;
  EXPECT_NE(error(r).find("--act-order applies to w4a16-gptq only"), std::string::npos);
  r = gptq;
  r.act_order = false;
  r.dynamic_groups = true;
  EXPECT_NE(error(r).find("--dynamic-groups applies to w4a16-gptq --act-order only"), std::string::npos);
  r.act_order = true;
  o = make_quantize_options(r);
  ASSERT_TRUE(o.is_ok()) << o.status().message();
  EXPECT_TRUE(o->dynamic_groups);
  EXPECT_TRUE(quantization_info(*o).dynamic_groups);
  EXPECT_FALSE(quantization_info(*make_quantize_options(gptq)).dynamic_groups);  // static groups
  r = gptq;
  r.calibration_samples = 0;
  EXPECT_NE(error(r).find("--calib-samples 0: must be between 1"), std::string::npos);
  QuantizeRequest plain;
  plain.scheme = "w8a8";
  plain.calibration_seq_len = 64;
  EXPECT_NE(error(plain).find("--calib-seq-len applies to the calibrated schemes"), std::string::npos);
  plain.calibration_seq_len.reset();
  plain.calibration_tokens_file = "ids.txt";
  EXPECT_NE(error(plain).find("--calib-tokens: scheme w8a8 takes no calibration data"), std::string::npos);
}

CalibrationSet random_calibration(int64_t vocab, int64_t samples, int64_t seq_len, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> id(3, static_cast<int32_t>(vocab - 1));
  std::vector<int32_t> stream(static_cast<size_t>(samples * seq_len));
  for (int32_t& t : stream) t = id(rng);
  Result<CalibrationSet> set = make_calibration_set(stream, {samples, seq_len}, 1, vocab, "random");
  EXPECT_TRUE(set.is_ok()) << set.status().message();
  return std::move(set).value();
}

QuantizeOptions calibrated_options(QuantScheme scheme, bool smoothquant = false) {
  QuantizeOptions o = options_for(scheme, 32);
  o.smoothquant = smoothquant;
  o.calibration_source.tokens_file = "in memory";
  return o;
}

TEST(QuantizeCheckpoint, GptqMeasuresItsOutputErrorBelowRoundToNearest) {
  ThreadPool pool(2);
  auto ckpt = std::make_shared<Checkpoint>(tiny());
  const CalibrationSet calibration = random_calibration(ckpt->config.vocab_size, 8, 32, 3);
  std::vector<int64_t> layers_seen;
  Result<QuantizeReport> report = quantize_checkpoint(
      *ckpt, calibrated_options(QuantScheme::W4A16Gptq), calibration, pool, {},
      [&](int64_t layer, int64_t n_layers, const QuantizeReport& so_far) {
        layers_seen.push_back(layer);
        EXPECT_EQ(n_layers, 2);
        EXPECT_EQ(static_cast<int64_t>(so_far.tensors.size()), 7 * (layer + 1));
      });
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  EXPECT_EQ(layers_seen, (std::vector<int64_t>{0, 1}));
  ASSERT_EQ(report->tensors.size(), 14u);
  EXPECT_EQ(report->calibration_samples, 8);
  EXPECT_EQ(report->calibration_seq_len, 32);
  for (const TensorQuantReport& t : report->tensors) {
    EXPECT_EQ(t.to, DType::I4) << t.name;
    EXPECT_GT(t.output_error, 0) << t.name;
    EXPECT_LT(t.output_error, t.rtn_output_error) << t.name;
    EXPECT_EQ(t.gptq_damp, 0.01) << t.name;
    EXPECT_EQ(ckpt->tensors.at(t.name).dtype, DType::I4);
  }
  std::printf("  tiny-llama w4a16 g32: mean relative output error gptq %.4e, rtn %.4e\n", report->mean_output_error(),
              report->mean_rtn_output_error());
  EXPECT_EQ(ckpt->quantization.scheme, "w4a16-gptq");
  EXPECT_EQ(ckpt->quantization.group_size, 32);
  EXPECT_FALSE(last_logits(ckpt).empty());

  // Without calibration data the scheme is refused, not silently round-to-nearest.
  Checkpoint other = tiny();
  Result<QuantizeReport> refused = quantize_checkpoint(other, calibrated_options(QuantScheme::W4A16Gptq), pool);
  ASSERT_FALSE(refused.is_ok());
  EXPECT_NE(refused.status().message().find("w4a16-gptq needs calibration data"), std::string::npos);
}

TEST(QuantizeCheckpoint, GptqFollowsTheFloatModelCloserThanRoundToNearest) {
  // On held-out tokens, logits of the GPTQ model stay closer to the f32 model's than RTN's do.
  ThreadPool pool(2);
  auto base = std::make_shared<Checkpoint>(tiny());
  const CalibrationSet calibration = random_calibration(base->config.vocab_size, 16, 64, 8);
  auto gptq = std::make_shared<Checkpoint>(*base);
  auto rtn = std::make_shared<Checkpoint>(*base);
  ASSERT_TRUE(quantize_checkpoint(*gptq, calibrated_options(QuantScheme::W4A16Gptq), calibration, pool).is_ok());
  ASSERT_TRUE(quantize_checkpoint(*rtn, options_for(QuantScheme::W4A16Rtn, 32), pool).is_ok());
  // Every position of held-out sequences drawn like the calibration set.
  const CalibrationSet held_out = random_calibration(base->config.vocab_size, 4, 64, 99);
  double eg = 0, er = 0, ref = 0;
  for (const std::vector<int32_t>& tokens : held_out.samples) {
    const std::vector<float> f = all_logits(base, tokens), g = all_logits(gptq, tokens), r = all_logits(rtn, tokens);
    for (size_t i = 0; i < f.size(); ++i)
      eg += (g[i] - f[i]) * (g[i] - f[i]), er += (r[i] - f[i]) * (r[i] - f[i]), ref += f[i] * f[i];
  }
  std::printf("  tiny-llama logits relative error vs f32: gptq %.4f, rtn %.4f\n", std::sqrt(eg / ref),
              std::sqrt(er / ref));
  EXPECT_LT(eg, er);
}

TEST(QuantizeCheckpoint, SmoothQuantFoldsIntoNormsAndQuantizesInt8) {
  ThreadPool pool(2);
  auto ckpt = std::make_shared<Checkpoint>(tiny());
  const Checkpoint original = *ckpt;
  const CalibrationSet calibration = random_calibration(ckpt->config.vocab_size, 4, 32, 4);
  QuantizeOptions options = calibrated_options(QuantScheme::W8A8, true);
  options.alpha = 0.6;
  Result<QuantizeReport> report = quantize_checkpoint(*ckpt, options, calibration, pool);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  ASSERT_EQ(report->tensors.size(), 14u);
  ASSERT_EQ(report->smoothing.size(), 4u);
  for (const TensorQuantReport& t : report->tensors) EXPECT_EQ(t.to, DType::I8) << t.name;
  EXPECT_EQ(ckpt->quantization.scheme, "w8a8-smoothquant");
  EXPECT_EQ(ckpt->quantization.smoothquant_alpha, 0.6);
  for (const char* norm : {"blk.0.attn_norm.weight", "blk.1.ffn_norm.weight"})
    EXPECT_NE(ckpt->tensors.at(norm).data, original.tensors.at(norm).data) << norm;
  EXPECT_EQ(ckpt->tensors.at("output_norm.weight").data, original.tensors.at("output_norm.weight").data);
  // The metadata survives GGUF, and the file computes what the checkpoint does.
  const std::string path = testing::scratch_dir("smoothquant_gguf") + "/sq.gguf";
  ASSERT_TRUE(write_gguf(*ckpt, path).is_ok());
  Result<Checkpoint> loaded = load_gguf_checkpoint(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  EXPECT_EQ(loaded->quantization.scheme, "w8a8-smoothquant");
  ASSERT_TRUE(loaded->quantization.smoothquant_alpha.has_value());
  EXPECT_FLOAT_EQ(static_cast<float>(*loaded->quantization.smoothquant_alpha), 0.6f);
  EXPECT_EQ(last_logits(ckpt), last_logits(std::make_shared<const Checkpoint>(std::move(loaded).value())));
}

TEST(QuantizedGguf, RoundTripKeepsCodesScalesMetadataAndLogits) {
  ThreadPool pool(2);
  const std::string dir = testing::scratch_dir("quantized_gguf");
  for (const QuantizeOptions& options : {options_for(QuantScheme::Fp8), options_for(QuantScheme::Fp8Dynamic),
                                         options_for(QuantScheme::W8A8),
                                         options_for(QuantScheme::W4A16Rtn, 32, true),
                                         options_for(QuantScheme::W4A16Rtn, 32, false)}) {
    SCOPED_TRACE(quant_scheme_name(options.scheme));
    auto ckpt = std::make_shared<Checkpoint>(tiny());
    ASSERT_TRUE(quantize_checkpoint(*ckpt, options, pool).is_ok());
    const std::string path = dir + "/" + quant_scheme_name(options.scheme) + ".gguf";
    ASSERT_TRUE(write_gguf(*ckpt, path).is_ok());
    Result<Checkpoint> loaded = load_gguf_checkpoint(path);
    ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
    EXPECT_EQ(loaded->tensors.size(), ckpt->tensors.size());  // companions are not model tensors
    EXPECT_EQ(loaded->quantization.scheme, ckpt->quantization.scheme);
    EXPECT_EQ(loaded->quantization.granularity, ckpt->quantization.granularity);
    EXPECT_EQ(loaded->quantization.group_size, ckpt->quantization.group_size);
    EXPECT_EQ(loaded->quantization.symmetric, ckpt->quantization.symmetric);
    EXPECT_EQ(loaded->quantization.activations, ckpt->quantization.activations);
    for (const auto& [name, t] : ckpt->tensors) {
      const Tensor* l = loaded->find(name);
      ASSERT_NE(l, nullptr) << name;
      EXPECT_EQ(l->dtype, t.dtype);
      EXPECT_EQ(std::memcmp(l->data, t.data, t.nbytes), 0) << name;
      EXPECT_EQ(l->quant.group, t.quant.group);
      EXPECT_EQ(l->quant.activations, t.quant.activations) << name;
      EXPECT_EQ(l->scale_bytes(), t.scale_bytes());
      if (t.has_scales()) {
        EXPECT_EQ(std::memcmp(l->quant.scale, t.quant.scale, t.rows() * t.scale_groups() * 4), 0) << name;
      }
      if (t.quant.zero) {
        EXPECT_EQ(std::memcmp(l->quant.zero, t.quant.zero, t.rows() * t.scale_groups() * 4), 0) << name;
      }
    }
    EXPECT_EQ(last_logits(ckpt), last_logits(std::make_shared<const Checkpoint>(std::move(loaded).value())));
  }
}

// A file records the activation quantization once for all F8_E4M3 weights: a checkpoint whose
// weights disagree cannot be written; a record the loader does not know is refused.
TEST(QuantizedGguf, Fp8DynamicActivationsAreOneRecordPerFile) {
  ThreadPool pool(1);
  Checkpoint ckpt = tiny();
  ASSERT_TRUE(quantize_checkpoint(ckpt, options_for(QuantScheme::Fp8Dynamic), pool).is_ok());
  ckpt.tensors.at("blk.1.ffn_down.weight").quant.activations = ActivationQuant::None;
  const std::string path = testing::scratch_dir("quantized_fp8_dynamic") + "/mixed.gguf";
  const Status status = write_gguf(ckpt, path);
  ASSERT_FALSE(status.is_ok());
  EXPECT_NE(status.message().find("(dynamic-per-token-fp8 activations) and blk.1.ffn_down.weight (none) differ in "
                                  "activation quantization"),
            std::string::npos)
      << status.message();
}

TEST(QuantizedGguf, RopeReorderingMovesScalesWithTheirRows) {
  ThreadPool pool(1);
  Checkpoint ckpt = tiny();
  ckpt.config.rope_style = RopeStyle::NeoX;  // as read from a Hugging Face directory
  ASSERT_TRUE(quantize_checkpoint(ckpt, options_for(QuantScheme::W4A16Rtn, 32, true), pool).is_ok());
  const std::string path = testing::scratch_dir("quantized_rope") + "/neox.gguf";
  ASSERT_TRUE(write_gguf(ckpt, path).is_ok());
  Result<Checkpoint> loaded = load_gguf_checkpoint(path);
  ASSERT_TRUE(loaded.is_ok()) << loaded.status().message();
  const Tensor& before = ckpt.tensors.at("blk.0.attn_q.weight");
  const Tensor& after = loaded->tensors.at("blk.0.attn_q.weight");
  const std::vector<float> a = rows_f32(before), b = rows_f32(after);
  const int64_t cols = before.cols(), head_dim = ckpt.config.head_dim;
  for (int64_t r = 0; r < before.rows(); ++r) {
    const int64_t src = rope_permuted_source_row(r, head_dim, RopeRowOrder::NeoXToInterleaved);
    for (int64_t c = 0; c < cols; ++c) ASSERT_EQ(b[r * cols + c], a[src * cols + c]) << "row " << r;
  }
}

// The schemes leave token_embd and output unquantized, but a file may quantize them: the
// embedding lookup and the output matmul then honour the scales too.
TEST(QuantizeCheckpoint, QuantizedEmbeddingAndOutputUseTheirScales) {
  ThreadPool pool(1);
  auto quantized = std::make_shared<Checkpoint>(tiny());
  auto dequantized = std::make_shared<Checkpoint>(*quantized);
  std::vector<std::vector<float>> keep_alive;
  for (const char* name : {"token_embd.weight", "output.weight"}) {
    Tensor& t = quantized->tensors.at(name);
    const std::vector<float> w = rows_f32(t);
    Result<QuantizedMatrix> q = quantize_fp8(name, w.data(), t.rows(), t.cols(), Fp8Granularity::PerChannel, pool);
    ASSERT_TRUE(q.is_ok());
    auto owned = std::make_shared<QuantizedMatrix>(std::move(q).value());
    t = owned->view(name);
    quantized->storage.push_back(owned);
    // The same values in f32, for the comparison model.
    keep_alive.push_back(rows_f32(t));
    Tensor& f = dequantized->tensors.at(name);
    f.data = reinterpret_cast<const std::byte*>(keep_alive.back().data());
  }
  const std::vector<float> a = last_logits(quantized), b = last_logits(dequantized);
  ASSERT_EQ(a.size(), b.size());
  double err = 0, ref = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err = std::max(err, static_cast<double>(std::fabs(a[i] - b[i])));
    ref = std::max(ref, static_cast<double>(std::fabs(b[i])));
  }
  // W8A16: the output matmul's x rounded to bf16 (quant/bf16_activations.h), 2^-9 relative per
  // activation at most; ignoring the scales would be off by O(1).
  EXPECT_LT(err / ref, 1e-2);
}

TEST(QuantizedGguf, MemoryPlanCountsScalesAndZeroPoints) {
  ThreadPool pool(1);
  Checkpoint ckpt = tiny();
  ASSERT_TRUE(quantize_checkpoint(ckpt, options_for(QuantScheme::W4A16Rtn, 32, true), pool).is_ok());
  const std::string path = testing::scratch_dir("quantized_plan") + "/w4.gguf";
  ASSERT_TRUE(write_gguf(ckpt, path).is_ok());
  Result<PlannedWeights> planned = plan_weights_for_spec(path);
  ASSERT_TRUE(planned.is_ok()) << planned.status().message();
  int64_t expected = 0;
  for (const auto& [name, t] : ckpt.tensors) expected += static_cast<int64_t>(t.nbytes + t.scale_bytes());
  int64_t got = 0;
  for (const PlannedTensor& t : planned->tensors) got += t.bytes;
  EXPECT_EQ(got, expected);
  // ffn_up (160, 64): 5120 bytes of codes, 160 x 2 groups x (scale + zero) x 4 bytes.
  for (const PlannedTensor& t : planned->tensors) {
    if (t.name == "blk.0.ffn_up.weight") {
      EXPECT_EQ(t.bytes, 160 * 64 / 2 + 160 * 2 * 2 * 4);
    }
  }
  // Re-planned at a scaled dtype: one f32 scale per row for I8.
  Result<PlannedWeights> i8 = plan_weights_for_spec("dummy:tiny-llama", DType::I8);
  ASSERT_TRUE(i8.is_ok());
  for (const PlannedTensor& t : i8->tensors) {
    if (t.name == "blk.0.ffn_up.weight") {
      EXPECT_EQ(t.bytes, 160 * 64 + 160 * 4);
    }
  }
}

// A checkpoint with one I8 weight and room for companions, to feed attach_quant_companions.
struct CompanionCase {
  Checkpoint ckpt;
  std::vector<std::byte> codes = std::vector<std::byte>(8 * 64);
  std::vector<float> floats = std::vector<float>(8 * 64, 0.25f);
  std::vector<uint16_t> halves = std::vector<uint16_t>(8, 0x3C00);  // 1.0 in F16
  CompanionCase() {
    ckpt.source = "test.gguf";
    ckpt.tensors["w"] = Tensor{"w", DType::I8, {8, 64}, codes.data(), codes.size(), {}};
    ckpt.tensors["plain"] = Tensor{"plain", DType::F32, {8, 64}, reinterpret_cast<std::byte*>(floats.data()),
                                   floats.size() * 4, {}};
  }
  void add(const std::string& name, DType dtype, std::vector<int64_t> shape) {
    Tensor t{name, dtype, shape, dtype == DType::F16 ? reinterpret_cast<std::byte*>(halves.data())
                                                     : reinterpret_cast<std::byte*>(floats.data()), 0, {}};
    t.nbytes = dtype_bytes(dtype, t.numel());
    ckpt.tensors[name] = t;
  }
  std::string attach() { return attach_quant_companions(ckpt).message(); }
};

TEST(QuantCompanions, AttachValidScalesAndRemoveTheCompanions) {
  CompanionCase c;
  c.add("w_scale", DType::F32, {8, 1});
  EXPECT_EQ(c.attach(), "");
  EXPECT_EQ(c.ckpt.find("w_scale"), nullptr);
  EXPECT_EQ(c.ckpt.tensors.at("w").quant.group, 64);
  EXPECT_EQ(c.ckpt.tensors.at("w").quant.scale[7], 0.25f);

  CompanionCase per_tensor;  // compressed-tensors' (1,) scale, F16: expanded and converted
  per_tensor.add("w_scale", DType::F16, {1});
  EXPECT_EQ(per_tensor.attach(), "");
  EXPECT_EQ(per_tensor.ckpt.tensors.at("w").quant.scale[5], 1.0f);
}

TEST(QuantCompanions, InconsistentCompanionsAreClearErrors) {
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {4, 1});
    EXPECT_NE(c.attach().find("test.gguf: tensor w_scale has shape (4, 1); for weight w (8, 64) it must be (8, G)"),
              std::string::npos)
        << c.attach();
  }
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {8, 3});  // 3 groups do not divide 64
    EXPECT_NE(c.attach().find("must be (8, G)"), std::string::npos);
  }
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {8, 2});  // I8 is per channel
    EXPECT_NE(c.attach().find("one scale per row"), std::string::npos) << c.attach();
  }
  {
    CompanionCase c;  // no scale at all
    EXPECT_NE(c.attach().find("tensor w (I8 (8, 64)) has no scales (expected a companion w_scale tensor)"),
              std::string::npos)
        << c.attach();
  }
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {8, 1});
    c.add("ghost_scale", DType::F32, {8, 1});
    EXPECT_NE(c.attach().find("tensor ghost_scale has no weight ghost to belong to"), std::string::npos) << c.attach();
  }
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {8, 1});
    c.add("plain_scale", DType::F32, {8, 1});
    EXPECT_NE(c.attach().find("tensor plain is F32, which takes no scale tensor"), std::string::npos) << c.attach();
  }
  {
    CompanionCase c;
    c.add("w_scale", DType::F32, {8, 1});
    c.add("w_zero", DType::F32, {8, 1});
    EXPECT_NE(c.attach().find("only asymmetric I4"), std::string::npos) << c.attach();
  }
}

// NAME_order (GPTQ act-order I4): F32 column indices become the weight's int32 input_order; a
// wrong shape, a non-index, a repeated column or a weight of another type is a clear error.
TEST(QuantCompanions, InputOrderAttachesToI4WeightsOnly) {
  auto attach = [](DType dtype, const std::vector<float>& order, std::vector<int64_t> order_shape,
                   std::vector<int32_t>* attached = nullptr) {
    std::vector<std::byte> codes(dtype_bytes(dtype, 8 * 64));
    const int64_t groups = dtype == DType::I4 ? 2 : 1;
    std::vector<float> scales(static_cast<size_t>(8 * groups), 0.5f);
    Checkpoint ckpt;
    ckpt.source = "test.gguf";
    ckpt.tensors["w"] = Tensor{"w", dtype, {8, 64}, codes.data(), codes.size(), {}};
    ckpt.tensors["w_scale"] = Tensor{"w_scale", DType::F32, {8, groups}, reinterpret_cast<const std::byte*>(scales.data()),
                                     scales.size() * 4, {}};
    ckpt.tensors["w_order"] = Tensor{"w_order", DType::F32, std::move(order_shape),
                                     reinterpret_cast<const std::byte*>(order.data()), order.size() * 4, {}};
    const Status st = attach_quant_companions(ckpt);
    if (st.is_ok() && attached) {
      EXPECT_EQ(ckpt.find("w_order"), nullptr);
      const int32_t* got = ckpt.tensors.at("w").quant.input_order;
      attached->assign(got, got + 64);
    }
    return st.message();
  };
  std::vector<float> reversed(64);
  for (int j = 0; j < 64; ++j) reversed[j] = static_cast<float>(63 - j);
  std::vector<int32_t> attached;
  EXPECT_EQ(attach(DType::I4, reversed, {64}, &attached), "");
  for (int j = 0; j < 64; ++j) EXPECT_EQ(attached[j], 63 - j);

  EXPECT_NE(attach(DType::I4, std::vector<float>(reversed.begin(), reversed.begin() + 32), {32})
                .find("test.gguf: tensor w_order is F32 (32,); the input column order of w (8, 64) must be F32 (64,)"),
            std::string::npos)
      << attach(DType::I4, std::vector<float>(reversed.begin(), reversed.begin() + 32), {32});
  std::vector<float> repeated = reversed;
  repeated[5] = repeated[6];
  EXPECT_NE(attach(DType::I4, repeated, {64}).find("input column order entry 6 is 57, a column already listed"),
            std::string::npos)
      << attach(DType::I4, repeated, {64});
  std::vector<float> fractional = reversed;
  fractional[3] = 2.5f;
  EXPECT_NE(attach(DType::I4, fractional, {64}).find("tensor w_order entry 3 is 2.5, not a column index 0..63"),
            std::string::npos);
  std::vector<float> outside = reversed;
  outside[0] = 64.0f;
  EXPECT_NE(attach(DType::I4, outside, {64}).find("entry 0 is 64, not a column index"), std::string::npos);
  EXPECT_NE(attach(DType::I8, reversed, {64}).find("tensor w is I8; only I4 weights take an input column order"),
            std::string::npos)
      << attach(DType::I8, reversed, {64});
}

TEST(QuantizedGguf, WriterRefusesScaledWeightsWithoutScales) {
  ThreadPool pool(1);
  Checkpoint ckpt = tiny();
  ASSERT_TRUE(quantize_checkpoint(ckpt, options_for(QuantScheme::W8A8), pool).is_ok());
  ckpt.tensors.at("blk.1.ffn_up.weight").quant = {};
  const Status st = write_gguf(ckpt, testing::scratch_dir("quantized_noscale") + "/x.gguf");
  EXPECT_NE(st.message().find("blk.1.ffn_up.weight (I8 (160, 64)) has no scales"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace anvil
