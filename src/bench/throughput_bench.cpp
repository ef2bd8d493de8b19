// Offline runs on the engine in synchronous mode: submit everything, step until done, time each request.
#include "bench/throughput_bench.h"

#include <fmt/format.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <random>

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// What the callbacks write. Shared with them (not borrowed) because the engine may call a
// callback after run_offline_requests returned on an error; `active` turns those into no-ops.
struct RunState {
  struct Tracked {
    Clock::time_point submitted;
    RequestTiming timing;
    bool finished = false;
  };
  std::vector<Tracked> requests;
  std::vector<RequestTiming> finished;
  int64_t started_prompt_tokens = 0;
  int64_t output_tokens = 0;
  Clock::time_point last_finish;
  std::string error;  // the first request that ended badly
  bool active = true;
  std::function<void(int64_t)> on_tokens;
};

void on_output(RunState& state, size_t index, const RequestOutput& out) {
  if (!state.active) return;
  const Clock::time_point now = Clock::now();
  RunState::Tracked& r = state.requests[index];
  if (!out.new_tokens.empty()) {
    if (r.timing.output_tokens == 0) {
      r.timing.ttft_s = seconds_between(r.submitted, now);
      state.started_prompt_tokens += r.timing.prompt_tokens;
    }
    const int64_t n = static_cast<int64_t>(out.new_tokens.size());
    r.timing.output_tokens += n;
    state.output_tokens += n;
    if (state.on_tokens) state.on_tokens(n);
  }
  if (!out.finished()) return;
  r.finished = true;
  if (out.finish == FinishReason::Error || out.finish == FinishReason::Abort) {
    if (state.error.empty())
      state.error = fmt::format("request {} ended with {}{}", index, finish_reason_name(out.finish),
                                out.error.empty() ? std::string() : ": " + out.error);
    return;
  }
  r.timing.e2e_s = seconds_between(r.submitted, now);
  state.last_finish = now;
  state.finished.push_back(r.timing);
}

// Cancels what is still live and lets the engine deliver the aborts, so it is idle again.
void cancel_all(Engine& engine, const std::vector<RequestId>& ids) {
  for (RequestId id : ids) engine.cancel(id);
  Status drained = engine.run_until_idle();
  (void)drained;  // best effort: the caller already has the error or the interruption to report
}

bool interrupted(const std::atomic<bool>* flag) { return flag && flag->load(std::memory_order_relaxed); }

}  // namespace

Result<OfflineRun> run_offline_requests(Engine& engine, std::span<const std::vector<int32_t>> prompts,
                                        const OfflineRunOptions& options) {
  if (engine.has_work()) return Status::error("internal: the benchmark needs an idle engine");
  auto state = std::make_shared<RunState>();
  state->requests.resize(prompts.size());
  state->on_tokens = options.on_tokens;
  std::vector<RequestId> ids;
  ids.reserve(prompts.size());
  const Clock::time_point start = Clock::now();
  state->last_finish = start;
  for (size_t i = 0; i < prompts.size(); ++i) {
    RequestParams params;
    params.prompt = prompts[i];
    params.sampling.temperature = 0.0f;
    params.max_tokens = options.output_len;
    params.ignore_eos = true;
    params.detokenize = false;
    state->requests[i].timing.prompt_tokens = static_cast<int64_t>(prompts[i].size());
    state->requests[i].submitted = Clock::now();
    Result<RequestId> id =
        engine.submit(std::move(params), [state, i](const RequestOutput& out) { on_output(*state, i, out); });
    if (!id) {
      state->active = false;
      cancel_all(engine, ids);
      return id.status().with_context(fmt::format("request {}", i));
    }
    ids.push_back(*id);
  }

  OfflineRun run;
  run.submitted = static_cast<int64_t>(prompts.size());
  while (engine.has_work()) {
    if (interrupted(options.interrupt)) {
      run.interrupted = true;
      break;
    }
    Result<bool> stepped = engine.step();
    if (!stepped || !state->error.empty()) {
      state->active = false;
      cancel_all(engine, ids);
      return stepped ? Status::error(state->error) : stepped.status();
    }
  }
  const Clock::time_point end = run.interrupted ? Clock::now() : state->last_finish;
  state->active = false;
  if (run.interrupted) cancel_all(engine, ids);
  run.finished = std::move(state->finished);
  run.started_prompt_tokens = state->started_prompt_tokens;
  run.output_tokens = state->output_tokens;
  run.elapsed_s = seconds_between(start, end);
  return run;
}

const std::vector<ThroughputScenario>& throughput_scenarios() {
  static const std::vector<ThroughputScenario> scenarios = {
      {"chat", 128, 128},
      {"generation-heavy", 128, 2048},
      {"summarization", 2048, 128},
      {"summarization-generation", 2048, 2048},
  };
  return scenarios;
}

Result<ThroughputScenario> find_throughput_scenario(const std::string& name) {
  std::string known;
  for (const ThroughputScenario& s : throughput_scenarios()) {
    if (s.name == name) return s;
    known += (known.empty() ? "" : ", ") + fmt::format("{} ({}/{})", s.name, s.input_len, s.output_len);
  }
  return Status::error(fmt::format("unknown scenario '{}' (known: {})", name, known));
}

Status check_sequence_lengths(const ModelConfig& config, int64_t input_len, int64_t output_len,
                              const std::string& what) {
  if (input_len < 1 || output_len < 1)
    return Status::error(fmt::format("{}: input and output lengths must be at least 1", what));
  if (input_len + output_len > config.context_length)
    return Status::error(fmt::format("{}: {} + {} = {} tokens per request exceed the model's context length of {}",
                                     what, input_len, output_len, input_len + output_len, config.context_length));
  return Status::ok();
}

