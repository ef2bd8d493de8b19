// One engine step: schedule -> batched forward -> per-request sampling and end checks -> delivery.
#include "engine/engine_core.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "engine/memory_plan.h"
#include "model/kv_store.h"

namespace anvil {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// Log-softmax of the raw logits (the model's own distribution, before penalties and
// temperature): the chosen token's logprob and the top k alternatives.
TokenLogprobs token_logprobs(std::span<const float> logits, int32_t chosen, int64_t k, std::vector<int32_t>& order) {
  float max = -INFINITY;
  for (float x : logits) max = std::max(max, x);
  double sum = 0.0;
  for (float x : logits) sum += std::exp(static_cast<double>(x - max));
  const float log_z = max + static_cast<float>(std::log(sum));
  TokenLogprobs out{{chosen, logits[chosen] - log_z}, {}};
  if (k > 0) {
    const int64_t n = static_cast<int64_t>(logits.size());
    k = std::min(k, n);
    order.resize(n);
    for (int64_t i = 0; i < n; ++i) order[i] = static_cast<int32_t>(i);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return logits[a] != logits[b] ? logits[a] > logits[b] : a < b;
    });
    for (int64_t i = 0; i < k; ++i) out.top.push_back({order[i], logits[order[i]] - log_z});
  }
  return out;
}

}  // namespace

const char* finish_reason_name(FinishReason reason) {
  switch (reason) {
    case FinishReason::None: return "";
    case FinishReason::Stop: return "stop";
    case FinishReason::Length: return "length";
    case FinishReason::Abort: return "abort";
    case FinishReason::Error: return "error";
  }
  return "";
}

Status EngineOptions::validate() const {
  if (max_num_seqs < 1) return Status::error("--max-num-seqs must be at least 1");
  if (max_num_batched_tokens < 1) return Status::error("--max-num-batched-tokens must be at least 1");
  if (block_size < 1 || block_size > 4096) return Status::error("the KV block size must be in [1, 4096]");
  if (!is_kv_cache_dtype(kv_dtype))
    return Status::error(
        fmt::format("KV cache dtype {} is not supported; use f32, f16, bf16, fp8 or int8", dtype_name(kv_dtype)));
  if (kv_cache_bytes < 0) return Status::error("the KV cache size must not be negative");
  if (kv_cache_bytes == 0 && !(kv_cache_memory_fraction > 0.0 && kv_cache_memory_fraction <= 1.0))
    return Status::error("the KV cache memory fraction must be in (0, 1]");
  Result<std::unique_ptr<SchedulingPolicy>> policy = make_scheduling_policy(scheduling_policy);
  if (!policy) return policy.status();
  return Status::ok();
}

Result<std::unique_ptr<EngineCore>> EngineCore::create(const DecoderModel& model, const Tokenizer* tokenizer,
                                                       ThreadPool& pool, const EngineOptions& options) {
  ANVIL_RETURN_IF_ERROR(options.validate());
  ANVIL_ASSIGN_OR_RETURN(std::unique_ptr<SchedulingPolicy> policy, make_scheduling_policy(options.scheduling_policy));
  const ModelConfig& c = model.config();
  int64_t bytes = options.kv_cache_bytes;
  if (bytes == 0) {
    ANVIL_ASSIGN_OR_RETURN(int64_t available, available_memory_bytes());
    bytes = static_cast<int64_t>(static_cast<double>(available) * options.kv_cache_memory_fraction);
  }
  const int64_t block_bytes = static_cast<int64_t>(KvBlockPool::block_bytes(c, options.kv_dtype, options.block_size));
  // No need for more blocks than max_num_seqs sequences at the full context can use.
  const int64_t useful = options.max_num_seqs * ((c.context_length + options.block_size - 1) / options.block_size);
  const int64_t n_blocks = std::min(bytes / block_bytes, useful);
  if (n_blocks < 1)
    return Status::error(fmt::format("a KV cache of {} bytes holds no block of {} tokens ({} bytes); give it more memory",
                                     bytes, options.block_size, block_bytes));
  ANVIL_ASSIGN_OR_RETURN(KvBlockPool kv, KvBlockPool::create(c, options.kv_dtype, options.block_size, n_blocks));
  return std::unique_ptr<EngineCore>(new EngineCore(model, tokenizer, pool, options, std::move(kv), std::move(policy)));
}

EngineCore::EngineCore(const DecoderModel& model, const Tokenizer* tokenizer, ThreadPool& pool,
                       const EngineOptions& options, KvBlockPool kv, std::unique_ptr<SchedulingPolicy> policy)
    : model_(model), tokenizer_(tokenizer), pool_(pool), options_(options), pool_blocks_(std::move(kv)),
      blocks_(pool_blocks_.n_blocks(), pool_blocks_.block_size(), options.enable_prefix_caching),
      scheduler_({options.max_num_seqs, options.max_num_batched_tokens, options.enable_chunked_prefill},
                 std::move(policy), blocks_) {
  // A request alone must always fit, so that it never waits for blocks that cannot come.
  max_sequence_tokens_ = std::min(model.config().context_length, capacity_tokens());
  counters_.kv_blocks_total = pool_blocks_.n_blocks();
}

