// The request side of the OpenAI-compatible API: parse and validate the bodies of
// /v1/completions, /v1/chat/completions, /tokenize and /detokenize, and map them to engine requests.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/request.h"
#include "server/api_error.h"
#include "tokenizer/chat_template.h"

namespace anvil::server {

enum class ApiEndpoint { Completions, ChatCompletions };

// Bounds that keep one request from asking for unbounded work.
inline constexpr int64_t kMaxLogprobs = 20;         // OpenAI's limit for logprobs / top_logprobs
inline constexpr int64_t kMaxChoicesPerRequest = 128;  // prompts x n

// One prompt of a completions request: text to tokenize, or token ids used as given.
struct PromptInput {
  bool is_tokens = false;
  std::string text;
  std::vector<int32_t> tokens;
};

// A validated request. Sampling holds OpenAI's defaults (temperature 1, top_p 1, top_k off,
// min_p 0), not `anvil run`'s.
struct OpenAIRequest {
  ApiEndpoint endpoint = ApiEndpoint::Completions;
  std::string model;                  // "" when not given: the served model
  std::vector<PromptInput> prompts;   // completions: each prompt gets n choices
  std::vector<ChatMessage> messages;  // chat
  bool add_generation_prompt = true;  // chat (vLLM extension)
  std::optional<int64_t> max_tokens;  // max_completion_tokens wins over max_tokens in chat
  SamplingParams sampling;
  std::optional<uint64_t> seed;
  std::vector<std::string> stop;
  std::vector<int32_t> stop_token_ids;  // vLLM extension
  int64_t n = 1;
  int64_t logprobs = -1;  // -1: none; k: the chosen token's logprob plus the top k
  bool ignore_eos = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;           // completions: the prompt text comes first in each choice

  int64_t choice_count() const {
    return (endpoint == ApiEndpoint::Completions ? static_cast<int64_t>(prompts.size()) : 1) * n;
  }
};

// What the mapping to engine requests needs to know of the served model.
struct ModelLimits {
  int64_t context_length = 0;
  int64_t vocab_size = 0;
};

ApiResult<nlohmann::json> parse_json_body(std::string_view body);
ApiResult<OpenAIRequest> parse_openai_request(const nlohmann::json& body, ApiEndpoint endpoint);
ApiResult<OpenAIRequest> parse_openai_request(std::string_view body, ApiEndpoint endpoint);

// 404 model_not_found unless `model` is empty or one of `served_names` (vLLM answers 404 too).
std::optional<ApiError> check_model_name(const std::string& model, const std::vector<std::string>& served_names);

// Token ids within the vocabulary and a prompt that leaves room for at least one new token.
std::optional<ApiError> check_prompt_tokens(const std::vector<int32_t>& prompt, const ModelLimits& limits,
                                            const char* param);

// The engine request for one choice. prompt: token ids (checked here against the limits);
// choice_index: 0..choice_count() - 1 (with a seed, choice i samples with seed + i so that n > 1
// gives n different answers); random_seed: used when the request names no seed.
// max_tokens unset: 16 for completions (OpenAI's default), the rest of the context for chat.
// prompt + max_tokens over the context length is a 400, as in vLLM.
ApiResult<RequestParams> make_request_params(const OpenAIRequest& request, std::vector<int32_t> prompt,
                                             int64_t choice_index, const ModelLimits& limits,
                                             uint64_t random_seed);

// POST /tokenize: {"prompt": "..."} or {"messages": [...]} (+ add_special_tokens,
// add_generation_prompt); POST /detokenize: {"tokens": [...]}.
struct TokenizeRequest {
  std::string model;
  bool is_chat = false;
  std::string prompt;
  std::vector<ChatMessage> messages;
  bool add_special_tokens = true;
  bool add_generation_prompt = true;
};
struct DetokenizeRequest {
  std::string model;
  std::vector<int32_t> tokens;
};
ApiResult<TokenizeRequest> parse_tokenize_request(const nlohmann::json& body);
ApiResult<DetokenizeRequest> parse_detokenize_request(const nlohmann::json& body);

}  // namespace anvil::server
