// `anvil bench sweep` configuration: the axes to sweep (models x weight schemes x KV dtypes x
// threads x tensor-parallel degree x GEMM tuning), the workload, prices, and an optional server
// command template. Parsed from one JSON document (YAML files are converted first,
// bench/sweep_config_file.h); the format is documented in docs/BENCHMARKS.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"

namespace anvil {

// What every run of a group measures.
struct SweepWorkload {
  int64_t input_len = 128;
  int64_t output_len = 128;                        // >= 2: ms/token is measured between output tokens
  int num_iters_warmup = 1;                        // untimed iterations per batch size / warm-up requests per concurrency level
  int num_iters = 3;                               // in-process: timed iterations per batch size
  int64_t num_prompts = 100;                       // server: requests per concurrency level
  std::vector<int64_t> batch_sizes = {1, 2, 4, 8}; // in-process runs: one measurement per batch size
  std::vector<int64_t> concurrency = {1, 2, 4, 8}; // server runs: one measurement per concurrency level
  uint64_t seed = 0;
};

// A server started per run (`anvil serve`, llama-server, vLLM ...) and measured over HTTP.
struct SweepServerTemplate {
  // Run by /bin/sh -c after placeholder substitution ({model} {quant} {port} {tp} {max_batch}
  // {threads} {kv_dtype} {anvil}; `{{` and `}}` stand for literal braces).
  std::string command;
  std::string health = "/health";  // GET path that answers 200 once the server is ready
  double startup_timeout_s = 600;
  double stop_grace_s = 10;        // SIGTERM, then SIGKILL after this long
};

// One entry of `configs` (or the whole file when it has none), with the file's defaults applied.
struct SweepGroup {
  std::string name;
  std::vector<std::string> models;                     // dummy:<preset>[:dtype], a GGUF file, ...
  std::vector<std::string> weight_schemes = {"native"};
  std::vector<std::string> kv_dtypes = {"f16"};
  std::vector<int> threads = {0};                      // 0: all cores
  std::vector<int> tensor_parallel = {1};
  std::vector<bool> gemm_tuning = {false};
  int64_t max_batch = 0;                               // engine sequences; 0: the largest batch / concurrency
  SweepWorkload workload;
  std::optional<SweepServerTemplate> server;           // none: in-process runs
  std::optional<double> usd_per_hour;                  // from price_per_hour or the instance's price
  std::string instance;                                // the instance it names, if any
};

struct SweepConfig {
  std::string name;
  std::string source;                       // the file, for messages
  std::map<std::string, double> instances;  // instance name -> $/hour
  std::vector<SweepGroup> groups;
};

// The placeholders a server command may use.
const std::vector<std::string>& sweep_placeholder_names();

// Checks and converts a document; unknown keys, wrong types and axes anvil cannot run yet
// (tensor parallelism > 1, GEMM tuning) are errors whose message starts with `source` and
// names the key ("sweep.yaml: configs[1].tensor_parallel: 2: tensor parallelism is not
// available yet; use 1").
Result<SweepConfig> parse_sweep_config(const nlohmann::json& document, const std::string& source);

// read_config_document + parse_sweep_config.
Result<SweepConfig> load_sweep_config(const std::string& path);

}  // namespace anvil
