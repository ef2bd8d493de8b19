// Expanding a sweep configuration into its runs (the Cartesian product of each group's axes),
// each with a stable id: a hash of what it measures, so a re-run finds the runs it already did.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/sweep_config.h"

namespace anvil {

enum class SweepRunKind { InProcess, Server };

// One configuration to measure.
struct SweepRun {
  std::string id;                 // sweep_run_id(sweep_run_measurement_json(*this))
  std::string group;              // the configuration group it came from
  SweepRunKind kind = SweepRunKind::InProcess;
  std::string model;              // as the configuration names it
  std::string model_spec;         // what is loaded (in-process) or passed as {model}: the scheme applied
  std::string weight_scheme;      // "native", a weight dtype ("q4_0") or a scaled scheme ("fp8", "w4a16-rtn:g32")
  std::string quantization;       // a scaled scheme, applied when the model loads ("" for the others)
  std::string kv_dtype;           // f32, f16 or bf16
  int threads = 1;                // resolved (0 in the configuration: all cores)
  int tensor_parallel = 1;        // devices per deployment
  bool gemm_tuning = false;
  int64_t max_batch = 1;          // engine sequences (in-process) or {max_batch} (server)
  SweepWorkload workload;
  std::optional<SweepServerTemplate> server;
  std::optional<double> usd_per_hour;  // none: left out of the cost ranking
  std::string instance;

  // Batch sizes (in-process) or concurrency levels (server): one measurement each.
  const std::vector<int64_t>& loads() const {
    return kind == SweepRunKind::Server ? workload.concurrency : workload.batch_sizes;
  }
  // "dummy:tiny-llama:q8_0 kv=bf16 t=2" (+ " tp=N", " server").
  std::string label() const;
};

struct SweepExpandOptions {
  int all_cores = 1;  // what `threads: 0` means
};

// What a run measures (price and names left out: changing them re-measures nothing).
nlohmann::json sweep_run_measurement_json(const SweepRun& run);
// 16 hex digits of FNV-1a 64 over the measurement's canonical JSON (keys sorted).
std::string sweep_run_id(const nlohmann::json& measurement);

// The model spec a weight scheme turns `model` into: dummy presets take the scheme as their
// dtype suffix; a GGUF file must already hold that type (else: anvil convert --type); other
// formats run natively only. Scaled schemes (fp8, fp8-dynamic, w8a8, w4a16-rtn[:options]) apply to
// any model as it loads (SweepRun::quantization), so the spec stays `model`. Fails for an unknown preset,
// a missing file or an unknown scheme.
Result<std::string> resolve_weight_scheme(const std::string& model, const std::string& scheme);

// Every run of every group, in order: group, model, weight scheme, KV dtype, threads, tensor
// parallel, GEMM tuning. Two runs measuring the same thing are an error naming both groups.
Result<std::vector<SweepRun>> expand_sweep(const SweepConfig& config, const SweepExpandOptions& options);

// The placeholder values of a server run at `port`; {anvil} is `anvil_path`.
std::map<std::string, std::string> sweep_placeholder_values(const SweepRun& run, int port, const std::string& anvil_path);
// The server command with every placeholder filled in.
Result<std::string> sweep_server_command(const SweepRun& run, int port, const std::string& anvil_path);

}  // namespace anvil
