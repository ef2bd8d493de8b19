// Sweep configuration: YAML and JSON parse to the same configuration; unknown keys, bad values and
// axes anvil cannot run yet are rejected with messages that name the key.
#include "bench/sweep_config.h"

#include <gtest/gtest.h>

#include <fstream>

#include "bench/sweep_config_file.h"
#include "test_paths.h"

namespace anvil {
namespace {

Result<SweepConfig> parse_yaml(const std::string& text) {
  Result<nlohmann::json> doc = yaml_to_json(text, "sweep.yaml");
  if (!doc) return doc.status();
  return parse_sweep_config(*doc, "sweep.yaml");
}

std::string error_of(const std::string& yaml) {
  Result<SweepConfig> config = parse_yaml(yaml);
  EXPECT_FALSE(config) << yaml;
  return config ? std::string() : config.status().message();
}

const char* kFullYaml = R"(
name: study
instances: {c7i.2xlarge: 0.357, "m7i.large": 0.1008}
models: [dummy:tiny-llama]
kv_dtypes: [f16, BF16]
workload:
  input_len: 32
  output_len: 16
  num_iters: 2
  batch_sizes: [1, 2]
configs:
  - name: local
    instance: c7i.2xlarge
    threads: [1, 2]
    workload: {output_len: 8}
  - name: served
    price_per_hour: 1.55
    kv_dtypes: [f16]
    server:
      command: "{anvil} serve --model {model} --port {port}"
      startup_timeout_s: 30
    workload: {concurrency: [1, 4], num_prompts: 8}
)";

TEST(SweepConfigFile, YamlScalarsFollowTheCoreSchema) {
  Result<nlohmann::json> doc = yaml_to_json(
      "a: 1\nb: 1.5\nc: true\nd: ~\ne: text\nf: '1'\ng: \"true\"\nh: [1, x]\ni: dummy:tiny-llama\nj: -2\nk: 1e3\n", "t");
  ASSERT_TRUE(doc) << doc.status().message();
  EXPECT_EQ((*doc)["a"], 1);
  EXPECT_TRUE((*doc)["a"].is_number_integer());
  EXPECT_DOUBLE_EQ((*doc)["b"].get<double>(), 1.5);
  EXPECT_EQ((*doc)["c"], true);
  EXPECT_TRUE((*doc)["d"].is_null());
  EXPECT_EQ((*doc)["e"], "text");
  EXPECT_EQ((*doc)["f"], "1");     // quoted: text
  EXPECT_EQ((*doc)["g"], "true");  // quoted: text
  EXPECT_EQ((*doc)["h"], nlohmann::json::parse(R"([1, "x"])"));
  EXPECT_EQ((*doc)["i"], "dummy:tiny-llama");
  EXPECT_EQ((*doc)["j"], -2);
  EXPECT_DOUBLE_EQ((*doc)["k"].get<double>(), 1000.0);
}

TEST(SweepConfigFile, YamlErrorsCarryTheLocation) {
  Result<nlohmann::json> doc = yaml_to_json("models: [a\n", "s.yaml");
  ASSERT_FALSE(doc);
  EXPECT_NE(doc.status().message().find("s.yaml:"), std::string::npos) << doc.status().message();
  Result<nlohmann::json> twice = yaml_to_json("models: [a]\nmodels: [b]\n", "s.yaml");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.status().message().find("key 'models' appears twice"), std::string::npos) << twice.status().message();
}

TEST(SweepConfigFile, ReadsJsonAndYamlFiles) {
  const std::string dir = testing::scratch_dir("sweep_config_file");
  std::ofstream(dir + "/a.json") << R"({"models": ["dummy:tiny-llama"], "threads": [1, 2]})";
  std::ofstream(dir + "/a.yaml") << "models: [dummy:tiny-llama]\nthreads: [1, 2]\n";
  std::ofstream(dir + "/bad.json") << R"({"models": ["dummy:tiny-llama"],})";
  Result<nlohmann::json> json = read_config_document(dir + "/a.json");
  Result<nlohmann::json> yaml = read_config_document(dir + "/a.yaml");
  ASSERT_TRUE(json && yaml);
  EXPECT_EQ(*json, *yaml);
  Result<nlohmann::json> bad = read_config_document(dir + "/bad.json");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.status().message().find("not valid JSON"), std::string::npos) << bad.status().message();
  EXPECT_FALSE(read_config_document(dir + "/missing.yaml"));
}

