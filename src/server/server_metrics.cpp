// The /metrics families: request counts by status, latency histograms, token counters and the
// engine's queue / KV-cache / prefix-cache state.
#include "server/server_metrics.h"

namespace anvil::server {
namespace {

// Seconds. The bounds follow vLLM's, so dashboards built for it read anvil's too.
const std::vector<double> kTtftBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5,
                                          0.75,  1.0,   2.5,  5.0,  7.5,  10.0, 20.0, 40.0, 80.0};
const std::vector<double> kTpotBuckets = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                          0.15,  0.2,    0.3,   0.4,  0.5,   0.75, 1.0,   2.5};
const std::vector<double> kE2eBuckets = {0.01, 0.05, 0.1,  0.3,  0.5,  0.8,  1.0,  1.5,  2.0,  2.5,
                                         5.0,  10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0};

}  // namespace

ServerMetrics::ServerMetrics()
    : http_requests_(registry_.add_counter("anvil_http_requests_total", "HTTP requests answered, by route and status",
                                           {"route", "status"})),
      request_success_(registry_.add_counter("anvil_request_success_total",
                                             "Finished completions (one per choice), by finish reason",
                                             {"finished_reason"})),
      prompt_tokens_(registry_.add_counter("anvil_prompt_tokens_total", "Prompt tokens of finished requests")),
      generation_tokens_(registry_.add_counter("anvil_generation_tokens_total",
                                               "Generated tokens of finished requests")),
      ttft_(registry_.add_histogram("anvil_time_to_first_token_seconds",
                                    "Time from the request's arrival to its first token", kTtftBuckets)),
      tpot_(registry_.add_histogram("anvil_time_per_output_token_seconds",
                                    "Mean time between output tokens after the first, per request", kTpotBuckets)),
      e2e_(registry_.add_histogram("anvil_e2e_request_latency_seconds", "Time from arrival to the last token",
                                   kE2eBuckets)),
      running_(registry_.add_gauge("anvil_num_requests_running", "Requests the engine is running")),
      waiting_(registry_.add_gauge("anvil_num_requests_waiting", "Requests the engine holds, not yet scheduled")),
      admission_waiting_(registry_.add_gauge("anvil_num_requests_admitted_waiting",
                                             "Admitted engine requests without a first token yet (--max-waiting "
                                             "bounds this; beyond it the server answers 429)")),
      kv_usage_(registry_.add_gauge("anvil_kv_cache_usage_perc", "Fraction of KV-cache blocks held by live requests")),
      kv_blocks_used_(registry_.add_gauge("anvil_kv_cache_blocks_used", "KV-cache blocks held by live requests")),
      kv_blocks_total_(registry_.add_gauge("anvil_kv_cache_blocks_total", "KV-cache blocks in the pool")),
      kv_blocks_cached_(registry_.add_gauge("anvil_kv_cache_blocks_cached",
                                            "Free KV-cache blocks that still hold a reusable prefix")),
      prefix_queries_(registry_.add_counter("anvil_prefix_cache_queries_total",
                                            "Prompt tokens looked up in the prefix cache")),
      prefix_hits_(registry_.add_counter("anvil_prefix_cache_hits_total", "Prompt tokens found in the prefix cache")),
      prefix_hit_rate_(registry_.add_gauge("anvil_prefix_cache_hit_rate", "prefix_cache_hits / prefix_cache_queries")),
      preemptions_(registry_.add_counter("anvil_num_preemptions_total", "Requests preempted for KV-cache space")),
      engine_steps_(registry_.add_counter("anvil_engine_steps_total", "Engine steps (batched forward passes)")) {}

void ServerMetrics::record_http(const std::string& route, int status) {
  http_requests_.inc({route, std::to_string(status)});
}

void ServerMetrics::record_choice(FinishReason finish, double ttft_seconds, double tpot_seconds) {
  request_success_.inc({finish_reason_name(finish)});
  if (ttft_seconds >= 0) ttft_.observe(ttft_seconds);
  if (tpot_seconds >= 0) tpot_.observe(tpot_seconds);
}

void ServerMetrics::record_request(double e2e_seconds, int64_t prompt_tokens, int64_t completion_tokens) {
  e2e_.observe(e2e_seconds);
  prompt_tokens_.inc({}, static_cast<double>(prompt_tokens));
  generation_tokens_.inc({}, static_cast<double>(completion_tokens));
}

std::string ServerMetrics::render(const EngineMetrics* engine, int64_t admission_waiting) {
  admission_waiting_.set(static_cast<double>(admission_waiting));
  if (engine) {
    running_.set(static_cast<double>(engine->running));
    waiting_.set(static_cast<double>(engine->waiting));
    kv_usage_.set(engine->kv_usage());
    kv_blocks_used_.set(static_cast<double>(engine->kv_blocks_used));
    kv_blocks_total_.set(static_cast<double>(engine->kv_blocks_total));
    kv_blocks_cached_.set(static_cast<double>(engine->kv_blocks_cached));
    prefix_queries_.advance_to({}, static_cast<double>(engine->prefix_queries));
    prefix_hits_.advance_to({}, static_cast<double>(engine->prefix_hits));
    prefix_hit_rate_.set(engine->prefix_hit_rate());
    preemptions_.advance_to({}, static_cast<double>(engine->preemptions));
    engine_steps_.advance_to({}, static_cast<double>(engine->steps));
  }
  return registry_.render();
}

}  // namespace anvil::server
