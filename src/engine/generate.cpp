// Single-sequence generation loop: prefill the prompt, then sample and feed back one token at a time.
#include "engine/generate.h"

#include <fmt/format.h>

#include <chrono>

#include "engine/stop_strings.h"

namespace anvil {

Result<GenerationResult> generate(const DecoderModel& model, ThreadPool& pool, const Tokenizer* tokenizer,
                                  const GenerationRequest& request, const GenerationCallbacks& callbacks) {
  const ModelConfig& c = model.config();
  ANVIL_RETURN_IF_ERROR(request.sampling.validate());
  if (request.prompt.empty()) return Status::error("the prompt is empty: give at least one token");
  if (request.max_new_tokens < 0) return Status::error("the number of tokens to generate must be >= 0");
  if (!request.stop_strings.empty() && !tokenizer)
    return Status::error("stop strings need a tokenizer, and this model has none");
  const int64_t prompt_len = static_cast<int64_t>(request.prompt.size());
  if (prompt_len > c.context_length)
    return Status::error(fmt::format("the prompt has {} tokens, more than the model's context length of {}",
                                     prompt_len, c.context_length));
  // Generation stops at the context length ("length"), it never overflows it.
  const int64_t max_new = std::min<int64_t>(request.max_new_tokens, c.context_length - prompt_len);
  SequenceKvCache cache = model.make_cache(prompt_len + max_new);

  using Clock = std::chrono::steady_clock;
  GenerationResult result;
  result.prompt_tokens = prompt_len;
  result.finish_reason = "length";
  std::vector<float> logits(request.prompt_logits ? prompt_len * c.vocab_size : c.vocab_size);
  const auto prompt_start = Clock::now();
  ANVIL_RETURN_IF_ERROR(model.forward(request.prompt, cache, pool, logits.data(), request.prompt_logits != nullptr));
  result.prompt_seconds = std::chrono::duration<double>(Clock::now() - prompt_start).count();
  if (request.prompt_logits) {
    *request.prompt_logits = logits;
    logits.erase(logits.begin(), logits.end() - c.vocab_size);
  }

  Sampler sampler(request.sampling);
  std::optional<StreamingDecoder> decoder;
  if (tokenizer) decoder.emplace(*tokenizer);
  StopStringMatcher stop_matcher(request.stop_strings);
  std::vector<int32_t> context = request.prompt;
  const auto generate_start = Clock::now();
  for (int64_t step = 0; step < max_new; ++step) {
    const int32_t id = sampler.sample(logits, context, static_cast<int64_t>(result.tokens.size()));
    result.tokens.push_back(id);
    context.push_back(id);
    if (callbacks.on_token) callbacks.on_token(id);
    const bool is_eos = id == c.eos_token_id || (tokenizer && tokenizer->is_end_of_generation(id));
    if (is_eos && !request.ignore_eos) {
      result.finish_reason = "stop";
      break;
    }
    if (decoder) {
      const std::string text = stop_matcher.push(decoder->push(id));
      if (callbacks.on_text && !text.empty()) callbacks.on_text(text);
      if (stop_matcher.stopped()) {
        result.finish_reason = "stop";
        break;
      }
    }
    if (step + 1 == max_new) break;  // no forward pass for a token nobody will sample from
    const int32_t next[1] = {id};
    ANVIL_RETURN_IF_ERROR(model.forward(next, cache, pool, logits.data(), false));
  }
  result.generate_seconds = std::chrono::duration<double>(Clock::now() - generate_start).count();
  if (decoder && !stop_matcher.stopped() && callbacks.on_text) {
    const std::string rest = stop_matcher.push(decoder->flush()) + stop_matcher.flush();
    if (!rest.empty()) callbacks.on_text(rest);
  }
  return result;
}

}  // namespace anvil
