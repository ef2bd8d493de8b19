// Sweep expansion: axes -> runs, model specs per weight scheme, stable run ids, server commands.
#include "bench/sweep_plan.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <string_view>

#include "bench/sweep_placeholders.h"
#include "core/dtype.h"
#include "formats/gguf_reader.h"
#include "model/presets.h"
#include "quant/online_quantization.h"

namespace anvil {
namespace {

std::string lower(std::string text) {
  for (char& ch : text) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return text;
}

bool is_gguf_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

// The dtype holding most elements of the file's 2-D weight matrices (what `anvil convert --type` sets).
Result<std::string> gguf_weight_type(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(GgufFile file, GgufFile::open(path));
  std::map<DType, int64_t> elements;
  for (const GgufTensorInfo& t : file.tensors())
    if (t.ne.size() == 2) elements[t.dtype] += t.numel();
  if (elements.empty()) return Status::error(path + ": no weight matrices");
  auto most = std::max_element(elements.begin(), elements.end(),
                               [](const auto& a, const auto& b) { return a.second < b.second; });
  return lower(dtype_name(most->first));
}

std::string convert_hint(const std::string& model, const std::string& scheme) {
  const std::filesystem::path p(model);
  const std::string out = (p.parent_path() / (p.stem().string() + "-" + scheme + ".gguf")).string();
  return fmt::format("anvil convert --model {} --type {} --out {}", model, scheme, out);
}

// A value as one word of /bin/sh: unchanged when it has nothing the shell would split or expand.
std::string shell_word(const std::string& value) {
  const bool safe = !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || std::string_view("_./:=+-@%,").find(ch) != std::string_view::npos;
  });
  if (safe) return value;
  std::string quoted = "'";
  for (char ch : value) quoted += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return quoted + "'";
}

}  // namespace

std::string SweepRun::label() const {
  std::string model_name = model_spec;
  if (model_spec.rfind("dummy:", 0) != 0) model_name = std::filesystem::path(model_spec).filename().string();
  if (model_name.empty()) model_name = model_spec;
  std::string text = fmt::format("{} kv={} t={}", model_name, kv_dtype, threads);
  if (!quantization.empty() || (model_spec.rfind("dummy:", 0) != 0 && weight_scheme != "native"))
    text += " " + weight_scheme;
  if (tensor_parallel > 1) text += fmt::format(" tp={}", tensor_parallel);
  if (kind == SweepRunKind::Server) text += " server";
  return text;
}

nlohmann::json sweep_run_measurement_json(const SweepRun& run) {
  const SweepWorkload& w = run.workload;
  nlohmann::json workload = {{"input_len", w.input_len},
                              {"output_len", w.output_len},
                              {"seed", w.seed},
                              {"num_iters_warmup", w.num_iters_warmup}};
  nlohmann::json j = {{"model", run.model_spec},
                      {"weight_scheme", run.weight_scheme},
                      {"kv_dtype", run.kv_dtype},
                      {"threads", run.threads},
                      {"tensor_parallel", run.tensor_parallel},
                      {"gemm_tuning", run.gemm_tuning},
                      {"max_batch", run.max_batch}};
  if (!run.quantization.empty()) j["quantization"] = run.quantization;  // absent otherwise: older ids stay
  if (run.kind == SweepRunKind::Server) {
    j["kind"] = "server";
    workload["concurrency"] = w.concurrency;
    workload["num_prompts"] = w.num_prompts;
    j["server"] = {{"command", run.server->command}, {"health", run.server->health}};
  } else {
    j["kind"] = "in_process";
    workload["batch_sizes"] = w.batch_sizes;
    workload["num_iters"] = w.num_iters;
  }
  j["workload"] = workload;
  return j;
}

std::string sweep_run_id(const nlohmann::json& measurement) {
  uint64_t hash = 14695981039346656037ull;  // FNV-1a 64: stable across builds and machines
  for (unsigned char ch : measurement.dump()) {
    hash ^= ch;
    hash *= 1099511628211ull;
  }
  return fmt::format("{:016x}", hash);
}

