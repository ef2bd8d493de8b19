// ServerMetrics: what `anvil serve` exposes on /metrics (vLLM's set, under anvil_ names).
#pragma once

#include <cstdint>
#include <string>

#include "engine/engine.h"
#include "server/prometheus.h"

namespace anvil::server {

class ServerMetrics {
 public:
  ServerMetrics();

  // One HTTP request answered (any route, any status).
  void record_http(const std::string& route, int status);
  // One choice (engine request) ended: its finish reason, time to first token, mean time per
  // output token after the first (tpot_seconds < 0: fewer than two tokens, not observed).
  void record_choice(FinishReason finish, double ttft_seconds, double tpot_seconds);
  // One completion request ended: end-to-end latency and its usage.
  void record_request(double e2e_seconds, int64_t prompt_tokens, int64_t completion_tokens);

  // The text exposition, with the engine's gauges sampled now (engine may be null while loading).
  std::string render(const EngineMetrics* engine, int64_t admission_waiting);

 private:
  MetricsRegistry registry_;
  CounterFamily& http_requests_;
  CounterFamily& request_success_;
  CounterFamily& prompt_tokens_;
  CounterFamily& generation_tokens_;
  HistogramFamily& ttft_;
  HistogramFamily& tpot_;
  HistogramFamily& e2e_;
  GaugeFamily& running_;
  GaugeFamily& waiting_;
  GaugeFamily& admission_waiting_;
  GaugeFamily& kv_usage_;
  GaugeFamily& kv_blocks_used_;
  GaugeFamily& kv_blocks_total_;
  GaugeFamily& kv_blocks_cached_;
  CounterFamily& prefix_queries_;
  CounterFamily& prefix_hits_;
  GaugeFamily& prefix_hit_rate_;
  CounterFamily& preemptions_;
  CounterFamily& engine_steps_;
};

}  // namespace anvil::server
