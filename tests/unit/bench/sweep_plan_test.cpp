// Sweep expansion: Cartesian products, stable run ids, weight schemes per model kind, and
// placeholder substitution in server commands.
#include "bench/sweep_plan.h"

#include <gtest/gtest.h>

#include <set>

#include "bench/sweep_config_file.h"
#include "bench/sweep_placeholders.h"
#include "formats/gguf_writer.h"
#include "model/convert_dtype.h"
#include "model/presets.h"
#include "test_paths.h"

namespace anvil {
namespace {

SweepConfig config_from(const std::string& yaml) {
  Result<nlohmann::json> doc = yaml_to_json(yaml, "s.yaml");
  EXPECT_TRUE(doc) << doc.status().message();
  Result<SweepConfig> config = parse_sweep_config(*doc, "s.yaml");
  EXPECT_TRUE(config) << config.status().message();
  return config ? *config : SweepConfig{};
}

std::vector<SweepRun> expand(const std::string& yaml) {
  Result<std::vector<SweepRun>> runs = expand_sweep(config_from(yaml), SweepExpandOptions{8});
  EXPECT_TRUE(runs) << runs.status().message();
  return runs ? *runs : std::vector<SweepRun>{};
}

TEST(SweepPlan, ExpandsTheCartesianProductOfEachGroup) {
  const std::vector<SweepRun> runs = expand(R"(
models: [dummy:tiny-llama, dummy:tiny-llama3]
weight_schemes: [native, f16, q8_0]
kv_dtypes: [f16, bf16]
threads: [0, 1]
configs:
  - {name: a}
  - {name: b, models: [dummy:tiny-llama], weight_schemes: [q4_0], threads: [2]}
)");
  ASSERT_EQ(runs.size(), 2u * 3 * 2 * 2 + 1 * 1 * 2 * 1);
  std::set<std::string> ids;
  for (const SweepRun& r : runs) ids.insert(r.id);
  EXPECT_EQ(ids.size(), runs.size());
  // Order: model, scheme, kv, threads.
  EXPECT_EQ(runs[0].model_spec, "dummy:tiny-llama");
  EXPECT_EQ(runs[0].kv_dtype, "f16");
  EXPECT_EQ(runs[0].threads, 8);  // 0 = all cores
  EXPECT_EQ(runs[1].threads, 1);
  EXPECT_EQ(runs[2].kv_dtype, "bf16");
  EXPECT_EQ(runs[4].model_spec, "dummy:tiny-llama:f16");
  EXPECT_EQ(runs[8].model_spec, "dummy:tiny-llama:q8_0");
  EXPECT_EQ(runs[12].model_spec, "dummy:tiny-llama3");
  EXPECT_EQ(runs.back().group, "b");
  EXPECT_EQ(runs.back().model_spec, "dummy:tiny-llama:q4_0");
  EXPECT_EQ(runs.back().max_batch, 8);  // the largest default batch size
  EXPECT_EQ(runs.back().kind, SweepRunKind::InProcess);
}

TEST(SweepPlan, RunIdsAreStableAndIgnorePricesAndNames) {
  const std::string base = "models: [dummy:tiny-llama]\nthreads: [2]\nworkload: {input_len: 16, output_len: 8, batch_sizes: [1, 2]}\n";
  const std::vector<SweepRun> a = expand(base);
  const std::vector<SweepRun> b = expand("name: other\nprice_per_hour: 3\n" + base);
  const std::vector<SweepRun> c = expand(base + "kv_dtypes: [bf16]\n");
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(a[0].id, b[0].id);
  EXPECT_NE(a[0].id, c[0].id);
  EXPECT_EQ(a[0].id.size(), 16u);
  // The id is a hash of the measurement's canonical JSON: the same text gives the same id on
  // every build and machine. A change here re-runs every stored sweep: change it deliberately.
  EXPECT_EQ(sweep_run_id(nlohmann::json::parse(R"({"a": 1})")), "9c3e82dd6fcae8b1");
  EXPECT_EQ(sweep_run_id(sweep_run_measurement_json(a[0])), a[0].id);
}

TEST(SweepPlan, DuplicateRunsAcrossGroupsAreAnError) {
  Result<std::vector<SweepRun>> runs = expand_sweep(
      config_from("models: [dummy:tiny-llama]\nconfigs:\n  - {name: a}\n  - {name: b, price_per_hour: 2}\n"),
      SweepExpandOptions{2});
  ASSERT_FALSE(runs);
  EXPECT_NE(runs.status().message().find("in configurations 'a' and 'b'"), std::string::npos) << runs.status().message();
}

TEST(SweepPlan, WeightSchemesPerModelKind) {
  EXPECT_EQ(*resolve_weight_scheme("dummy:tiny-llama", "native"), "dummy:tiny-llama");
  EXPECT_EQ(*resolve_weight_scheme("dummy:tiny-llama", "q4_k"), "dummy:tiny-llama:q4_k");
  EXPECT_EQ(*resolve_weight_scheme("dummy:tiny-llama:q8_0", "q8_0"), "dummy:tiny-llama:q8_0");
  Result<std::string> clash = resolve_weight_scheme("dummy:tiny-llama:q8_0", "q4_0");
  ASSERT_FALSE(clash);
  EXPECT_NE(clash.status().message().find("already names its weight type q8_0"), std::string::npos);
  // Scaled schemes quantize the loaded model: the spec stays the base model.
  EXPECT_EQ(*resolve_weight_scheme("dummy:tiny-llama", "fp8"), "dummy:tiny-llama");
  EXPECT_EQ(*resolve_weight_scheme("dummy:tiny-llama:bf16", "w4a16-rtn:g32,asym"), "dummy:tiny-llama:bf16");
  Result<std::string> bad_scheme = resolve_weight_scheme("dummy:tiny-llama", "int3");
  ASSERT_FALSE(bad_scheme);
  EXPECT_NE(bad_scheme.status().message().find("weight scheme 'int3'"), std::string::npos) << bad_scheme.status().message();
  EXPECT_FALSE(resolve_weight_scheme("dummy:tiny-llama", "w4a16-rtn:g33"));
  Result<std::vector<SweepRun>> scaled = expand_sweep(
      config_from("models: [dummy:tiny-llama]\nweight_schemes: [native, fp8, 'w4a16-rtn:g32']\n"), SweepExpandOptions{2});
  ASSERT_TRUE(scaled) << scaled.status().message();
  ASSERT_EQ(scaled->size(), 3u);
  EXPECT_EQ((*scaled)[0].quantization, "");
  EXPECT_EQ((*scaled)[1].quantization, "fp8");
  EXPECT_EQ((*scaled)[2].quantization, "w4a16-rtn:g32");
  EXPECT_EQ((*scaled)[2].model_spec, "dummy:tiny-llama");
  EXPECT_NE((*scaled)[1].id, (*scaled)[2].id);
  EXPECT_NE((*scaled)[1].label().find("fp8"), std::string::npos) << (*scaled)[1].label();
  EXPECT_EQ(sweep_placeholder_values((*scaled)[1], 8000, "anvil").at("quantization"), "fp8");
  EXPECT_EQ(sweep_placeholder_values((*scaled)[0], 8000, "anvil").at("quantization"), "none");
  Result<std::string> unknown = resolve_weight_scheme("dummy:no-such-preset", "native");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("anvil info --presets"), std::string::npos);
  EXPECT_FALSE(resolve_weight_scheme("/no/such/model.gguf", "native"));

