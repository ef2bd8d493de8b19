// bench quant: scheme parsing, fallbacks for rows a scheme cannot take, sizes with scales, the
// report math (ΔPPL %, bits per weight, GB/s and share of bandwidth), the table, the in-memory and
// spilled base log-probs, and whole runs on dummy:tiny-llama (self-comparison, interruption).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <filesystem>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "bench/quant_bench.h"
#include "bench/quant_bench_report.h"
#include "model/load_checkpoint.h"
#include "quant/quantize_checkpoint.h"
#include "test_paths.h"

namespace anvil {
namespace {

std::shared_ptr<const Checkpoint> tiny_checkpoint() {
  Result<Checkpoint> c = load_checkpoint("dummy:tiny-llama");
  EXPECT_TRUE(c.is_ok()) << c.status().message();
  return std::make_shared<const Checkpoint>(std::move(c).value());
}

QuantBenchScheme scheme(const std::string& text, std::optional<int64_t> group = std::nullopt) {
  QuantBenchSchemeDefaults defaults;
  defaults.group = group;
  Result<std::vector<QuantBenchScheme>> parsed = parse_quant_bench_schemes(text, defaults);
  EXPECT_TRUE(parsed.is_ok()) << parsed.status().message();
  return parsed ? parsed->front() : QuantBenchScheme{};
}

std::string parse_error(const std::string& text, QuantBenchSchemeDefaults defaults = {}) {
  Result<std::vector<QuantBenchScheme>> parsed = parse_quant_bench_schemes(text, defaults);
  EXPECT_FALSE(parsed.is_ok()) << text;
  return parsed ? "" : parsed.status().message();
}

// ---- scheme list ------------------------------------------------------------------------------------

TEST(QuantBenchSchemes, ParsesNamesPlainTypesAndOptions) {
  Result<std::vector<QuantBenchScheme>> parsed =
      parse_quant_bench_schemes("bf16, fp8,w8a8,w4a16-rtn:g32,asym,q8_0,q4_0,Q4_K,fp8:per-tensor", {});
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  ASSERT_EQ(parsed->size(), 8u);
  const std::vector<QuantBenchScheme>& s = *parsed;
  EXPECT_EQ(s[0].label, "bf16");
  ASSERT_TRUE(s[0].plain.has_value());
  EXPECT_EQ(*s[0].plain, DType::BF16);
  EXPECT_EQ(s[1].quantize.scheme, QuantScheme::Fp8);
  EXPECT_FALSE(s[1].plain.has_value());
  EXPECT_EQ(s[2].quantize.scheme, QuantScheme::W8A8);
  EXPECT_EQ(s[3].label, "w4a16-rtn:g32,asym");  // "asym" belongs to the entry before it
  EXPECT_EQ(s[3].quantize.scheme, QuantScheme::W4A16Rtn);
  EXPECT_EQ(s[3].quantize.group_size, 32);
  EXPECT_TRUE(s[3].quantize.asymmetric);
  EXPECT_EQ(s[6].label, "q4_k");
  EXPECT_EQ(s[6].quantize.scheme, QuantScheme::Q4_K);
  EXPECT_TRUE(s[7].quantize.per_tensor);
  Result<std::vector<QuantBenchScheme>> dynamic = parse_quant_bench_schemes("fp8,fp8-dynamic:per-tensor", {});
  ASSERT_TRUE(dynamic.is_ok()) << dynamic.status().message();
  ASSERT_EQ(dynamic->size(), 2u);
  EXPECT_EQ((*dynamic)[1].quantize.scheme, QuantScheme::Fp8Dynamic);
  EXPECT_TRUE((*dynamic)[1].quantize.per_tensor);
  EXPECT_EQ((*dynamic)[1].quantize.activations(), ActivationQuant::DynamicPerTokenFp8);
}

TEST(QuantBenchSchemes, GroupDefaultAppliesToW4EntriesWithoutOne) {
  QuantBenchSchemeDefaults defaults;
  defaults.group = 64;
  Result<std::vector<QuantBenchScheme>> parsed = parse_quant_bench_schemes("w4a16-rtn,w4a16-rtn:g32", defaults);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  EXPECT_EQ((*parsed)[0].quantize.group_size, 64);
  EXPECT_EQ((*parsed)[1].quantize.group_size, 32);
  EXPECT_EQ(scheme("w4a16-rtn").quantize.group_size, 128);  // the library's default
}

TEST(QuantBenchSchemes, RejectsBadListsWithClearMessages) {
  EXPECT_NE(parse_error("q8_0,q3_k").find("unknown scheme 'q3_k'"), std::string::npos);
  EXPECT_NE(parse_error("q8_0,q8_0").find("listed twice"), std::string::npos);
  EXPECT_NE(parse_error("q8_0,,fp8").find("empty entry"), std::string::npos);
  EXPECT_NE(parse_error("bf16:g32").find("takes no options"), std::string::npos);
  EXPECT_NE(parse_error("w4a16-gptq").find("needs calibration data: give --calib"), std::string::npos);
  EXPECT_NE(parse_error("w8a8-smoothquant,q8_0").find("needs calibration data"), std::string::npos);
  QuantBenchSchemeDefaults group;
  group.group = 64;
  EXPECT_NE(parse_error("q8_0", group).find("--group applies to w4a16-rtn"), std::string::npos);
  group.group = 48;
  EXPECT_NE(parse_error("w4a16-rtn", group).find("32, 64 or 128"), std::string::npos);
  QuantBenchSchemeDefaults calib;
  calib.calibration_file = "calib.txt";
  EXPECT_NE(parse_error("q8_0", calib).find("--calib: none of --schemes"), std::string::npos);
}

TEST(QuantBenchSchemes, CalibratedSchemesTakeTheCalibrationFlags) {
  QuantBenchSchemeDefaults calib;
  calib.calibration_tokens_file = "calib.ids";
  calib.calibration_samples = 4;
  calib.calibration_seq_len = 64;
  calib.group = 32;
  Result<std::vector<QuantBenchScheme>> parsed =
      parse_quant_bench_schemes("w4a16-gptq,w8a8-smoothquant,w8a8,w4a16-rtn", calib);
  ASSERT_TRUE(parsed.is_ok()) << parsed.status().message();
  const std::vector<QuantBenchScheme>& s = *parsed;
  EXPECT_TRUE(s[0].calibrated());
  EXPECT_EQ(s[0].quantize.scheme, QuantScheme::W4A16Gptq);
  EXPECT_EQ(s[0].quantize.group_size, 32);
  EXPECT_EQ(s[0].quantize.calibration_source.tokens_file, "calib.ids");
  EXPECT_EQ(s[0].quantize.calibration.samples, 4);
  EXPECT_EQ(s[0].quantize.calibration.seq_len, 64);
  EXPECT_TRUE(s[1].calibrated());
  EXPECT_TRUE(s[1].quantize.smoothquant);
  EXPECT_FALSE(s[2].calibrated());  // plain w8a8 takes none of the calibration flags
  EXPECT_TRUE(s[2].quantize.calibration_source.tokens_file.empty());
  EXPECT_EQ(s[3].quantize.group_size, 32);
  // GPTQ's act-order options continue their entry.
  Result<std::vector<QuantBenchScheme>> orders =
      parse_quant_bench_schemes("w4a16-gptq:g32,act-order,w4a16-gptq:g32,act-order,dynamic-groups", calib);
  ASSERT_TRUE(orders.is_ok()) << orders.status().message();
  ASSERT_EQ(orders->size(), 2u);
  EXPECT_EQ((*orders)[1].label, "w4a16-gptq:g32,act-order,dynamic-groups");
  EXPECT_TRUE((*orders)[0].quantize.act_order);
  EXPECT_FALSE((*orders)[0].quantize.dynamic_groups);
  EXPECT_TRUE((*orders)[1].quantize.act_order && (*orders)[1].quantize.dynamic_groups);
  EXPECT_NE(parse_error("w4a16-gptq:g32,dynamic-groups", calib).find("--dynamic-groups applies to w4a16-gptq --act-order"),
            std::string::npos);
}

// ---- fallbacks and sizes ---------------------------------------------------------------------------

Tensor matrix(int64_t rows, int64_t cols, DType dtype = DType::F32) {
  Tensor t;
  t.name = "blk.0.ffn_down.weight";
  t.dtype = dtype;
  t.shape = {rows, cols};
  return t;
}

TEST(QuantBenchTargets, FallBackAsLlamaCppDoes) {
  const QuantBenchScheme w4 = scheme("w4a16-rtn");
  TensorTarget t = tensor_target(w4, matrix(8, 256));
  EXPECT_EQ(t.kind, TensorTarget::Kind::Quantize);
  EXPECT_EQ(t.options.group_size, 128);
  EXPECT_FALSE(t.fallback);
  t = tensor_target(w4, matrix(8, 160));  // 160 = 5 x 32: group 32
  EXPECT_EQ(t.options.group_size, 32);
  EXPECT_TRUE(t.fallback);
  t = tensor_target(w4, matrix(8, 172));  // no group divides: keeps its type
  EXPECT_EQ(t.kind, TensorTarget::Kind::Keep);
  EXPECT_TRUE(t.fallback);

  t = tensor_target(scheme("q4_k"), matrix(8, 64));
  EXPECT_EQ(t.kind, TensorTarget::Kind::Quantize);
  EXPECT_EQ(t.options.scheme, QuantScheme::Q4_0);
  EXPECT_TRUE(t.fallback);
  EXPECT_EQ(tensor_target(scheme("q8_0"), matrix(8, 172)).kind, TensorTarget::Kind::Keep);
  EXPECT_FALSE(tensor_target(scheme("fp8"), matrix(8, 172)).fallback);

  // A plain type the weight already has is kept without a copy, and that is no fallback.
  t = tensor_target(scheme("f32"), matrix(8, 64));
  EXPECT_EQ(t.kind, TensorTarget::Kind::Keep);
  EXPECT_FALSE(t.fallback);
  EXPECT_EQ(tensor_target(scheme("bf16"), matrix(8, 64)).kind, TensorTarget::Kind::Convert);
}

// tiny-llama: per layer q (64x64), k, v (32x64), o (64x64), gate, up (160x64), down (64x160); 2 layers.
constexpr int64_t kTinyLinear = 2 * (4096 + 2048 + 2048 + 4096 + 10240 + 10240 + 10240);
constexpr int64_t kTinyLinearRows = 2 * (64 + 32 + 32 + 64 + 160 + 160 + 64);

TEST(QuantBenchSizes, BitsPerWeightCountScales) {
  auto base = tiny_checkpoint();
  ThreadPool pool(2);
  const WeightSize f32 = measure_weight_size(*base);
  EXPECT_EQ(f32.linear_elements, kTinyLinear);
  EXPECT_DOUBLE_EQ(bits_per_weight(f32.linear_bytes, f32.linear_elements), 32.0);

  struct Case {
    const char* scheme;
    double bits;
  };
  // q8_0: 34 bytes per 32; q4_0: 18 per 32; w8a8/fp8: 1 byte + one f32 scale per row;
  // w4a16-rtn at group 128 falls back to 64 for rows of 64 (4 + 32/64 bits) and 32 for rows of 160
  // (4 + 32/32 bits): 2 x 32768 elements at 4.5 bits and 2 x 10240 at 5.
  const Case cases[] = {{"q8_0", 8.5},
                        {"q4_0", 4.5},
                        {"w8a8", 8.0 + 32.0 * kTinyLinearRows / kTinyLinear},
                        {"fp8", 8.0 + 32.0 * kTinyLinearRows / kTinyLinear},
                        {"w4a16-rtn", (65536 * 4.5 + 20480 * 5.0) / kTinyLinear},
                        {"bf16", 16.0}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.scheme);
    uint64_t last_done = 0, last_total = 0;
    Result<QuantizedVariant> v =
        quantize_variant(base, scheme(c.scheme), pool, [&](uint64_t d, uint64_t t) { last_done = d, last_total = t; });
    ASSERT_TRUE(v.is_ok()) << v.status().message();
    const WeightSize size = measure_weight_size(*v->checkpoint);
    EXPECT_NEAR(bits_per_weight(size.linear_bytes, size.linear_elements), c.bits, 1e-12);
    EXPECT_EQ(last_done, static_cast<uint64_t>(kTinyLinear));
    EXPECT_EQ(last_total, static_cast<uint64_t>(kTinyLinear));
    // Everything else is shared with the base, unchanged, except under the GGML schemes: as from
    // `anvil quantize`, the output layer (512 x 64) is Q8_0 (its rows are not whole Q6_K blocks, so
    // Q8_0 as llama-quantize's fallback: 34 bytes per 32) and the embedding (512 x 64) the scheme's type.
    const std::string name = c.scheme;
    const uint64_t f32_head = 2 * 512 * 64 * 4, q8_0 = 512 * 64 / 32 * 34, q4_0 = 512 * 64 / 32 * 18;
    const uint64_t head = name == "q8_0" ? 2 * q8_0 : name == "q4_0" ? q8_0 + q4_0 : f32_head;
    EXPECT_EQ(size.total_bytes - size.linear_bytes, f32.total_bytes - f32.linear_bytes - f32_head + head);
  }
  // The base checkpoint is untouched.
  EXPECT_EQ(base->find("blk.0.attn_q.weight")->dtype, DType::F32);
}

TEST(QuantBenchSizes, FallbackNotesAndWeightTypes) {
  auto base = tiny_checkpoint();
  ThreadPool pool(1);
  Result<QuantizedVariant> v = quantize_variant(base, scheme("w4a16-rtn"), pool);
  ASSERT_TRUE(v.is_ok()) << v.status().message();
  EXPECT_EQ(v->linear_tensors, 14);
  EXPECT_EQ(v->fallback_tensors, 14);
  ASSERT_EQ(v->notes.size(), 2u);
  EXPECT_NE(v->notes[0].find("2 of 14 linear weights use group 32 (rows of 160 elements"), std::string::npos)
      << v->notes[0];
  EXPECT_EQ(weight_type_name(*v->checkpoint->find("blk.0.attn_q.weight")), "I4 g64");
  EXPECT_EQ(weight_type_name(*v->checkpoint->find("blk.0.ffn_down.weight")), "I4 g32");
  Result<QuantizedVariant> asym = quantize_variant(base, scheme("w4a16-rtn:g32,asym"), pool);
  ASSERT_TRUE(asym.is_ok());
  EXPECT_EQ(asym->fallback_tensors, 0);
  EXPECT_EQ(weight_type_name(*asym->checkpoint->find("blk.1.ffn_up.weight")), "I4 g32 asym");
}

TEST(QuantBenchSizes, DecodeBytesIncludeScales) {
  auto base = tiny_checkpoint();
  ThreadPool pool(1);
  Result<QuantizedVariant> v = quantize_variant(base, scheme("w8a8"), pool);
  ASSERT_TRUE(v.is_ok());
  const WeightSize f32 = measure_weight_size(*base), w8 = measure_weight_size(*v->checkpoint);
  // tiny-llama is untied: the embedding table counts one row; the linear weights go from 4 bytes
  // to 1 byte per element plus 4 bytes of scale per row.
  const uint64_t expected = f32.decode_bytes_per_token - 4 * kTinyLinear + kTinyLinear + 4 * kTinyLinearRows;
  EXPECT_EQ(w8.decode_bytes_per_token, expected);
  EXPECT_EQ(f32.decode_bytes_per_token, weight_bytes_per_token(*base));  // no scales: model_bench's rule
}

TEST(QuantBenchSizes, CalibratedSchemesLeaveTheBaseAlone) {
  auto base = tiny_checkpoint();
  ThreadPool pool(2);
  QuantBenchSchemeDefaults calib;
  calib.calibration_tokens_file = "unused.ids";  // the set below is made directly
  calib.calibration_samples = 4;
  calib.calibration_seq_len = 32;
  calib.group = 32;
  Result<std::vector<QuantBenchScheme>> schemes = parse_quant_bench_schemes("w8a8-smoothquant,w4a16-gptq", calib);
  ASSERT_TRUE(schemes.is_ok()) << schemes.status().message();
  std::vector<int32_t> stream(4 * 32);
  for (size_t i = 0; i < stream.size(); ++i) stream[i] = static_cast<int32_t>((i * 53 + 7) % 500 + 3);
  CalibrationOptions shape;
  shape.samples = 4;
  shape.seq_len = 32;
  Result<CalibrationSet> set = make_calibration_set(stream, shape, 1, base->config.vocab_size, "test stream");
  ASSERT_TRUE(set.is_ok()) << set.status().message();

  const Tensor& norm = *base->find("blk.0.ffn_norm.weight");
  const std::vector<float> norm_before(reinterpret_cast<const float*>(norm.data),
                                       reinterpret_cast<const float*>(norm.data) + norm.numel());
  for (const QuantBenchScheme& s : *schemes) {
    SCOPED_TRACE(s.label);
    EXPECT_FALSE(quantize_variant(base, s, pool).is_ok()) << "a calibrated scheme needs its set";
    uint64_t layers = 0;
    Result<QuantizedVariant> v = quantize_variant(base, s, pool, [&](uint64_t d, uint64_t) { layers = d; }, &*set);
    ASSERT_TRUE(v.is_ok()) << v.status().message();
    EXPECT_EQ(layers, 2u);  // progress by layer
    EXPECT_EQ(v->checkpoint->find("blk.1.attn_v.weight")->dtype, s.quantize.smoothquant ? DType::I8 : DType::I4);
    const Tensor& after = *base->find("blk.0.ffn_norm.weight");
    EXPECT_EQ(after.data, norm.data);
    EXPECT_TRUE(std::equal(norm_before.begin(), norm_before.end(), reinterpret_cast<const float*>(after.data)))
        << "SmoothQuant folds its factors into the variant's norms, not the base's";
    EXPECT_EQ(base->find("blk.1.attn_v.weight")->dtype, DType::F32);
  }
  // GPTQ takes no fallbacks: every row must fit the group.
  calib.group = 128;
  Result<std::vector<QuantBenchScheme>> g128 = parse_quant_bench_schemes("w4a16-gptq", calib);
  ASSERT_TRUE(g128.is_ok());
  Status fits = check_scheme_fits(*base, g128->front());
  ASSERT_FALSE(fits.is_ok());
  EXPECT_NE(fits.message().find("without fallbacks: give a group that divides every row"), std::string::npos)
      << fits.message();
}

// ---- report math and table -----------------------------------------------------------------------------

TEST(QuantBenchReport, Math) {
  EXPECT_NEAR(delta_ppl_percent(11.0, 10.0), 10.0, 1e-12);
  EXPECT_NEAR(delta_ppl_percent(9.5, 10.0), -5.0, 1e-12);
  EXPECT_DOUBLE_EQ(bits_per_weight(34, 32), 8.5);
  EXPECT_DOUBLE_EQ(bits_per_weight(100, 0), 0.0);
  EXPECT_DOUBLE_EQ(decode_gb_s(50.0, 2'000'000'000), 100.0);
  ASSERT_TRUE(percent_of_bandwidth(100.0, 400.0).has_value());
  EXPECT_DOUBLE_EQ(*percent_of_bandwidth(100.0, 400.0), 25.0);
  EXPECT_FALSE(percent_of_bandwidth(100.0, 0.0).has_value());
}

// A base row and a scheme row with known numbers.
QuantBenchResult synthetic_result() {
  QuantBenchResult r;
  r.base.scheme = "base";
  r.base.is_base = true;
  r.base.weight_types = {{"BF16", 7}};
  r.base.size.total_bytes = 2ull * 1073741824;       // 2 GiB
  r.base.size.linear_bytes = 1600;
  r.base.size.linear_elements = 800;                  // 16 bits
  r.base.size.decode_bytes_per_token = 2'000'000'000;  // 2 GB
  r.base.base_ppl = PerplexityResult{};
  r.base.base_ppl->ppl = 10.0;
  r.base.base_ppl->ppl_stderr = 0.5;
  r.base.speed = ModelBenchResult{};
  r.base.speed->prompt.tokens = 64;
  r.base.speed->prompt.seconds = {0.5};                // 128 tok/s
  r.base.speed->generate.tokens = 10;
  r.base.speed->generate.seconds = {1.0, 0.5};         // 10 and 20: mean 15 tok/s -> 30 GB/s

  QuantBenchRow q;
  q.scheme = "q4_0";
  q.weight_types = {{"Q4_0", 7}};
  q.size.total_bytes = 1073741824 / 2;                 // 0.5 GiB
  q.size.linear_bytes = 450;
  q.size.linear_elements = 800;                        // 4.5 bits
  q.size.decode_bytes_per_token = 500'000'000;
  q.kld = KlDivergenceResult{};
  q.kld->ppl = 10.5;
  q.kld->ppl_stderr = 0.6;
  q.kld->ppl_ratio = 1.05;
  q.kld->ppl_ratio_stderr = 0.002;
  q.kld->kld_mean = 0.0123456;
  q.kld->kld_p99 = 0.25;
  q.kld->top1_agreement = 0.9;
  q.speed = ModelBenchResult{};
  q.speed->prompt.tokens = 64;
  q.speed->prompt.seconds = {0.25};                    // 256 tok/s
  q.speed->generate.tokens = 10;
  q.speed->generate.seconds = {0.25};                  // 40 tok/s -> 20 GB/s
  r.schemes.push_back(q);
  QuantBenchRow partial;                               // interrupted after quantizing
  partial.scheme = "fp8";
  partial.size.total_bytes = 1073741824;
  partial.size.linear_bytes = 850;
  partial.size.linear_elements = 800;
  r.schemes.push_back(partial);
  return r;
}

TEST(QuantBenchReport, FiguresFromKnownRows) {
  QuantBenchReportContext context;
  context.bandwidth_gbs = 80.0;
  const std::vector<QuantBenchFigures> f = quant_bench_figures(synthetic_result(), context);
  ASSERT_EQ(f.size(), 3u);
  EXPECT_EQ(f[0].scheme, "base (BF16)");
  EXPECT_DOUBLE_EQ(f[0].bits_per_weight, 16.0);
  EXPECT_DOUBLE_EQ(f[0].weight_gib, 2.0);
  EXPECT_DOUBLE_EQ(*f[0].ppl, 10.0);
  EXPECT_DOUBLE_EQ(*f[0].delta_ppl_percent, 0.0);
  EXPECT_DOUBLE_EQ(*f[0].kld_mean, 0.0);
  EXPECT_DOUBLE_EQ(*f[0].top1_percent, 100.0);
  EXPECT_DOUBLE_EQ(*f[0].pp_tok_s, 128.0);
  EXPECT_DOUBLE_EQ(*f[0].tg_tok_s, 15.0);
  EXPECT_DOUBLE_EQ(*f[0].tg_gb_s, 30.0);
  EXPECT_DOUBLE_EQ(*f[0].tg_bandwidth_percent, 37.5);

  EXPECT_DOUBLE_EQ(f[1].bits_per_weight, 4.5);
  EXPECT_DOUBLE_EQ(f[1].weight_gib, 0.5);
  EXPECT_NEAR(*f[1].delta_ppl_percent, 5.0, 1e-12);
  EXPECT_NEAR(*f[1].delta_ppl_percent_stderr, 0.2, 1e-12);
  EXPECT_DOUBLE_EQ(*f[1].top1_percent, 90.0);
  EXPECT_DOUBLE_EQ(*f[1].tg_gb_s, 20.0);
  EXPECT_DOUBLE_EQ(*f[1].tg_bandwidth_percent, 25.0);

  EXPECT_FALSE(f[2].kld_mean.has_value());
  EXPECT_FALSE(f[2].tg_tok_s.has_value());

  // Random weights: no PPL figures; no bandwidth: no share.
  const std::vector<QuantBenchFigures> random = quant_bench_figures(synthetic_result(), {false, 0.0});
  EXPECT_FALSE(random[1].ppl.has_value());
  EXPECT_FALSE(random[1].delta_ppl_percent.has_value());
  EXPECT_TRUE(random[1].kld_mean.has_value());
  EXPECT_TRUE(random[1].tg_gb_s.has_value());
  EXPECT_FALSE(random[1].tg_bandwidth_percent.has_value());
}

TEST(QuantBenchReport, MarkdownTable) {
  QuantBenchReportContext context;
  context.bandwidth_gbs = 80.0;
  EXPECT_EQ(quant_bench_markdown(quant_bench_figures(synthetic_result(), context)),
            "| scheme | bits/weight | weight GiB | PPL | ΔPPL % | KLD mean | KLD p99 | top-1 % | pp tok/s | tg tok/s | "
            "tg GB/s (% of BW) |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
            "| base (BF16) | 16.00 | 2 | 10.0000 | +0.00 | 0.000000 | 0.000000 | 100.00 | 128.0 | 15.0 | 30.00 (37.5%) |\n"
            "| q4_0 | 4.50 | 0.5 | 10.5000 | +5.00 ± 0.20 | 0.012346 | 0.250000 | 90.00 | 256.0 | 40.0 | 20.00 (25.0%) |\n"
            "| fp8 | 8.50 | 1 | - | - | - | - | - | - | - | - |\n");
  const std::string random = quant_bench_markdown(quant_bench_figures(synthetic_result(), {false, 0.0}));
  EXPECT_NE(random.find("| q4_0 | 4.50 | 0.5 | n/a | n/a | 0.012346 | 0.250000 | 90.00 | 256.0 | 40.0 | 20.00 |"),
            std::string::npos)
      << random;
}

TEST(QuantBenchReport, JsonRowsAndCharts) {
  QuantBenchReportContext context;
  context.bandwidth_gbs = 80.0;
  const QuantBenchResult r = synthetic_result();
  const std::vector<QuantBenchFigures> f = quant_bench_figures(r, context);
  const nlohmann::json q = quant_bench_row_json(r.schemes[0], f[1]);
  EXPECT_EQ(q["scheme"], "q4_0");
  EXPECT_DOUBLE_EQ(q["bits_per_weight"].get<double>(), 4.5);
  EXPECT_DOUBLE_EQ(q["top1_agreement"].get<double>(), 0.9);
  EXPECT_DOUBLE_EQ(q["tg_bandwidth_percent"].get<double>(), 25.0);
  EXPECT_DOUBLE_EQ(q["kl_divergence"]["ppl_ratio"].get<double>(), 1.05);
  const nlohmann::json partial = quant_bench_row_json(r.schemes[1], f[2]);
  EXPECT_TRUE(partial["kld_mean"].is_null());
  EXPECT_TRUE(partial["tg_tok_s"].is_null());
  EXPECT_TRUE(quant_bench_row_json(r.base, f[0])["quantize_s"].is_null());

  std::vector<LineChart> charts = quant_bench_charts(f, true);
  ASSERT_EQ(charts.size(), 3u);  // ΔPPL, KLD, decode tok/s
  EXPECT_EQ(charts[0].y_label, "ΔPPL % vs base");
  ASSERT_EQ(charts[0].series.size(), 2u);  // the partial row has no point
  EXPECT_EQ(charts[0].series[1].name, "q4_0");
  EXPECT_FALSE(charts[0].series[1].draw_line);
  EXPECT_DOUBLE_EQ(charts[0].series[1].x[0], 4.5);
  EXPECT_NEAR(charts[0].series[1].y[0], 5.0, 1e-12);
  EXPECT_DOUBLE_EQ(charts[2].series[1].y[0], 40.0);
  EXPECT_EQ(quant_bench_charts(f, false).size(), 2u);  // random weights: KLD and speed
}

// Markers of each chart of `svg` that its legend box (translated as drawn) covers.
std::vector<size_t> covered_markers(const std::string& svg) {
  static const std::regex legend_re(
      R"re(<g class="legend"[^>]*?(?: transform="translate\(([-0-9.]+) ([-0-9.]+)\)")?>\n<rect x="([-0-9.]+)" y="([-0-9.]+)" width="([-0-9.]+)" height="([-0-9.]+)")re");
  static const std::regex circle_re(R"re(<circle cx="([-0-9.]+)" cy="([-0-9.]+)")re");
  std::vector<size_t> covered;
  const std::string tag = "<g class=\"chart\">";
  for (size_t at = svg.find(tag); at != std::string::npos;) {
    const size_t next = svg.find(tag, at + 1);
    const std::string chart = svg.substr(at, next == std::string::npos ? std::string::npos : next - at);
    at = next;
    std::smatch m;
    if (!std::regex_search(chart, m, legend_re)) continue;
    const double dx = m[1].matched ? std::stod(m[1]) : 0.0, dy = m[2].matched ? std::stod(m[2]) : 0.0;
    const double x = std::stod(m[3]) + dx, y = std::stod(m[4]) + dy, w = std::stod(m[5]), h = std::stod(m[6]);
    size_t n = 0;
    for (auto it = std::sregex_iterator(chart.begin(), chart.end(), circle_re); it != std::sregex_iterator(); ++it) {
      const double cx = std::stod((*it)[1]), cy = std::stod((*it)[2]);
      n += cx >= x && cx <= x + w && cy >= y && cy <= y + h ? 1 : 0;
    }
    covered.push_back(n);
  }
  return covered;
}

TEST(QuantBenchReport, LegendMovesOffThePoints) {
  // Low bits with high ΔPPL, KLD and speed sit top-left, where render_svg draws the legend: with
  // eight schemes spread over 4.5..16 bits it covers some of them there.
  QuantBenchResult r = synthetic_result();
  r.schemes.pop_back();
  for (int i = 0; i < 6; ++i) {
    QuantBenchRow row = r.schemes[0];
    row.scheme = "scheme-" + std::to_string(i);
    row.size.linear_bytes = 450 + 30 * i;  // 4.5 .. 6.75 bits
    row.kld->kld_mean = 0.0123456 * (6 - i);
    row.kld->ppl_ratio = 1.05 + 0.01 * (6 - i);
    row.speed->generate.seconds = {0.25 + 0.01 * i};
    r.schemes.push_back(row);
  }
  const std::vector<QuantBenchFigures> f = quant_bench_figures(r, QuantBenchReportContext{});
  const std::vector<LineChart> charts = quant_bench_charts(f, true);
  const std::vector<size_t> before = covered_markers(render_svg(charts, 3, "caption"));
  ASSERT_EQ(before.size(), 3u);
  EXPECT_GT(before[0] + before[1] + before[2], 0u) << "the test needs points under the default legend";
  EXPECT_EQ(covered_markers(render_quant_bench_svg(charts, "caption")), (std::vector<size_t>{0, 0, 0}));
  // Only the base (bottom-right: 16 bits, KLD 0): the legend covers nothing where it is.
  std::vector<QuantBenchFigures> base_only = {f[0]};
  const std::vector<LineChart> one = quant_bench_charts(base_only, false);
  EXPECT_EQ(render_quant_bench_svg(one, "caption"), render_svg(one, static_cast<int>(one.size()), "caption"));
}

// ---- base log-probs and runs ------------------------------------------------------------------------------

TEST(QuantBenchBaseLogprobs, MemoryAndSpilledFileHoldTheSameRows) {
  ChunkPlan plan;
  plan.n_ctx = 8;
  plan.first = 4;
  plan.n_chunks = 2;
  const int64_t vocab = 5, per_chunk = plan.scored_per_chunk() * vocab;  // 3 rows
  std::vector<int32_t> tokens(16, 1);
  const std::string dir = testing::scratch_dir("quant_bench_spill");
  for (uint64_t limit : {uint64_t{1} << 20, uint64_t{0}}) {
    Result<std::unique_ptr<BaseLogprobs>> base = BaseLogprobs::create(plan, vocab, tokens, limit, dir);
    ASSERT_TRUE(base.is_ok()) << base.status().message();
    EXPECT_EQ((*base)->in_memory(), limit > 0);
    EXPECT_EQ((*base)->bytes(), static_cast<uint64_t>(2 * per_chunk * 4));
    for (int c = 0; c < 2; ++c) {
      std::vector<float> rows(per_chunk);
      for (int64_t i = 0; i < per_chunk; ++i) rows[i] = -0.5f * static_cast<float>(i + 100 * c);
      ASSERT_TRUE((*base)->append_chunk(rows).is_ok());
    }
    ASSERT_TRUE((*base)->finish().is_ok());
    const std::string path = (*base)->spill_path();
    if (limit == 0) {
      EXPECT_TRUE(std::filesystem::exists(path));
    }
    std::vector<float> buffer;
    Result<std::span<const float>> second = (*base)->chunk(1, buffer);
    ASSERT_TRUE(second.is_ok()) << second.status().message();
    ASSERT_EQ(second->size(), static_cast<size_t>(per_chunk));
    EXPECT_EQ((*second)[3], -0.5f * 103.0f);
    EXPECT_FALSE((*base)->chunk(2, buffer).is_ok());
    base->reset();
    if (limit == 0) {
      EXPECT_FALSE(std::filesystem::exists(path)) << "the temporary file is removed";
    }
  }
}

struct TinyRun {
  std::shared_ptr<const Checkpoint> base = tiny_checkpoint();
  std::unique_ptr<DecoderModel> model;
  ChunkPlan plan;
  std::vector<int32_t> evaluated;
  TinyRun() {
    model = std::move(DecoderModel::create(base)).value();
    std::vector<int32_t> tokens(3 * 32);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>((i * 37 + 11) % 500 + 3);
    plan = *plan_chunks(static_cast<int64_t>(tokens.size()), 32, 0);
    evaluated = chunk_tokens(tokens, plan, chunk_bos_id(*base));
  }
};

TEST(QuantBenchRun, SelfComparisonIsExactAndSpillingChangesNothing) {
  TinyRun t;
  ThreadPool pool(2);
  QuantBenchOptions options;
  options.schemes = {scheme("f32"), scheme("q8_0")};
  options.speed.prompt_tokens = 8;
  options.speed.generate_tokens = 4;
  options.speed.repetitions = 1;
  std::vector<std::string> phases;
  options.on_phase_done = [&](size_t row, const QuantBenchRow& r, QuantBenchPhase phase) {
    phases.push_back(std::to_string(row) + r.scheme + ":" + quant_bench_phase_name(phase));
  };
  Result<QuantBenchResult> memory = run_quant_bench(t.base, *t.model, t.evaluated, t.plan, pool, options);
  ASSERT_TRUE(memory.is_ok()) << memory.status().message();
  EXPECT_EQ(phases, (std::vector<std::string>{"0base:evaluate", "0base:speed", "1f32:quantize", "1f32:evaluate",
                                              "1f32:speed", "2q8_0:quantize", "2q8_0:evaluate", "2q8_0:speed"}));
  EXPECT_TRUE(memory->base_in_memory);
  EXPECT_FALSE(memory->interrupted);
  ASSERT_EQ(memory->schemes.size(), 2u);
  const KlDivergenceResult& same = *memory->schemes[0].kld;
  EXPECT_EQ(same.kld_mean, 0.0);
  EXPECT_EQ(same.kld_max, 0.0);
  EXPECT_EQ(same.top1_agreement, 1.0);
  EXPECT_EQ(same.ppl, memory->base.base_ppl->ppl);
  EXPECT_EQ(same.n_tokens_scored, t.plan.scored_tokens());
  const KlDivergenceResult& q8 = *memory->schemes[1].kld;
  EXPECT_GT(q8.kld_mean, 0.0);
  EXPECT_LT(q8.kld_mean, 0.05);
  EXPECT_EQ(q8.ppl_base, memory->base.base_ppl->ppl);
  ASSERT_TRUE(memory->schemes[1].speed.has_value());
  EXPECT_EQ(memory->schemes[1].speed->generate.seconds.size(), 1u);

  options.base_memory_limit_bytes = 0;
  options.temp_dir = testing::scratch_dir("quant_bench_run");
  options.speed = {};
  options.speed.prompt_tokens = 0;
  options.speed.generate_tokens = 0;
  Result<QuantBenchResult> spilled = run_quant_bench(t.base, *t.model, t.evaluated, t.plan, pool, options);
  ASSERT_TRUE(spilled.is_ok()) << spilled.status().message();
  EXPECT_FALSE(spilled->base_in_memory);
  EXPECT_EQ(spilled->schemes[1].kld->kld_mean, q8.kld_mean);
  EXPECT_EQ(spilled->schemes[1].kld->kld_p99, q8.kld_p99);
  EXPECT_FALSE(spilled->schemes[1].speed.has_value());
  EXPECT_TRUE(std::filesystem::is_empty(options.temp_dir)) << "the temporary base file is removed";
}

TEST(QuantBenchRun, InterruptStopsAfterTheCurrentPhase) {
  TinyRun t;
  ThreadPool pool(1);
  std::atomic<bool> interrupt{false};
  QuantBenchOptions options;
  options.schemes = {scheme("q8_0"), scheme("q4_0")};
  options.speed.prompt_tokens = 0;
  options.speed.generate_tokens = 0;
  options.interrupt = &interrupt;
  options.on_phase_done = [&](size_t row, const QuantBenchRow&, QuantBenchPhase phase) {
    if (row == 1 && phase == QuantBenchPhase::Evaluate) interrupt = true;  // "Ctrl-C" during q8_0's evaluation
  };
  Result<QuantBenchResult> r = run_quant_bench(t.base, *t.model, t.evaluated, t.plan, pool, options);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_TRUE(r->interrupted);
  ASSERT_EQ(r->schemes.size(), 1u);
  EXPECT_TRUE(r->schemes[0].kld.has_value());
}

TEST(QuantBenchRun, RejectsSchemesThatFitNoWeightBeforeMeasuring) {
  // stories260K-like rows of 172 elements: q8_0 cannot take ffn_down, but a model whose every
  // linear row has 172 elements fits no q8_0 block at all.
  auto base = std::make_shared<Checkpoint>(*tiny_checkpoint());
  for (auto& [name, tensor] : base->tensors)
    if (is_quantized_linear_weight(name)) tensor.shape = {tensor.rows() * tensor.cols() / 172 / 4 * 4, 172};
  Status fits = check_scheme_fits(*base, scheme("q8_0"));
  ASSERT_FALSE(fits.is_ok());
  EXPECT_NE(fits.message().find("fits no linear weight of this model: rows of 172 elements"), std::string::npos)
      << fits.message();
  EXPECT_TRUE(check_scheme_fits(*base, scheme("fp8")).is_ok());
}

}  // namespace
}  // namespace anvil