std::vector<std::vector<int32_t>> random_prompts(int64_t count, int64_t len, int64_t vocab_size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(vocab_size - 1));
  std::vector<std::vector<int32_t>> prompts(static_cast<size_t>(count));
  for (std::vector<int32_t>& p : prompts) {
    p.resize(static_cast<size_t>(len));
    for (int32_t& id : p) id = token(rng);
  }
  return prompts;
}

Result<std::vector<std::vector<int32_t>>> read_prompt_dataset(const std::string& path, const Tokenizer* tokenizer) {
  if (!tokenizer) return Status::error(path + ": prompts from a dataset need the model's tokenizer, which did not load");
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the dataset");
  std::vector<std::vector<int32_t>> prompts;
  std::string line;
  int64_t line_number = 0;
  while (std::getline(in, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    Result<std::vector<int32_t>> ids = tokenizer->encode(line, true);
    if (!ids) return ids.status().with_context(fmt::format("{}:{}", path, line_number));
    if (ids->empty()) continue;
    prompts.push_back(std::move(ids).value());
  }
  if (in.bad()) return Status::error(path + ": read error");
  if (prompts.empty()) return Status::error(path + ": no prompts (one prompt per non-empty line)");
  return prompts;
}

Result<ThroughputResult> run_throughput_bench(Engine& engine, const ThroughputBenchOptions& options) {
  const ModelConfig& c = engine.model().config();
  if (options.num_prompts < 1) return Status::error("--num-prompts must be at least 1");
  std::vector<std::vector<int32_t>> prompts;
  if (options.prompts.empty()) {
    ANVIL_RETURN_IF_ERROR(check_sequence_lengths(
        c, options.input_len, options.output_len,
        fmt::format("scenario {} (input {}, output {})", options.name, options.input_len, options.output_len)));
    prompts = random_prompts(options.num_prompts, options.input_len, c.vocab_size, options.seed);
  } else {
    for (int64_t i = 0; i < options.num_prompts; ++i) prompts.push_back(options.prompts[i % options.prompts.size()]);
    for (size_t i = 0; i < options.prompts.size() && i < prompts.size(); ++i)
      ANVIL_RETURN_IF_ERROR(check_sequence_lengths(
          c, static_cast<int64_t>(prompts[i].size()), options.output_len,
          fmt::format("dataset prompt {} ({} tokens, output {})", i + 1, prompts[i].size(), options.output_len)));
  }
  int64_t longest = 0, prompt_token_sum = 0;
  for (const auto& p : prompts) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(p.size()));
    prompt_token_sum += static_cast<int64_t>(p.size());
  }
  if (longest + options.output_len > engine.kv_cache_capacity_tokens())
    return Status::error(fmt::format("a request of {} tokens does not fit the KV cache's {} tokens; give it more "
                                     "memory (--kv-cache-memory)",
                                     longest + options.output_len, engine.kv_cache_capacity_tokens()));

  if (options.warmup) {
    const auto warm = random_prompts(1, std::min<int64_t>(longest, 16), c.vocab_size, options.seed ^ 0x5eedull);
    OfflineRunOptions w;
    w.output_len = std::min<int64_t>(options.output_len, 4);
    w.interrupt = options.interrupt;
    ANVIL_ASSIGN_OR_RETURN(OfflineRun warm_run, run_offline_requests(engine, warm, w));
    (void)warm_run;
  }

  const EngineMetrics before = engine.metrics();
  const uint64_t total_tokens = static_cast<uint64_t>(options.num_prompts * options.output_len);
  uint64_t done_tokens = 0;
  OfflineRunOptions o;
  o.output_len = options.output_len;
  o.interrupt = options.interrupt;
  o.on_tokens = [&](int64_t n) {
    done_tokens += static_cast<uint64_t>(n);
    if (options.progress) options.progress(done_tokens, total_tokens);
  };
  ANVIL_ASSIGN_OR_RETURN(OfflineRun run, run_offline_requests(engine, prompts, o));
  const EngineMetrics after = engine.metrics();

  ThroughputResult r;
  r.name = options.name;
  r.input_len = static_cast<double>(prompt_token_sum) / static_cast<double>(prompts.size());
  r.output_len = options.output_len;
  r.num_prompts = options.num_prompts;
  r.completed = static_cast<int64_t>(run.finished.size());
  r.prompt_tokens = run.started_prompt_tokens;
  r.output_tokens = run.output_tokens;
  r.elapsed_s = run.elapsed_s;
  if (run.elapsed_s > 0) {
    r.requests_per_s = static_cast<double>(r.completed) / run.elapsed_s;
    r.total_tok_s = static_cast<double>(r.prompt_tokens + r.output_tokens) / run.elapsed_s;
    r.output_tok_s = static_cast<double>(r.output_tokens) / run.elapsed_s;
  }
  std::vector<double> e2e_s;
  for (const RequestTiming& t : run.finished) e2e_s.push_back(t.e2e_s);
  static_cast<TtftTpotSummary&>(r) = summarize_ttft_tpot(run.finished);
  r.e2e_s_mean = mean(e2e_s);
  r.steps = after.steps - before.steps;
  r.preemptions = after.preemptions - before.preemptions;
  r.prefix_queries = after.prefix_queries - before.prefix_queries;
  r.prefix_hits = after.prefix_hits - before.prefix_hits;
  r.prefix_hit_rate = r.prefix_queries > 0 ? static_cast<double>(r.prefix_hits) / static_cast<double>(r.prefix_queries) : 0.0;
  r.interrupted = run.interrupted;
  return r;
}

}  // namespace anvil