TEST(SweepConfig, ParsesGroupsWithDefaultsAndPrices) {
  Result<SweepConfig> config = parse_yaml(kFullYaml);
  ASSERT_TRUE(config) << config.status().message();
  EXPECT_EQ(config->name, "study");
  ASSERT_EQ(config->groups.size(), 2u);
  const SweepGroup& local = config->groups[0];
  EXPECT_EQ(local.name, "local");
  EXPECT_EQ(local.kv_dtypes, (std::vector<std::string>{"f16", "bf16"}));  // lower-cased
  EXPECT_EQ(local.threads, (std::vector<int>{1, 2}));
  EXPECT_EQ(local.workload.input_len, 32);  // from the defaults
  EXPECT_EQ(local.workload.output_len, 8);  // overridden key by key
  EXPECT_EQ(local.workload.batch_sizes, (std::vector<int64_t>{1, 2}));
  EXPECT_FALSE(local.server);
  ASSERT_TRUE(local.usd_per_hour);
  EXPECT_DOUBLE_EQ(*local.usd_per_hour, 0.357);
  EXPECT_EQ(local.instance, "c7i.2xlarge");
  const SweepGroup& served = config->groups[1];
  ASSERT_TRUE(served.server);
  EXPECT_EQ(served.server->health, "/health");
  EXPECT_DOUBLE_EQ(served.server->startup_timeout_s, 30);
  EXPECT_EQ(served.workload.concurrency, (std::vector<int64_t>{1, 4}));
  EXPECT_DOUBLE_EQ(*served.usd_per_hour, 1.55);
  EXPECT_TRUE(served.instance.empty());
}

TEST(SweepConfig, JsonAndYamlGiveTheSameConfiguration) {
  const std::string json_text = R"({
    "name": "study", "models": ["dummy:tiny-llama"], "kv_dtypes": ["f16", "bf16"], "threads": [1, 2],
    "workload": {"input_len": 32, "output_len": 16, "batch_sizes": [1, 2]}, "price_per_hour": 1.55})";
  const std::string yaml_text =
      "name: study\nmodels: [dummy:tiny-llama]\nkv_dtypes: [f16, bf16]\nthreads: [1, 2]\n"
      "workload: {input_len: 32, output_len: 16, batch_sizes: [1, 2]}\nprice_per_hour: 1.55\n";
  Result<SweepConfig> a = parse_sweep_config(nlohmann::json::parse(json_text), "s.json");
  Result<SweepConfig> b = parse_yaml(yaml_text);
  ASSERT_TRUE(a && b);
  ASSERT_EQ(a->groups.size(), 1u);
  ASSERT_EQ(b->groups.size(), 1u);
  EXPECT_EQ(a->groups[0].kv_dtypes, b->groups[0].kv_dtypes);
  EXPECT_EQ(a->groups[0].threads, b->groups[0].threads);
  EXPECT_EQ(a->groups[0].workload.batch_sizes, b->groups[0].workload.batch_sizes);
  EXPECT_EQ(*a->groups[0].usd_per_hour, *b->groups[0].usd_per_hour);
  EXPECT_EQ(a->groups[0].name, "study");
}

TEST(SweepConfig, ScalarAxesAreListsOfOne) {
  Result<SweepConfig> config = parse_yaml("models: dummy:tiny-llama\nthreads: 2\nkv_dtypes: bf16\n");
  ASSERT_TRUE(config) << config.status().message();
  EXPECT_EQ(config->groups[0].models, (std::vector<std::string>{"dummy:tiny-llama"}));
  EXPECT_EQ(config->groups[0].threads, (std::vector<int>{2}));
  EXPECT_EQ(config->groups[0].kv_dtypes, (std::vector<std::string>{"bf16"}));
}

TEST(SweepConfig, RejectsUnknownKeysEverywhere) {
  EXPECT_NE(error_of("models: [dummy:tiny-llama]\nkv_dtype: [f16]\n").find("unknown key 'kv_dtype' (did you mean 'kv_dtypes'?)"),
            std::string::npos);
  EXPECT_NE(error_of("models: [dummy:tiny-llama]\nworkload: {inputlen: 3}\n").find("workload: unknown key 'inputlen'"),
            std::string::npos);
  EXPECT_NE(error_of("models: [dummy:tiny-llama]\nserver: {command: 'x {port}', helth: /h}\n").find("unknown key 'helth'"),
            std::string::npos);
  EXPECT_NE(error_of("configs:\n  - {models: [dummy:tiny-llama], instances: {}}\n").find("configs[0]: unknown key 'instances'"),
            std::string::npos);
  EXPECT_EQ(error_of("models: [dummy:tiny-llama]\nbogus: 1\n").rfind("sweep.yaml: ", 0), 0u);
}