  // A GGUF file runs at its own type; another scheme names `anvil convert --type`.
  const std::string dir = testing::scratch_dir("sweep_plan_gguf");
  Result<Checkpoint> checkpoint = create_dummy_checkpoint("dummy:tiny-llama");
  ASSERT_TRUE(checkpoint);
  ASSERT_TRUE(convert_weight_dtype(*checkpoint, DType::Q8_0));
  const std::string path = dir + "/tiny-q8.gguf";
  ASSERT_TRUE(write_gguf(*checkpoint, path));
  EXPECT_EQ(*resolve_weight_scheme(path, "native"), path);
  EXPECT_EQ(*resolve_weight_scheme(path, "q8_0"), path);
  Result<std::string> other = resolve_weight_scheme(path, "q4_0");
  ASSERT_FALSE(other);
  EXPECT_NE(other.status().message().find("holds q8_0 weights, not q4_0"), std::string::npos) << other.status().message();
  EXPECT_NE(other.status().message().find("anvil convert --model " + path + " --type q4_0"), std::string::npos)
      << other.status().message();
}

TEST(SweepPlaceholders, SubstitutesKnownNamesAndBraces) {
  EXPECT_EQ(*substitute_placeholders("a {x} {{y}} {x}", {{"x", "1"}}), "a 1 {y} 1");
  EXPECT_EQ(*placeholder_names_in("{a} {b} {a} {{c}}"), (std::vector<std::string>{"a", "b"}));
  Result<std::string> unknown = substitute_placeholders("{nope}", {{"x", "1"}});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.status().message().find("unknown placeholder {nope} (known: {x})"), std::string::npos);
  EXPECT_FALSE(placeholder_names_in("a {b"));
  EXPECT_FALSE(placeholder_names_in("a } b"));
  EXPECT_FALSE(placeholder_names_in("{}"));
}

TEST(SweepPlaceholders, ServerCommandsGetEveryValue) {
  const std::vector<SweepRun> runs = expand(R"(
models: [dummy:tiny-llama]
weight_schemes: [q8_0]
kv_dtypes: [bf16]
threads: [3]
server:
  command: "{anvil} serve --model {model} --port {port} --tp {tp} --max-num-seqs {max_batch} -t {threads} --kv-dtype {kv_dtype} # {quant}"
workload: {concurrency: [1, 5, 20]}
)");
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].kind, SweepRunKind::Server);
  EXPECT_EQ(runs[0].max_batch, 20);
  Result<std::string> command = sweep_server_command(runs[0], 8123, "/opt/my anvil/anvil");
  ASSERT_TRUE(command) << command.status().message();
  EXPECT_EQ(*command,
            "'/opt/my anvil/anvil' serve --model dummy:tiny-llama:q8_0 --port 8123 --tp 1 --max-num-seqs 20 -t 3 "
            "--kv-dtype bf16 # q8_0");
}

}  // namespace
}  // namespace anvil
