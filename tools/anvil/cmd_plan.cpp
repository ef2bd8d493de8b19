// anvil plan: weights, KV cache and step workspace of a serving configuration against a memory budget.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "core/thread_pool.h"
#include "engine/memory_plan.h"

namespace anvil::cli {
namespace {

struct PlanOptions {
  std::string model;
  int64_t max_num_seqs = 0;
  int64_t context = 0;
  std::string kv_dtype = "f16";
  int64_t tp = 1;
  int64_t max_num_batched_tokens = 0;
  int64_t block_size = 16;
  int64_t threads = 0;
  std::string memory_budget;
  std::string weights_dtype;
  bool json = false;
};

std::string format_size(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (bytes >= (int64_t{1} << 30)) return fmt::format("{:.2f} GiB", b / (1 << 30));
  if (bytes >= (int64_t{1} << 20)) return fmt::format("{:.2f} MiB", b / (1 << 20));
  if (bytes >= (int64_t{1} << 10)) return fmt::format("{:.2f} KiB", b / (1 << 10));
  return fmt::format("{} B", bytes);
}

std::string count_of(int64_t n, const char* noun) { return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s"); }

std::string group_digits(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (n < 0 ? "-" : "") + out;
}

int64_t model_weight_bytes(const PlannedWeights& weights) {
  int64_t bytes = 0;
  for (const PlannedTensor& t : weights.tensors) bytes += t.bytes;
  return bytes;
}

nlohmann::json plan_json(const PlanOptions& options, const PlannedWeights& weights, const MemoryPlan& plan,
                         const std::string& budget_source) {
  const ModelConfig& c = weights.config;
  const MemoryPlanInputs& in = plan.inputs;
  return {
      {"model", options.model},
      {"config", {{"arch", c.arch}, {"name", c.name}, {"parameters", c.parameter_count()},
                  {"n_layers", c.n_layers}, {"n_heads", c.n_heads}, {"n_kv_heads", c.n_kv_heads},
                  {"head_dim", c.head_dim}, {"dim", c.dim}, {"hidden_dim", c.hidden_dim},
                  {"vocab_size", c.vocab_size}, {"context_length", c.context_length}}},
      {"max_num_seqs", in.max_num_seqs},
      {"context", in.context},
      {"kv_dtype", kv_dtype_name(in.kv_dtype)},
      {"tp", in.tp},
      {"max_num_batched_tokens", in.max_num_batched_tokens},
      {"block_size", in.block_size},
      {"threads", in.threads},
      {"weights_dtype", weights.dtype_summary},
      {"budget_source", budget_source},
      // Every *_bytes figure is one rank's; *_all_ranks sums the tp ranks.
      {"model_weights_bytes", model_weight_bytes(weights)},
      {"weights_bytes", plan.weights_bytes},
      {"weights_bytes_all_ranks", plan.weights_bytes_all_ranks},
      {"kv_heads_per_rank", plan.kv_heads_per_rank},
      {"kv_bytes_per_token", plan.kv_bytes_per_token},
      {"kv_bytes_per_token_all_ranks", plan.kv_bytes_per_token * in.tp},
      {"kv_bytes_per_sequence", plan.kv_bytes_per_sequence},
      {"kv_cache_bytes", plan.kv_cache_bytes},
      {"kv_cache_bytes_all_ranks", plan.kv_cache_bytes_all_ranks},
      {"activation_bytes", plan.activation.total()},
      {"activation", {{"forward_scratch_bytes", plan.activation.forward_scratch},
                      {"logits_bytes", plan.activation.logits},
                      {"attention_scratch_bytes", plan.activation.attention_scratch}}},
      {"total_bytes", plan.total_bytes},
      {"total_bytes_all_ranks", plan.total_bytes_all_ranks},
      {"budget_bytes", in.budget_bytes},
      {"fits", plan.fits},
      {"max_num_seqs_fit", plan.max_num_seqs_fit},
      {"max_context_fit", plan.max_context_fit},
  };
}

void print_text(const PlanOptions& options, const PlannedWeights& weights, const MemoryPlan& plan,
                const std::string& budget_source) {
  const ModelConfig& c = weights.config;
  const MemoryPlanInputs& in = plan.inputs;
  const bool split = in.tp > 1;
  fmt::print("model   {} ({}): {} parameters, {} layers, {} heads, {} KV heads x {}, vocab {}, context {}\n",
             options.model, c.name, format_count(c.parameter_count()), c.n_layers, c.n_heads, c.n_kv_heads,
             c.head_dim, c.vocab_size, c.context_length);
  fmt::print("plan    {} x {} tokens, KV {}, weights {}, {} tokens per step, KV blocks of {}, {}{}\n",
             count_of(in.max_num_seqs, "sequence"), in.context, kv_dtype_name(in.kv_dtype), weights.dtype_summary,
             in.max_num_batched_tokens, in.block_size, count_of(in.threads, "thread"),
             split ? fmt::format(", tp {} ({} KV head{} per rank)", in.tp, plan.kv_heads_per_rank,
                                 plan.kv_heads_per_rank == 1 ? "" : "s")
                   : "");
  fmt::print("\n");

  constexpr int kLabel = 40;
  if (split)
    fmt::print("{:<{}} {:>12} {:>12} {:>20}\n", "", kLabel, "per rank", "all ranks", "bytes per rank");
  else
    fmt::print("{:<{}} {:>12} {:>20}\n", "", kLabel, "size", "bytes");
  auto row = [&](const std::string& label, int64_t per_rank, int64_t all_ranks) {
    if (split)
      fmt::print("{:<{}} {:>12} {:>12} {:>20}\n", label, kLabel, format_size(per_rank), format_size(all_ranks),
                 group_digits(per_rank));
    else
      fmt::print("{:<{}} {:>12} {:>20}\n", label, kLabel, format_size(per_rank), group_digits(per_rank));
  };
  row(fmt::format("weights ({})", weights.dtype_summary), plan.weights_bytes, plan.weights_bytes_all_ranks);
  row("KV cache per token", plan.kv_bytes_per_token, plan.kv_bytes_per_token * in.tp);
  row(fmt::format("KV cache per sequence ({} tokens)", in.context), plan.kv_bytes_per_sequence,
      plan.kv_bytes_per_sequence * in.tp);
  row(fmt::format("KV cache ({})", count_of(in.max_num_seqs, "sequence")), plan.kv_cache_bytes, plan.kv_cache_bytes_all_ranks);
  row(fmt::format("activations ({}-token step)", in.max_num_batched_tokens), plan.activation.total(),
      plan.activation.total() * in.tp);
  row("  forward scratch", plan.activation.forward_scratch, plan.activation.forward_scratch * in.tp);
  row(fmt::format("  logits ({} x {} f32)", in.max_num_seqs, c.vocab_size), plan.activation.logits,
      plan.activation.logits * in.tp);
  row(fmt::format("  attention scratch ({})", count_of(in.threads, "thread")), plan.activation.attention_scratch,
      plan.activation.attention_scratch * in.tp);
  row("total", plan.total_bytes, plan.total_bytes_all_ranks);
  row(fmt::format("budget ({})", budget_source), in.budget_bytes, in.budget_bytes * in.tp);
  fmt::print("\n");

  const int64_t margin = in.budget_bytes - plan.total_bytes;
  fmt::print("{:<{}} {}\n", "fits", kLabel,
             plan.fits ? fmt::format("yes, {} to spare{}", format_size(margin), split ? " per rank" : "")
                       : fmt::format("NO, over the budget by {}{}", format_size(-margin), split ? " per rank" : ""));
  fmt::print("{:<{}} {}\n", fmt::format("max sequences at {} tokens", in.context), kLabel,
             plan.max_num_seqs_fit > 0 ? std::to_string(plan.max_num_seqs_fit)
                                       : std::string("0 (not even one sequence fits)"));
  std::string context_fit = std::to_string(plan.max_context_fit);
  if (plan.max_context_fit == 0)
    context_fit = "0 (not even one token per sequence fits)";
  else if (plan.max_context_fit == c.context_length)
    context_fit += " (the model's context length)";
  fmt::print("{:<{}} {}\n", fmt::format("max context at {}", count_of(in.max_num_seqs, "sequence")), kLabel,
             context_fit);
}

int plan_command(const PlanOptions& options) {
  std::optional<KvDtype> kv_dtype = kv_dtype_from_name(options.kv_dtype);
  if (!kv_dtype) return fail(fmt::format("unknown KV dtype '{}'; use f32, f16, bf16, fp8 or int8", options.kv_dtype));
  std::optional<DType> weights_dtype;
  if (!options.weights_dtype.empty()) {
    weights_dtype = dtype_from_name(options.weights_dtype);
    if (!weights_dtype)
      return fail(fmt::format("unknown weights dtype '{}'; use f32, f16, bf16, q8_0, q4_0, q4_k or q6_k",
                              options.weights_dtype));
  }
  MemoryPlanInputs inputs;
  inputs.max_num_seqs = options.max_num_seqs;
  inputs.kv_dtype = *kv_dtype;
  inputs.tp = options.tp;
  inputs.max_num_batched_tokens = options.max_num_batched_tokens;
  inputs.block_size = options.block_size;
  inputs.threads = options.threads > 0 ? options.threads : default_thread_count();
  // Checked before the model loads, so that a typo fails fast; the library checks them too.
  if (options.max_num_seqs < 1)
    return fail(fmt::format("--max-num-seqs must be at least 1 (got {})", options.max_num_seqs));
  if (options.context < 0) return fail(fmt::format("--context must be at least 1 (got {})", options.context));
  if (options.tp < 1) return fail(fmt::format("--tp must be at least 1 (got {})", options.tp));
  if (options.threads < 0) return fail(fmt::format("--threads must be at least 1 (got {})", options.threads));
  if (options.max_num_batched_tokens < 0)
    return fail(fmt::format("--max-num-batched-tokens must be at least 1 (got {})", options.max_num_batched_tokens));

  std::string budget_source;
  if (!options.memory_budget.empty()) {
    Result<int64_t> budget = parse_byte_size(options.memory_budget);
    if (!budget) return fail("--memory-budget: " + budget.status().message());
    inputs.budget_bytes = *budget;
    budget_source = options.tp > 1 ? "--memory-budget, per rank" : "--memory-budget";
  } else {
    Result<int64_t> available = available_memory_bytes();
    if (!available) return fail(available.status().message());
    // The default assumes every rank runs on this machine and shares its memory.
    inputs.budget_bytes = *available / options.tp;
    budget_source = options.tp > 1 ? fmt::format("MemAvailable / {} ranks", options.tp) : "MemAvailable";
  }

  Result<PlannedWeights> weights = plan_weights_for_spec(options.model, weights_dtype);
  if (!weights) return fail(weights.status().message());
  inputs.context = options.context > 0 ? options.context : weights->config.context_length;
  Result<MemoryPlan> plan = plan_memory(*weights, inputs);
  if (!plan) return fail(options.model + ": " + plan.status().message());

  if (options.json)
    fmt::print("{}\n", plan_json(options, *weights, *plan, budget_source).dump(2));
  else
    print_text(options, *weights, *plan, budget_source);
  return 0;
}

}  // namespace

void add_plan_command(CLI::App& app, int& exit_code) {
  auto options = std::make_shared<PlanOptions>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Memory plan: weights, KV cache and step workspace for B sequences at context C, against a budget");
  cmd->add_option("-m,--model", options->model,
                  "Model: dummy:<preset>[:dtype] (never materialized), a GGUF file, an HF directory or a llama2.c file")
      ->required();
  cmd->add_option("-b,--max-num-seqs", options->max_num_seqs, "Sequences held at once (B)")->required();
  cmd->add_option("-c,--context", options->context, "Tokens per sequence, prompt + output (default: the model's context length)");
  cmd->add_option("--kv-dtype", options->kv_dtype,
                  "KV cache element type: f32, f16, bf16, or fp8, int8 (1 byte per element plus a 4-byte scale per "
                  "token, layer and KV head, as the engine allocates)")
      ->capture_default_str();
  cmd->add_option("--tp", options->tp,
                  "Tensor-parallel ranks: matrices and KV heads split over them (KV heads replicated when fewer "
                  "than ranks); figures are per rank, with totals over all ranks")
      ->capture_default_str();
  cmd->add_option("--max-num-batched-tokens", options->max_num_batched_tokens,
                  "Tokens per step, for the activation workspace (default: max(B, 512))");
  cmd->add_option("--memory-budget", options->memory_budget,
                  "Memory per rank: 24GiB, 500MiB, 40GB or bytes (default: MemAvailable, divided among the --tp "
                  "ranks as if all run on this machine)");
  cmd->add_option("--weights-dtype", options->weights_dtype,
                  "Plan the weight matrices at this dtype instead: f32, f16, bf16, q8_0, q4_0, q4_k or q6_k");
  cmd->add_option("--block-size", options->block_size, "KV cache rows per block; sequences take whole blocks")
      ->capture_default_str();
  cmd->add_option("-t,--threads", options->threads, "Threads per rank, for the attention scratch (default: all cores)");
  cmd->add_flag("--json", options->json,
                "Print one JSON object (every *_bytes figure is per rank; *_all_ranks sums the ranks)");
  cmd->callback([options, &exit_code] { exit_code = plan_command(*options); });
}

}  // namespace anvil::cli