TEST(SweepConfig, RejectsAxesThatDoNotExistYet) {
  const std::string tp = error_of("models: [dummy:tiny-llama]\ntensor_parallel: [1, 2]\n");
  EXPECT_NE(tp.find("tensor_parallel[1]"), std::string::npos) << tp;
  EXPECT_NE(tp.find("tensor parallelism is not available yet"), std::string::npos) << tp;
  const std::string tuning = error_of("models: [dummy:tiny-llama]\ngemm_tuning: [false, true]\n");
  EXPECT_NE(tuning.find("gemm_tuning[1]"), std::string::npos) << tuning;
  EXPECT_NE(tuning.find("no GEMM tuner yet"), std::string::npos) << tuning;
  Result<SweepConfig> ok = parse_yaml("models: [dummy:tiny-llama]\ntensor_parallel: [1]\ngemm_tuning: [false]\n");
  EXPECT_TRUE(ok) << ok.status().message();
}

TEST(SweepConfig, RejectsBadValues) {
  struct Case {
    const char* yaml;
    const char* message;
  };
  const Case cases[] = {
      {"threads: [1]\n", "no models"},
      {"models: []\n", "models: the list is empty"},
      {"models: [dummy:tiny-llama]\nkv_dtypes: [q8_0]\n", "not a KV cache dtype"},
      {"models: [dummy:tiny-llama]\nweight_schemes: [int3]\n", "weight scheme 'int3' is not one anvil runs"},
      {"models: [dummy:tiny-llama]\nthreads: [-1]\n", "threads[0]: -1 is out of range"},
      {"models: [dummy:tiny-llama]\nthreads: [1, 1]\n", "threads[1]: appears twice"},
      {"models: [dummy:tiny-llama]\nthreads: [two]\n", "expected a whole number, got the text 'two'"},
      {"models: [dummy:tiny-llama]\nworkload: {output_len: 1}\n", "must be at least 2"},
      {"models: [dummy:tiny-llama]\nworkload: {batch_sizes: [0]}\n", "batch_sizes[0]: 0 is out of range"},
      {"models: [dummy:tiny-llama]\nmax_batch: 2\nworkload: {batch_sizes: [1, 4]}\n", "below the largest batch size 4"},
      {"models: [dummy:tiny-llama]\nprice_per_hour: -1\n", "must be a positive $/hour"},
      {"models: [dummy:tiny-llama]\nprice_per_hour: 1\ninstance: a\ninstances: {a: 1}\n", "not both"},
      {"models: [dummy:tiny-llama]\ninstance: big\ninstances: {small: 1}\n", "'big' is not in the instances table (known: small)"},
      {"models: [dummy:tiny-llama]\nserver: {health: /health}\n", "needs a command"},
      {"models: [dummy:tiny-llama]\nserver: {command: 'anvil serve --model {model}'}\n", "must pass {port}"},
      {"models: [dummy:tiny-llama]\nserver: {command: 'serve {modle} {port}'}\n", "unknown placeholder {modle}"},
      {"models: [dummy:tiny-llama]\nserver: {command: 'serve {port'}\n", "never closed"},
      {"models: [dummy:tiny-llama]\nserver: {command: 'x {port}', health: health}\n", "starting with '/'"},
      {"models: [dummy:tiny-llama]\nkv_dtypes: [f16, bf16]\nserver: {command: 'x {model} {port}'}\n",
       "kv_dtypes: 2 values, but the server command has no {kv_dtype}"},
      {"configs: []\n", "configs: expected a non-empty list"},
      {"configs:\n  - {name: a, models: [dummy:tiny-llama]}\n  - {name: a, models: [dummy:tiny-llama]}\n",
       "another configuration has the same name"},
      {"- a\n- b\n", "expected a mapping at the top"},
  };
  for (const Case& c : cases) {
    const std::string message = error_of(c.yaml);
    EXPECT_NE(message.find(c.message), std::string::npos) << c.yaml << " -> " << message;
  }
}

TEST(SweepConfig, EntryPriceReplacesTheDefaultInstance) {
  Result<SweepConfig> config = parse_yaml(
      "instances: {a: 2}\ninstance: a\nmodels: [dummy:tiny-llama]\nconfigs:\n  - {name: x}\n  - {name: y, "
      "price_per_hour: 3}\n  - {name: z, instance: null}\n");
  ASSERT_TRUE(config) << config.status().message();
  EXPECT_DOUBLE_EQ(*config->groups[0].usd_per_hour, 2);
  EXPECT_DOUBLE_EQ(*config->groups[1].usd_per_hour, 3);
  EXPECT_FALSE(config->groups[2].usd_per_hour);  // unpriced: left out of the cost ranking
}

}  // namespace
}  // namespace anvil
