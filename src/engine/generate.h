// generate(): one sequence, prompt then token-by-token decode (what `anvil run` does).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/thread_pool.h"
#include "engine/sampler/sampler.h"
#include "model/decoder_model.h"
#include "tokenizer/tokenizer.h"

namespace anvil {

struct GenerationRequest {
  std::vector<int32_t> prompt;
  int64_t max_new_tokens = 128;
  SamplingParams sampling;
  std::vector<std::string> stop_strings;  // need a tokenizer
  bool ignore_eos = false;
  std::vector<float>* prompt_logits = nullptr;  // if set: receives (prompt_len, vocab) logits
};

struct GenerationResult {
  std::vector<int32_t> tokens;  // generated ids (the EOS/stop token included when it ended it)
  std::string finish_reason;    // "stop" (EOS or stop string) or "length"
  int64_t prompt_tokens = 0;
  double prompt_seconds = 0.0;
  double generate_seconds = 0.0;  // from the first sampled token to the last
};

// on_text receives decoded text as it becomes safe to show (UTF-8 complete, not part of a
// stop string); it may be empty when there is no tokenizer. on_token sees every id.
struct GenerationCallbacks {
  std::function<void(int32_t id)> on_token;
  std::function<void(const std::string& text)> on_text;
};

Result<GenerationResult> generate(const DecoderModel& model, ThreadPool& pool, const Tokenizer* tokenizer,
                                  const GenerationRequest& request, const GenerationCallbacks& callbacks);

}  // namespace anvil