Result<std::string> resolve_weight_scheme(const std::string& model, const std::string& scheme) {
  const bool scaled = is_scaled_scheme(scheme);
  if (!scaled && scheme != "native" && !dtype_from_name(scheme)) {
    Result<std::optional<QuantizeOptions>> parsed = parse_online_quantization(scheme);
    return Status::error(fmt::format("weight scheme '{}': {}", scheme,
                                     parsed ? "not a scheme (native, f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, fp8, "
                                              "fp8-dynamic, w8a8, w4a16-rtn[:g32,asym])"
                                            : parsed.status().message()));
  }
  if (model.rfind("dummy:", 0) == 0) {
    const std::string rest = model.substr(6);
    const size_t colon = rest.find(':');
    const std::string preset = rest.substr(0, colon);
    if (!find_model_preset(preset))
      return Status::error(fmt::format("model {}: unknown preset '{}' (anvil info --presets lists them)", model, preset));
    if (scaled) return model;  // quantized after the preset is generated
    if (colon != std::string::npos) {
      const std::string dtype = lower(rest.substr(colon + 1));
      if (scheme == "native" || scheme == dtype) return model;
      return Status::error(fmt::format("model {} already names its weight type {}; list dummy:{} without the suffix "
                                       "to sweep weight schemes",
                                       model, dtype, preset));
    }
    return scheme == "native" ? model : model + ":" + scheme;
  }
  std::error_code ec;
  if (!std::filesystem::exists(model, ec))
    return Status::error(fmt::format("model {}: no such file or directory (a model is a GGUF file, a Hugging Face "
                                     "directory, a llama2.c file, or dummy:<preset>[:dtype])",
                                     model));
  if (scheme == "native" || scaled) return model;
  if (!std::filesystem::is_directory(model, ec) && is_gguf_file(model)) {
    ANVIL_ASSIGN_OR_RETURN(std::string file_type, gguf_weight_type(model));
    if (file_type == scheme) return model;
    return Status::error(fmt::format("model {} holds {} weights, not {}; make a {} file with `{}` and list it, or use "
                                     "weight scheme native",
                                     model, file_type, scheme, scheme, convert_hint(model, scheme)));
  }
  return Status::error(fmt::format("model {}: weight scheme {} needs a GGUF file of that type; make one with `{}` and "
                                   "list it, or use weight scheme native",
                                   model, scheme, convert_hint(model, scheme)));
}

Result<std::vector<SweepRun>> expand_sweep(const SweepConfig& config, const SweepExpandOptions& options) {
  std::vector<SweepRun> runs;
  std::map<std::string, std::string> group_of_id;
  std::map<std::pair<std::string, std::string>, std::string> resolved;  // (model, scheme) -> spec
  for (const SweepGroup& g : config.groups) {
    const std::string where = config.groups.size() > 1 ? fmt::format("{}: configuration '{}'", config.source, g.name)
                                                       : config.source;
    for (const std::string& model : g.models) {
      for (const std::string& scheme : g.weight_schemes) {
        auto key = std::make_pair(model, scheme);
        if (!resolved.count(key)) {
          Result<std::string> spec = resolve_weight_scheme(model, scheme);
          if (!spec) return spec.status().with_context(where);
          resolved[key] = *spec;
        }
        for (const std::string& kv : g.kv_dtypes)
          for (int threads : g.threads)
            for (int tp : g.tensor_parallel)
              for (bool tuning : g.gemm_tuning) {
                SweepRun r;
                r.group = g.name;
                r.kind = g.server ? SweepRunKind::Server : SweepRunKind::InProcess;
                r.model = model;
                r.model_spec = resolved[key];
                r.weight_scheme = scheme;
                if (is_scaled_scheme(scheme)) r.quantization = scheme;
                r.kv_dtype = kv;
                r.threads = threads > 0 ? threads : std::max(1, options.all_cores);
                r.tensor_parallel = tp;
                r.gemm_tuning = tuning;
                r.workload = g.workload;
                r.server = g.server;
                r.max_batch = g.max_batch > 0 ? g.max_batch : *std::max_element(r.loads().begin(), r.loads().end());
                r.usd_per_hour = g.usd_per_hour;
                r.instance = g.instance;
                r.id = sweep_run_id(sweep_run_measurement_json(r));
                if (r.server) {
                  Result<std::string> command = sweep_server_command(r, 0, "anvil");
                  if (!command) return command.status().with_context(where + ": server.command");
                }
                auto [it, inserted] = group_of_id.emplace(r.id, g.name);
                if (!inserted)
                  return Status::error(fmt::format(
                      "{}: run {} ({}) appears twice, in configurations '{}' and '{}': they measure the same thing",
                      config.source, r.id, r.label(), it->second, g.name));
                runs.push_back(std::move(r));
              }
      }
    }
  }
  return runs;
}

std::map<std::string, std::string> sweep_placeholder_values(const SweepRun& run, int port, const std::string& anvil_path) {
  return {{"model", run.model_spec},
          {"quant", run.weight_scheme},
          {"quantization", run.quantization.empty() ? std::string("none") : run.quantization},
          {"port", std::to_string(port)},
          {"tp", std::to_string(run.tensor_parallel)},
          {"max_batch", std::to_string(run.max_batch)},
          {"threads", std::to_string(run.threads)},
          {"kv_dtype", run.kv_dtype},
          {"anvil", anvil_path}};
}

Result<std::string> sweep_server_command(const SweepRun& run, int port, const std::string& anvil_path) {
  if (!run.server) return Status::error(fmt::format("run {} has no server command", run.id));
  std::map<std::string, std::string> values = sweep_placeholder_values(run, port, anvil_path);
  for (auto& [name, value] : values) value = shell_word(value);
  return substitute_placeholders(run.server->command, values);
}

}  // namespace anvil