Status EngineCore::validate(const RequestParams& p) const {
  const ModelConfig& c = model_.config();
  ANVIL_RETURN_IF_ERROR(p.sampling.validate());
  if (p.prompt.empty()) return Status::error("the prompt is empty: give at least one token");
  for (int32_t id : p.prompt)
    if (id < 0 || id >= c.vocab_size)
      return Status::error(fmt::format("prompt token id {} is out of range for a vocabulary of {}", id, c.vocab_size));
  if (p.max_tokens < 1) return Status::error(fmt::format("max_tokens must be at least 1, got {}", p.max_tokens));
  const int64_t len = static_cast<int64_t>(p.prompt.size());
  if (len + 1 > max_sequence_tokens_) {
    if (max_sequence_tokens_ < c.context_length)
      return Status::error(fmt::format("the prompt has {} tokens; with room for one new token that exceeds the KV "
                                       "cache's {} tokens (give the engine more KV cache memory)",
                                       len, max_sequence_tokens_));
    return Status::error(fmt::format("the prompt has {} tokens; with room for one new token that exceeds the "
                                     "model's context length of {}",
                                     len, c.context_length));
  }
  if (!options_.enable_chunked_prefill && len > options_.max_num_batched_tokens)
    return Status::error(fmt::format("the prompt has {} tokens, more than --max-num-batched-tokens {} (and chunked "
                                     "prefill is off)",
                                     len, options_.max_num_batched_tokens));
  if (!p.stop.empty() && (!tokenizer_ || !p.detokenize))
    return Status::error("stop strings need the model's tokenizer and detokenized output");
  for (const std::string& s : p.stop)
    if (s.empty()) return Status::error("a stop string is empty");
  for (int32_t id : p.stop_token_ids)
    if (id < 0 || id >= c.vocab_size) return Status::error(fmt::format("stop token id {} is out of range", id));
  if (p.logprobs > 20 || p.logprobs < -1) return Status::error("logprobs must be between 0 and 20");
  return Status::ok();
}

void EngineCore::add(RequestId id, RequestParams params, OutputCallback on_output) {
  auto request = std::make_unique<EngineRequest>(id, std::move(params), std::move(on_output), tokenizer_);
  request->arrival = arrivals_++;
  scheduler_.add(request.get());
  requests_.emplace(id, std::move(request));
}

RequestOutput EngineCore::new_output(const EngineRequest& r) const {
  RequestOutput out;
  out.id = r.id;
  out.prompt_tokens = r.prompt_len;
  out.cached_prompt_tokens = r.cached_prompt_tokens;
  return out;
}

void EngineCore::finish(EngineRequest& r, FinishReason reason, RequestOutput& out) {
  out.finish = reason;
  r.state = RequestState::Finished;
  // Text held back as a possible stop-string start (or an incomplete UTF-8 tail) is released.
  if (r.decoder && !r.stop_matcher.stopped()) out.new_text += r.stop_matcher.push(r.decoder->flush()) + r.stop_matcher.flush();
}

void EngineCore::deliver_and_retire(EngineRequest& r, RequestOutput& out) {
  out.completion_tokens = r.generated();
  if (r.on_output && *r.on_output) pending_.emplace_back(r.on_output, std::move(out));
  if (r.state == RequestState::Finished) {
    scheduler_.remove(&r);
    ++counters_.requests_finished;
    requests_.erase(r.id);  // r is gone after this
  }
}

void EngineCore::deliver_outputs() {
  std::vector<std::pair<std::shared_ptr<OutputCallback>, RequestOutput>> outputs;
  outputs.swap(pending_);
  for (auto& [callback, out] : outputs) (*callback)(out);
}

void EngineCore::cancel(RequestId id) {
  auto it = requests_.find(id);
  if (it == requests_.end()) return;
  EngineRequest& r = *it->second;
  RequestOutput out = new_output(r);
  out.finish = FinishReason::Abort;
  r.state = RequestState::Finished;
  deliver_and_retire(r, out);
}

