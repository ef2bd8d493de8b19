// anvil info: the machine (CPU, ISA features, caches, measured limits), the presets, optionally one model.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "bench/machine_limits.h"
#include "commands.h"
#include "compute/cpu/onednn_gemm.h"
#include "core/cpu_features.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "model/decoder_model.h"
#include "model/load_checkpoint.h"
#include "model/presets.h"

namespace anvil::cli {
namespace {

struct InfoOptions {
  std::string model;
  bool json = false;
  bool no_measure = false;
  bool remeasure = false;
  int threads = 0;
  double bandwidth_gib = 1.0;
};

std::string format_bytes(size_t bytes) {
  if (bytes >= (size_t{1} << 30) && bytes % (size_t{1} << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
  if (bytes >= (size_t{1} << 20) && bytes % (size_t{1} << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
  return fmt::format("{} KiB", bytes >> 10);
}

std::string cache_name(const CpuCache& c) {
  const char* suffix = c.type == "Data" ? "d" : c.type == "Instruction" ? "i" : "";
  return fmt::format("L{}{}", c.level, suffix);
}

// The measured limits (cached per CPU model and thread count); null when --no-measure finds none.
nlohmann::json limits_json(const InfoOptions& options, std::string& error) {
  ThreadPool pool(options.threads > 0 ? options.threads : default_thread_count());
  // A model report stays fast (scripts call it): it shows cached limits and measures nothing.
  if (options.no_measure || (!options.model.empty() && !options.remeasure)) {
    std::optional<MachineLimits> cached = cached_machine_limits(pool.thread_count());
    if (!cached) return nullptr;
    nlohmann::json j = machine_limits_to_json(*cached);
    j["source"] = "cache";
    return j;
  }
  MeasureOptions measure;
  measure.bandwidth_bytes = static_cast<size_t>(options.bandwidth_gib * 1073741824.0);
  const bool cached = !options.remeasure && cached_machine_limits(pool.thread_count()).has_value();
  TerminalProgress progress(
      fmt::format("measuring bandwidth and peak GEMM FLOP/s ({} threads, a few seconds)", pool.thread_count()), false);
  measure.progress = progress.callback();
  Result<MachineLimits> limits = machine_limits(pool, measure, options.remeasure);
  progress.finish();
  if (!limits) {
    error = limits.status().message();
    return nullptr;
  }
  nlohmann::json j = machine_limits_to_json(*limits);
  j["source"] = cached ? "cache" : "measured";
  return j;
}

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
  out["cpu"] = {{"model", cpu.model_name}, {"cores", cpu.logical_cores}, {"features", cpu.names()},
                {"amx_permission", amx_permission_name(request_amx_permission())}};
  nlohmann::json caches = nlohmann::json::array();
  for (const CpuCache& c : read_cpu_caches())
    caches.push_back({{"level", c.level}, {"type", c.type}, {"size_bytes", c.size_bytes},
                      {"shared_by_cpus", c.shared_by_cpus}});
  out["cpu"]["caches"] = caches;
  out["onednn_version"] = onednn_version();
  std::string limits_error;
  out["limits"] = limits_json(options, limits_error);
  if (!limits_error.empty()) return fail(limits_error);
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
      weight_bytes += tensor.nbytes + tensor.scale_bytes();  // scaled types: codes plus scales
      ++dtype_counts[dtype_name(tensor.dtype)];
    }
    m["weight_bytes"] = weight_bytes;
    m["tensor_dtypes"] = dtype_counts;
    if (const QuantizationInfo& q = shared->quantization; !q.scheme.empty()) {
      m["quantization"] = {{"scheme", q.scheme}, {"granularity", q.granularity}, {"group_size", q.group_size},
                           {"symmetric", q.symmetric}};
      if (q.activations != ActivationQuant::None) m["quantization"]["activations"] = activation_quant_name(q.activations);
      if (q.act_order) m["quantization"]["act_order"] = q.dynamic_groups ? "dynamic-groups" : "static-groups";
    }
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
  const AmxPermission amx = request_amx_permission();
  fmt::print("amx:      {}\n", amx == AmxPermission::Denied ? "present, but the kernel denied tile-data permission "
                                                               "(AMX kernels disabled)"
                                                             : amx_permission_name(amx));
  std::vector<std::string> cache_texts;
  for (const CpuCache& c : read_cpu_caches())
    cache_texts.push_back(fmt::format("{} {} {}", cache_name(c), format_bytes(c.size_bytes),
                                      c.shared_by_cpus > 1 ? fmt::format("shared by {} cpus", c.shared_by_cpus)
                                                           : std::string("per cpu")));
  if (!cache_texts.empty()) fmt::print("caches:   {}\n", fmt::join(cache_texts, ", "));
  const nlohmann::json& limits = out["limits"];
  if (limits.is_null()) {
    fmt::print("limits:   not measured yet for {} threads (run `anvil info` without --no-measure)\n",
               options.threads > 0 ? options.threads : default_thread_count());
  } else {
    fmt::print("limits:   read bandwidth {:.1f} GB/s ({} streaming sum, {} threads)\n",
               limits["read_bandwidth_gbs"].get<double>(), limits["bandwidth_isa"].get<std::string>(),
               limits["threads"].get<int>());
    std::vector<std::string> peaks;
    for (const char* type : {"f32", "bf16", "int8"}) {
      const double gflops = limits["peak_gflops"][type].get<double>();
      const std::string impl = limits["gemm_impl"][type].get<std::string>();
      peaks.push_back(gflops > 0 ? fmt::format("{} {:.0f} ({})", type, gflops, impl) : fmt::format("{} n/a", type));
    }
    fmt::print("          peak GEMM GFLOP/s, oneDNN {} {}: {}\n", out["onednn_version"].get<std::string>(),
               limits["gemm_shape"].get<std::string>(), fmt::join(peaks, ", "));
    fmt::print("          ({} {}; --remeasure to measure again)\n",
               limits["source"] == "cache" ? "cached, measured" : "measured", limits["measured_at"].get<std::string>());
  }
  if (out.contains("model")) {
    const auto& m = out["model"];
    fmt::print("model:    {} (arch {})\n", options.model, m["arch"].get<std::string>());
    fmt::print("shape:    {} layers, dim {}, ffn {}, heads {} (kv {}), head_dim {}, vocab {}, context {}\n",
               m["n_layers"].get<int64_t>(), m["dim"].get<int64_t>(), m["hidden_dim"].get<int64_t>(),
               m["n_heads"].get<int64_t>(), m["n_kv_heads"].get<int64_t>(), m["head_dim"].get<int64_t>(),
               m["vocab_size"].get<int64_t>(), m["context_length"].get<int64_t>());
    fmt::print("weights:  {} parameters, {:.2f} GiB ({})\n", format_count(m["parameters"].get<int64_t>()),
               m["weight_bytes"].get<uint64_t>() / 1073741824.0, m["tensor_dtypes"].dump());
    if (m.contains("quantization")) {
      const auto& q = m["quantization"];
      std::string detail = q["granularity"].get<std::string>();
      if (q["group_size"].get<int64_t>() > 0) detail += fmt::format(" {}", q["group_size"].get<int64_t>());
      detail += q["symmetric"].get<bool>() ? ", symmetric" : ", asymmetric";
      if (q.contains("activations")) detail += ", activations " + q["activations"].get<std::string>();
      if (q.contains("act_order")) detail += ", act-order (" + q["act_order"].get<std::string>() + ")";
      fmt::print("quantization: {} ({})\n", q["scheme"].get<std::string>(), detail);
    }
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
  cmd->add_flag("--no-measure", options->no_measure,
                "Skip measuring bandwidth and peak FLOP/s (show cached figures; implied by --model)");
  cmd->add_flag("--remeasure", options->remeasure, "Measure the machine limits again, replacing the cached ones");
  cmd->add_option("-t,--threads", options->threads, "Threads for the measurements (default: all cores)")
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--bandwidth-gib", options->bandwidth_gib, "Buffer streamed for the bandwidth measurement")
      ->check(CLI::Range(0.01, 64.0));
  cmd->callback([options, &exit_code] { exit_code = info(*options); });
}

}  // namespace anvil::cli
