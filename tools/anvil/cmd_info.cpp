// anvil info: the machine (CPU, ISA features), the built-in presets, and optionally one model.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/cpu_features.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "model/presets.h"

namespace anvil::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
};

nlohmann::json config_json(const ModelConfig& c) {
  return {{"arch", c.arch}, {"name", c.name}, {"vocab_size", c.vocab_size}, {"dim", c.dim},
          {"hidden_dim", c.hidden_dim}, {"n_layers", c.n_layers}, {"n_heads", c.n_heads},
          {"n_kv_heads", c.n_kv_heads}, {"head_dim", c.head_dim}, {"context_length", c.context_length},
          {"rope_theta", c.rope_theta}, {"sliding_window", c.sliding_window},
          {"tied_embeddings", c.tied_embeddings}, {"attn_qkv_bias", c.attn_qkv_bias},
          {"parameters", c.parameter_count()}};
}

int info(const InfoOptions& options) {
  const CpuFeatures& cpu = cpu_features();
  nlohmann::json out;
  out["cpu"] = {{"model", cpu.model_name}, {"cores", cpu.logical_cores}, {"features", cpu.names()}};
  if (!options.model.empty()) {
    Result<Checkpoint> checkpoint = load_checkpoint(options.model);
    if (!checkpoint) return fail(checkpoint.status().message());
    auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
    Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared);
    if (!model) return fail(model.status().message());
    nlohmann::json m = config_json(shared->config);
    uint64_t weight_bytes = 0;
    std::map<std::string, int> dtype_counts;
    for (const auto& [name, tensor] : shared->tensors) {
      weight_bytes += tensor.nbytes;
      ++dtype_counts[dtype_name(tensor.dtype)];
    }
    m["weight_bytes"] = weight_bytes;
    m["tensor_dtypes"] = dtype_counts;
    m["vocab"] = {{"model", shared->vocab.model}, {"size", shared->vocab.size()}};
    out["model"] = m;
  } else {
    nlohmann::json presets = nlohmann::json::array();
    for (const ModelPreset& p : model_presets())
      presets.push_back({{"name", p.name}, {"description", p.description},
                         {"parameters", p.config.parameter_count()}, {"default_dtype", dtype_name(p.default_dtype)}});
    out["presets"] = presets;
  }
  if (options.json) {
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("cpu:      {} ({} cores)\nfeatures: {}\n", cpu.model_name, cpu.logical_cores,
             fmt::join(cpu.names(), " "));
  if (out.contains("model")) {
    const auto& m = out["model"];
    fmt::print("model:    {} (arch {})\n", options.model, m["arch"].get<std::string>());
    fmt::print("shape:    {} layers, dim {}, ffn {}, heads {} (kv {}), head_dim {}, vocab {}, context {}\n",
               m["n_layers"].get<int64_t>(), m["dim"].get<int64_t>(), m["hidden_dim"].get<int64_t>(),
               m["n_heads"].get<int64_t>(), m["n_kv_heads"].get<int64_t>(), m["head_dim"].get<int64_t>(),
               m["vocab_size"].get<int64_t>(), m["context_length"].get<int64_t>());
    fmt::print("weights:  {} parameters, {:.2f} GiB ({})\n", format_count(m["parameters"].get<int64_t>()),
               m["weight_bytes"].get<uint64_t>() / 1073741824.0, m["tensor_dtypes"].dump());
    fmt::print("tokenizer: {} ({} tokens)\n", m["vocab"]["model"].get<std::string>(), m["vocab"]["size"].get<int64_t>());
  } else {
    fmt::print("\nbuilt-in presets (--model dummy:<name>[:dtype], random weights at the real shapes):\n");
    for (const ModelPreset& p : model_presets())
      fmt::print("  {:<16} {:>9}  {}\n", p.name, format_count(p.config.parameter_count()), p.description);
  }
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<InfoOptions>();
  CLI::App* cmd = app.add_subcommand("info", "Machine report, built-in presets, or one model's details");
  cmd->add_option("-m,--model", options->model, "Show this model's configuration");
  cmd->add_flag("--json", options->json, "Print JSON");
  cmd->callback([options, &exit_code] { exit_code = info(*options); });
}

}  // namespace anvil::cli
