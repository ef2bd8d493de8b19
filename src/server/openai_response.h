// The response side of the OpenAI-compatible API: completion and chat bodies, streaming chunks
// (Server-Sent Events), usage and logprobs in both of OpenAI's shapes.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/openai_protocol.h"

namespace anvil::server {

// The bytes a token stands for (Tokenizer::token_bytes); a function so tests need no tokenizer.
using TokenTextFn = std::function<std::string(int32_t id)>;

// What every body and chunk of one response shares.
struct ResponseHeader {
  ApiEndpoint endpoint = ApiEndpoint::Completions;
  std::string id;       // "cmpl-<hex>" or "chatcmpl-<hex>"
  int64_t created = 0;  // unix seconds
  std::string model;
};

// "cmpl-" / "chatcmpl-" plus 32 random hex digits, as OpenAI's ids look.
std::string make_response_id(ApiEndpoint endpoint);
int64_t unix_seconds_now();

// What ended a choice, as OpenAI/vLLM report it in "stop_reason": the matched stop string, the
// stop token id (an integer), or null (EOS, length).
struct StopReason {
  std::string text;
  int32_t token_id = -1;
  StopReason() = default;
  StopReason(std::string matched) : text(std::move(matched)) {}  // NOLINT: a stop string converts
  StopReason(const char* matched) : text(matched) {}             // NOLINT
  static StopReason token(int32_t id) {
    StopReason r;
    r.token_id = id;
    return r;
  }
  nlohmann::json to_json() const;
};

// One choice, accumulated from the engine's outputs.
struct ChoiceOutput {
  int64_t index = 0;
  std::string text;                      // with the prompt first when echo
  std::vector<int32_t> tokens;
  std::vector<TokenLogprobs> logprobs;   // one per token when the request asked for logprobs
  FinishReason finish = FinishReason::None;
  StopReason stop_reason;
};

struct UsageCounts {
  int64_t prompt_tokens = 0;      // once per prompt, not once per choice (as OpenAI counts)
  int64_t completion_tokens = 0;  // over all choices
  int64_t cached_tokens = 0;      // prompt tokens the prefix cache served
};

nlohmann::json usage_json(const UsageCounts& usage);
// "stop", "length", "abort" (a request cancelled by shutdown); null while unfinished.
nlohmann::json finish_reason_json(FinishReason finish);

// Completions' logprobs: {tokens, token_logprobs, top_logprobs, text_offset}. text_offset holds
// the offset of the first token and is advanced past these tokens, so chunks continue it.
nlohmann::json completion_logprobs_json(const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                                        const TokenTextFn& token_text, int64_t& text_offset);
// Chat's logprobs: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}.
nlohmann::json chat_logprobs_json(const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                                  const TokenTextFn& token_text);
// A token's text for the logprobs lists: its bytes when they are valid UTF-8, else vLLM's
// "bytes:\xe2\x80" form (half a character cannot be a JSON string).
std::string token_display_text(const std::string& bytes);

// Non-streaming bodies. with_logprobs: the request asked for them (else "logprobs": null).
nlohmann::json completion_body(const ResponseHeader& header, const std::vector<ChoiceOutput>& choices,
                               const UsageCounts& usage, bool with_logprobs, const TokenTextFn& token_text);
nlohmann::json chat_body(const ResponseHeader& header, const std::vector<ChoiceOutput>& choices,
                         const UsageCounts& usage, bool with_logprobs, const TokenTextFn& token_text);

// Streaming chunks. A choice's chat stream opens with a {"role": "assistant"} delta; its last
// chunk carries finish_reason. logprobs: a logprobs object or null.
nlohmann::json completion_chunk(const ResponseHeader& header, int64_t index, const std::string& text,
                                nlohmann::json logprobs, FinishReason finish, const StopReason& stop_reason);
nlohmann::json chat_role_chunk(const ResponseHeader& header, int64_t index);
nlohmann::json chat_chunk(const ResponseHeader& header, int64_t index, const std::string& text,
                          nlohmann::json logprobs, FinishReason finish, const StopReason& stop_reason);
// stream_options.include_usage: the last chunk before [DONE], with no choices.
nlohmann::json usage_chunk(const ResponseHeader& header, const UsageCounts& usage);

// "data: <json>\n\n", and the stream's terminator.
std::string sse_event(const nlohmann::json& data);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

}  // namespace anvil::server
