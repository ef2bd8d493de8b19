// What a client submits to the Engine and what it gets back, token by token.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "engine/sampler/sampler.h"

namespace anvil {

using RequestId = uint64_t;

struct RequestParams {
  std::vector<int32_t> prompt;            // token ids (BOS included if wanted)
  SamplingParams sampling;
  int64_t max_tokens = 16;                // new tokens at most; generation also ends at the context length
  std::vector<std::string> stop;          // stop strings (need the engine's tokenizer); not shown in the text
  std::vector<int32_t> stop_token_ids;    // extra ids that end generation (the id is kept in the output)
  bool ignore_eos = false;
  int64_t logprobs = -1;                  // -1: none; k >= 0: the chosen token's logprob plus the top k
  // The tokens' text as it becomes safe to show (UTF-8 complete, no stop-string prefix).
  bool detokenize = true;
};

struct TokenLogprob {
  int32_t id;
  float logprob;
};

// Per generated token: its own logprob and the top alternatives (most likely first).
struct TokenLogprobs {
  TokenLogprob chosen;
  std::vector<TokenLogprob> top;
};

enum class FinishReason { None, Stop, Length, Abort, Error };
const char* finish_reason_name(FinishReason reason);  // "", "stop", "length", "abort", "error"

// One delivery to a request's callback: the tokens produced since the previous delivery.
struct RequestOutput {
  RequestId id = 0;
  std::vector<int32_t> new_tokens;
  std::string new_text;                    // empty when params.detokenize is false
  std::vector<TokenLogprobs> new_logprobs;  // one per new token when params.logprobs >= 0
  FinishReason finish = FinishReason::None;  // set on the last delivery only
  std::string stop_reason;                 // the stop string or stop id that ended it, if any
  int32_t stop_token_id = -1;              // when a stop_token_ids entry ended it: that id
  std::string error;                       // FinishReason::Error: what went wrong
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;           // all generated so far
  int64_t cached_prompt_tokens = 0;        // prompt tokens served from the prefix cache
  bool finished() const { return finish != FinishReason::None; }
};

// Called on the engine thread; must be quick (copy and hand over, never block on I/O).
using OutputCallback = std::function<void(const RequestOutput& output)>;

}  // namespace anvil
