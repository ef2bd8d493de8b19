// anvil bench batched: aggregate throughput vs concurrent sequences (llama-batched-bench's table).
#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench/batched_bench.h"
#include "commands.h"
#include "core/cpu_features.h"
#include "core/progress.h"
#include "engine/kv_block_pool.h"
#include "engine/memory_plan.h"
#include "model/decoder_model.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "model/repack_weights.h"

namespace anvil::cli {
namespace {

struct BatchedCliOptions {
  std::string model, batch_sizes = "1,4,16,32,64", kv_dtype = "f16", kv_memory;
  int64_t prompt = 128, generate = 64, max_batched_tokens = 2048;
  int threads = 0;
  bool json = false;
};

Result<std::vector<int64_t>> parse_sizes(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const long long v = std::stoll(item, &used);
      if (used != item.size() || v < 1) throw std::invalid_argument(item);
      out.push_back(v);
    } catch (const std::exception&) {
      return Status::error(fmt::format("'{}' is not a batch size (a list like 1,4,16)", item));
    }
  }
  if (out.empty()) return Status::error("no batch sizes given");
  return out;
}

int bench_batched(const BatchedCliOptions& cli) {
  Result<std::vector<int64_t>> sizes = parse_sizes(cli.batch_sizes);
  if (!sizes) return fail(sizes.status().message());
  std::optional<DType> kv_dtype = kv_cache_dtype_from_name(cli.kv_dtype);
  if (!kv_dtype) return fail("unknown KV dtype '" + cli.kv_dtype + "' (f32, f16, bf16, fp8, int8)");

  TerminalProgress load_progress("loading " + cli.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(cli.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  repack_weights_for_decode(*checkpoint, cli.threads);
  auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared);
  if (!model) return fail(model.status().message());
  const ModelConfig& c = shared->config;

  BatchedBenchOptions o;
  o.prompt_tokens = cli.prompt;
  o.generate_tokens = cli.generate;
  o.batch_sizes = *sizes;
  o.engine.kv_dtype = *kv_dtype;
  o.engine.max_num_batched_tokens = cli.max_batched_tokens;
  o.engine.enable_prefix_caching = false;  // random prompts share nothing; keep the table comparable
  if (!cli.kv_memory.empty()) {
    Result<int64_t> bytes = parse_byte_size(cli.kv_memory);
    if (!bytes) return fail(bytes.status().message());
    o.engine.kv_cache_bytes = *bytes;
  } else {
    // Exactly what the largest batch needs (whole blocks), so no preemption distorts the table.
    const int64_t b_max = *std::max_element(sizes->begin(), sizes->end());
    const int64_t blocks = b_max * ((cli.prompt + cli.generate + o.engine.block_size - 1) / o.engine.block_size);
    o.engine.kv_cache_bytes =
        blocks * static_cast<int64_t>(KvBlockPool::block_bytes(c, *kv_dtype, o.engine.block_size));
  }

  ThreadPool pool(cli.threads > 0 ? cli.threads : default_thread_count());
  TerminalProgress progress("benchmarking batch sizes", false);
  Result<std::vector<BatchedBenchRow>> rows = run_batched_bench(**model, pool, o, progress.callback());
  progress.finish();
  if (!rows) return fail(rows.status().message());

  if (cli.json) {
    nlohmann::json results = nlohmann::json::array();
    for (const BatchedBenchRow& r : *rows)
      results.push_back({{"pp", cli.prompt}, {"tg", cli.generate}, {"batch", r.batch},
                         {"n_kv", r.batch * (cli.prompt + cli.generate)}, {"t_pp_s", r.prompt_seconds},
                         {"speed_pp_tok_s", r.pp_tok_s}, {"t_tg_s", r.generate_seconds}, {"speed_tg_tok_s", r.tg_tok_s},
                         {"t_s", r.total_seconds}, {"speed_tok_s", r.total_tok_s}, {"steps", r.steps},
                         {"scheduler_overhead", r.scheduler_overhead()}});
    nlohmann::json out = {{"model", cli.model}, {"threads", pool.thread_count()}, {"cpu", cpu_features().model_name},
                          {"kv_dtype", cli.kv_dtype}, {"max_num_batched_tokens", cli.max_batched_tokens},
                          {"results", results}};
    fmt::print("{}\n", out.dump(2));
    return 0;
  }
  fmt::print("anvil bench batched: {}, {} threads, KV {}, max {} batched tokens per step\n\n", cli.model,
             pool.thread_count(), cli.kv_dtype, cli.max_batched_tokens);
  fmt::print("| PP | TG | B | N_KV | T_PP s | S_PP t/s | T_TG s | S_TG t/s | T s | S t/s | steps | overhead |\n"
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (const BatchedBenchRow& r : *rows)
    fmt::print("| {} | {} | {} | {} | {:.3f} | {:.1f} | {:.3f} | {:.1f} | {:.3f} | {:.1f} | {} | {:.2f}% |\n", cli.prompt,
               cli.generate, r.batch, r.batch * (cli.prompt + cli.generate), r.prompt_seconds, r.pp_tok_s,
               r.generate_seconds, r.tg_tok_s, r.total_seconds, r.total_tok_s, r.steps, 100.0 * r.scheduler_overhead());
  fmt::print("\nS_TG: tokens generated after every prompt is processed / that time. overhead: step time outside "
             "the model forward (scheduling, sampling, delivery).\n");
  return 0;
}

}  // namespace

void add_bench_batched_command(CLI::App& bench, int& exit_code) {
  auto o = std::make_shared<BatchedCliOptions>();
  CLI::App* cmd = bench.add_subcommand(
      "batched", "Aggregate tokens/s vs concurrent sequences through the batching engine (llama-batched-bench)");
  cmd->add_option("-m,--model", o->model, "Model (file, directory or dummy:<preset>[:dtype])")->required();
  cmd->add_option("--npp,--prompt-tokens", o->prompt, "Prompt tokens per sequence")->capture_default_str();
  cmd->add_option("--ntg,--generate-tokens", o->generate, "Generated tokens per sequence")->capture_default_str();
  cmd->add_option("--npl,--batch-sizes", o->batch_sizes, "Concurrent sequences, a list")->capture_default_str();
  cmd->add_option("-t,--threads", o->threads, "Threads (default: all cores)");
  cmd->add_option("--kv-dtype", o->kv_dtype, "KV cache dtype: f32, f16, bf16, fp8 (E4M3), int8")->capture_default_str();
  cmd->add_option("--kv-cache-memory", o->kv_memory, "KV cache size (default: what the largest batch needs)");
  cmd->add_option("--max-num-batched-tokens", o->max_batched_tokens, "Tokens per engine step")->capture_default_str();
  cmd->add_flag("--json", o->json, "One JSON object instead of the table");
  cmd->callback([o, &exit_code] { exit_code = bench_batched(*o); });
}

}  // namespace anvil::cli
