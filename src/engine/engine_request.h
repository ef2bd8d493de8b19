// EngineRequest: the engine loop's state of one request (never touched by other threads).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "engine/block_manager.h"
#include "engine/request.h"
#include "engine/sampler/sampler.h"
#include "engine/stop_strings.h"
#include "tokenizer/tokenizer.h"

namespace anvil {

enum class RequestState { Waiting, Running, Finished };

struct EngineRequest {
  EngineRequest(RequestId id, RequestParams params, OutputCallback on_output, const Tokenizer* tokenizer)
      : id(id), params(std::move(params)), on_output(std::make_shared<OutputCallback>(std::move(on_output))),
        sampler(this->params.sampling),
        stop_matcher(this->params.stop) {
    tokens = this->params.prompt;
    prompt_len = static_cast<int64_t>(tokens.size());
    if (tokenizer && this->params.detokenize) decoder.emplace(*tokenizer);
  }

  RequestId id;
  RequestParams params;
  std::shared_ptr<OutputCallback> on_output;  // shared with outputs awaiting delivery
  RequestState state = RequestState::Waiting;
  uint64_t arrival = 0;          // submission order (FCFS)

  std::vector<int32_t> tokens;   // prompt, then generated ids
  int64_t prompt_len = 0;
  int64_t n_computed = 0;        // leading tokens whose K/V is in the cache
  int64_t cached_prompt_tokens = 0;
  BlockTable table;

  Sampler sampler;
  StopStringMatcher stop_matcher;
  std::optional<StreamingDecoder> decoder;

  int64_t generated() const { return static_cast<int64_t>(tokens.size()) - prompt_len; }
  // Tokens to compute before the next sample: the rest of the prompt (after a preemption also
  // the generated tokens), or the last sampled token.
  int64_t uncomputed() const { return static_cast<int64_t>(tokens.size()) - n_computed; }
};

}  // namespace anvil
