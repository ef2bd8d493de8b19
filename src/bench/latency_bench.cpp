// Latency benchmark loop: batch sizes x (warm-up + timed) iterations of one offline run each.
#include "bench/latency_bench.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "bench/throughput_bench.h"

namespace anvil {

LatencySummary LatencyBatchResult::summary() const {
  LatencySummary s;
  s.avg_latency_s = mean(latencies_s);
  s.std_latency_s = stddev(latencies_s);
  s.p50_latency_s = percentile(latencies_s, 50);
  s.p90_latency_s = percentile(latencies_s, 90);
  s.p99_latency_s = percentile(latencies_s, 99);
  if (s.avg_latency_s > 0)
    s.output_tok_s = static_cast<double>(batch_size * output_len) / s.avg_latency_s;
  static_cast<TtftTpotSummary&>(s) = summarize_ttft_tpot(requests);
  return s;
}

Result<std::vector<int64_t>> parse_batch_sizes(const std::string& text) {
  std::vector<int64_t> sizes;
  std::set<int64_t> seen;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    size_t used = 0;
    int64_t value = 0;
    try {
      value = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size() || value < 1)
      return Status::error(fmt::format("--batch-sizes: '{}' is not a positive integer (expected e.g. 1,2,4,8)", item));
    if (!seen.insert(value).second) return Status::error(fmt::format("--batch-sizes: {} appears twice", value));
    sizes.push_back(value);
  }
  if (sizes.empty()) return Status::error("--batch-sizes is empty (expected e.g. 1,2,4,8)");
  return sizes;
}

Status check_latency_options(const LatencyBenchOptions& options, const ModelConfig& config,
                             const EngineOptions& engine_options) {
  ANVIL_RETURN_IF_ERROR(check_sequence_lengths(
      config, options.input_len, options.output_len,
      fmt::format("--input-len {} --output-len {}", options.input_len, options.output_len)));
  if (options.batch_sizes.empty()) return Status::error("--batch-sizes is empty");
  for (int64_t b : options.batch_sizes) {
    if (b < 1) return Status::error(fmt::format("--batch-sizes: {} is not a positive batch size", b));
    if (b > engine_options.max_num_seqs)
      return Status::error(fmt::format("batch size {} exceeds --max-num-seqs {}: the batch would not run at once",
                                       b, engine_options.max_num_seqs));
  }
  if (options.num_iters < 1) return Status::error("--num-iters must be at least 1");
  if (options.num_iters_warmup < 0) return Status::error("--num-iters-warmup must not be negative");
  return Status::ok();
}

Result<LatencyBenchResult> run_latency_bench(Engine& engine, const LatencyBenchOptions& options) {
  const ModelConfig& c = engine.model().config();
  ANVIL_RETURN_IF_ERROR(check_latency_options(options, c, engine.options()));
  const int64_t sequence_tokens = options.input_len + options.output_len;
  if (sequence_tokens > engine.kv_cache_capacity_tokens())
    return Status::error(fmt::format("a request of {} tokens does not fit the KV cache's {} tokens; give it more "
                                     "memory (--kv-cache-memory)",
                                     sequence_tokens, engine.kv_cache_capacity_tokens()));

  const int iterations = options.num_iters_warmup + options.num_iters;
  uint64_t total_tokens = 0, done_tokens = 0;
  for (int64_t b : options.batch_sizes) total_tokens += static_cast<uint64_t>(b * options.output_len * iterations);
  LatencyBenchResult result;
  for (int64_t b : options.batch_sizes) {
    const int64_t block = engine.options().block_size;
    const int64_t needed = b * ((sequence_tokens + block - 1) / block * block);
    if (needed > engine.kv_cache_capacity_tokens())
      result.notes.push_back(fmt::format("batch size {} needs {} KV cache tokens and the cache holds {}: requests "
                                         "are preempted and its latency includes their recomputation (raise "
                                         "--kv-cache-memory)",
                                         b, needed, engine.kv_cache_capacity_tokens()));
  }

  for (size_t bi = 0; bi < options.batch_sizes.size(); ++bi) {
    const int64_t b = options.batch_sizes[bi];
    LatencyBatchResult batch;
    batch.batch_size = b;
    batch.output_len = options.output_len;
    EngineMetrics before{};
    for (int it = 0; it < iterations; ++it) {
      if (it == options.num_iters_warmup) before = engine.metrics();
      // Fresh prompts per iteration (seeded by batch size and iteration): a repeated prompt would
      // hit the prefix cache and skip its prefill.
      const uint64_t seed = options.seed * 1000003ull + bi * 1009ull + static_cast<uint64_t>(it);
      const auto prompts = random_prompts(b, options.input_len, c.vocab_size, seed);
      OfflineRunOptions o;
      o.output_len = options.output_len;
      o.interrupt = options.interrupt;
      o.on_tokens = [&](int64_t n) {
        done_tokens += static_cast<uint64_t>(n);
        if (options.progress) options.progress(done_tokens, total_tokens);
      };
      ANVIL_ASSIGN_OR_RETURN(OfflineRun run, run_offline_requests(engine, prompts, o));
      if (run.interrupted) {
        result.interrupted = true;
        return result;  // an unfinished batch size is left out: its figures would mislead
      }
      if (it < options.num_iters_warmup) continue;
      batch.latencies_s.push_back(run.elapsed_s);
      batch.requests.insert(batch.requests.end(), run.finished.begin(), run.finished.end());
    }
    const EngineMetrics after = engine.metrics();
    batch.steps = after.steps - before.steps;
    batch.preemptions = after.preemptions - before.preemptions;
    const int64_t queries = after.prefix_queries - before.prefix_queries;
    batch.prefix_hit_rate =
        queries > 0 ? static_cast<double>(after.prefix_hits - before.prefix_hits) / static_cast<double>(queries) : 0.0;
    result.batches.push_back(std::move(batch));
    if (options.on_batch_done) options.on_batch_done(result.batches.back());
  }
  return result;
}

}  // namespace anvil