void EngineCore::abort_all() {
  std::vector<RequestId> ids;
  for (const auto& [id, r] : requests_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (RequestId id : ids) cancel(id);
}

void EngineCore::accept_token(EngineRequest& r, int32_t id, std::optional<TokenLogprobs> logprobs,
                              RequestOutput& out) {
  const ModelConfig& c = model_.config();
  if (logprobs) out.new_logprobs.push_back(std::move(*logprobs));
  r.tokens.push_back(id);
  out.new_tokens.push_back(id);

  const bool is_eos = id == c.eos_token_id || (tokenizer_ && tokenizer_->is_end_of_generation(id));
  if (is_eos && !r.params.ignore_eos) return finish(r, FinishReason::Stop, out);
  if (std::find(r.params.stop_token_ids.begin(), r.params.stop_token_ids.end(), id) != r.params.stop_token_ids.end()) {
    out.stop_reason = std::to_string(id);
    out.stop_token_id = id;
    return finish(r, FinishReason::Stop, out);
  }
  if (r.decoder) {
    out.new_text += r.stop_matcher.push(r.decoder->push(id));
    if (r.stop_matcher.stopped()) {
      out.stop_reason = r.stop_matcher.matched();
      return finish(r, FinishReason::Stop, out);
    }
  }
  if (r.generated() >= r.params.max_tokens || static_cast<int64_t>(r.tokens.size()) >= max_sequence_tokens_)
    return finish(r, FinishReason::Length, out);
}

Result<bool> EngineCore::step() {
  const auto step_start = Clock::now();
  std::vector<EngineRequest*> preempted;
  const std::vector<ScheduledChunk> chunks = scheduler_.schedule(preempted);
  counters_.preemptions += static_cast<int64_t>(preempted.size());
  if (chunks.empty()) return false;

  ForwardBatch batch;
  int64_t step_tokens = 0;
  for (const ScheduledChunk& sc : chunks) {
    EngineRequest& r = *sc.request;
    batch.tokens.insert(batch.tokens.end(), r.tokens.begin() + r.n_computed, r.tokens.begin() + r.n_computed + sc.n_tokens);
    SequenceChunk& chunk = batch.chunks.emplace_back();
    chunk.first_position = r.n_computed;
    chunk.n_tokens = sc.n_tokens;
    chunk.block_table = r.table.blocks;
    chunk.want_logits = r.n_computed + sc.n_tokens == static_cast<int64_t>(r.tokens.size());
    step_tokens += sc.n_tokens;
  }
  const int64_t vocab = model_.config().vocab_size;
  logits_.resize(static_cast<size_t>(batch.logit_rows() * vocab));
  const auto forward_start = Clock::now();
  const Status status = model_.forward_batch(batch, pool_blocks_.view(), pool_, logits_.data());
  counters_.forward_seconds_total += seconds_since(forward_start);
  if (!status) {
    // The engine lives on; the requests of this step end with the error.
    for (const ScheduledChunk& sc : chunks) {
      RequestOutput out = new_output(*sc.request);
      out.error = status.message();
      finish(*sc.request, FinishReason::Error, out);
      deliver_and_retire(*sc.request, out);
    }
    return true;
  }

  // Token choice is independent per request (own sampler, own seed): spread it over the pool,
  // since a 128K-vocabulary scan per sequence adds up at 64 sequences. End checks stay serial.
  std::vector<EngineRequest*> sampled;
  for (size_t i = 0; i < chunks.size(); ++i)
    if (batch.chunks[i].want_logits) sampled.push_back(chunks[i].request);
  std::vector<int32_t> chosen(sampled.size());
  std::vector<std::optional<TokenLogprobs>> chosen_logprobs(sampled.size());
  pool_.parallel_for(static_cast<int64_t>(sampled.size()), [&](int64_t begin, int64_t end) {
    std::vector<float> raw;
    std::vector<int32_t> order;
    for (int64_t s = begin; s < end; ++s) {
      EngineRequest& r = *sampled[s];
      const std::span<float> logits(logits_.data() + s * vocab, vocab);
      if (r.params.logprobs >= 0) raw.assign(logits.begin(), logits.end());  // before sampling edits them
      chosen[s] = r.sampler.sample(logits, r.tokens, r.generated());
      if (r.params.logprobs >= 0) chosen_logprobs[s] = token_logprobs(raw, chosen[s], r.params.logprobs, order);
    }
  });

  int64_t row = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    EngineRequest& r = *chunks[i].request;
    const int64_t n = chunks[i].n_tokens;
    // Prompt positions computed (a recomputation after preemption counts again: it is work).
    counters_.prompt_tokens_total += std::max<int64_t>(0, std::min(r.n_computed + n, r.prompt_len) - r.n_computed);
    r.n_computed += n;
    blocks_.register_full_blocks(r.tokens, r.n_computed, r.table);
    if (!batch.chunks[i].want_logits) continue;
    RequestOutput out = new_output(r);
    accept_token(r, chosen[row], std::move(chosen_logprobs[row]), out);
    ++row;
    ++counters_.generated_tokens_total;
    deliver_and_retire(r, out);
  }

  ++counters_.steps;
  counters_.last_step_tokens = step_tokens;
  counters_.last_step_seqs = static_cast<int64_t>(chunks.size());
  counters_.last_step_seconds = seconds_since(step_start);
  counters_.step_seconds_total += counters_.last_step_seconds;
  return true;
}

void EngineCore::fill_metrics(EngineMetrics& m) const {
  m = counters_;
  m.waiting = scheduler_.waiting();
  m.running = scheduler_.running();
  m.kv_blocks_total = blocks_.total_blocks();
  m.kv_blocks_used = blocks_.used_blocks();
  m.kv_blocks_cached = blocks_.cached_free_blocks();
  m.prefix_queries = blocks_.prefix_queries();
  m.prefix_hits = blocks_.prefix_hits();
}

}  // namespace anvil
