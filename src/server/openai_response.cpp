// JSON shapes of OpenAI's completion, chat completion and streaming responses.
#include "server/openai_response.h"

#include <fmt/format.h>

#include <chrono>
#include <random>

#include "server/api_error.h"
#include "tokenizer/utf8.h"

namespace anvil::server {
namespace {

const char* object_name(ApiEndpoint endpoint, bool chunk) {
  if (endpoint == ApiEndpoint::Completions) return "text_completion";
  return chunk ? "chat.completion.chunk" : "chat.completion";
}

nlohmann::json envelope(const ResponseHeader& header, bool chunk) {
  return {{"id", header.id}, {"object", object_name(header.endpoint, chunk)}, {"created", header.created},
          {"model", header.model}};
}

nlohmann::json byte_list(const std::string& bytes) {
  nlohmann::json list = nlohmann::json::array();
  for (unsigned char c : bytes) list.push_back(static_cast<int>(c));
  return list;
}

}  // namespace

nlohmann::json StopReason::to_json() const {
  if (token_id >= 0) return token_id;
  return text.empty() ? nlohmann::json(nullptr) : nlohmann::json(text);
}

std::string make_response_id(ApiEndpoint endpoint) {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return fmt::format("{}-{:016x}{:016x}", endpoint == ApiEndpoint::Completions ? "cmpl" : "chatcmpl", rng(), rng());
}

int64_t unix_seconds_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

nlohmann::json usage_json(const UsageCounts& usage) {
  nlohmann::json json = {{"prompt_tokens", usage.prompt_tokens},
                         {"completion_tokens", usage.completion_tokens},
                         {"total_tokens", usage.prompt_tokens + usage.completion_tokens}};
  if (usage.cached_tokens > 0) json["prompt_tokens_details"] = {{"cached_tokens", usage.cached_tokens}};
  return json;
}

nlohmann::json finish_reason_json(FinishReason finish) {
  if (finish == FinishReason::None) return nullptr;
  return finish_reason_name(finish);
}

std::string token_display_text(const std::string& bytes) {
  if (utf8::find_invalid(bytes) == std::string::npos) return bytes;
  std::string text = "bytes:";
  for (unsigned char c : bytes) text += fmt::format("\\x{:02x}", c);
  return text;
}

nlohmann::json completion_logprobs_json(const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                                        const TokenTextFn& token_text, int64_t& text_offset) {
  nlohmann::json token_list = nlohmann::json::array(), token_logprobs = nlohmann::json::array();
  nlohmann::json top_logprobs = nlohmann::json::array(), offsets = nlohmann::json::array();
  for (size_t i = 0; i < tokens.size() && i < logprobs.size(); ++i) {
    const std::string bytes = token_text(tokens[i]);
    token_list.push_back(token_display_text(bytes));
    token_logprobs.push_back(logprobs[i].chosen.logprob);
    // A dict token -> logprob; the chosen token is in it too, as in OpenAI's answers.
    nlohmann::json top = nlohmann::json::object();
    for (const TokenLogprob& alternative : logprobs[i].top)
      top[token_display_text(token_text(alternative.id))] = alternative.logprob;
    top[token_display_text(bytes)] = logprobs[i].chosen.logprob;
    top_logprobs.push_back(std::move(top));
    offsets.push_back(text_offset);
    text_offset += static_cast<int64_t>(bytes.size());
  }
  return {{"tokens", std::move(token_list)},
          {"token_logprobs", std::move(token_logprobs)},
          {"top_logprobs", std::move(top_logprobs)},
          {"text_offset", std::move(offsets)}};
}

nlohmann::json chat_logprobs_json(const std::vector<int32_t>& tokens, const std::vector<TokenLogprobs>& logprobs,
                                  const TokenTextFn& token_text) {
  nlohmann::json content = nlohmann::json::array();
  for (size_t i = 0; i < tokens.size() && i < logprobs.size(); ++i) {
    const std::string bytes = token_text(tokens[i]);
    nlohmann::json top = nlohmann::json::array();
    for (const TokenLogprob& alternative : logprobs[i].top) {
      const std::string alternative_bytes = token_text(alternative.id);
      top.push_back({{"token", token_display_text(alternative_bytes)},
                     {"logprob", alternative.logprob},
                     {"bytes", byte_list(alternative_bytes)}});
    }
    content.push_back({{"token", token_display_text(bytes)},
                       {"logprob", logprobs[i].chosen.logprob},
                       {"bytes", byte_list(bytes)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

nlohmann::json completion_body(const ResponseHeader& header, const std::vector<ChoiceOutput>& choices,
                               const UsageCounts& usage, bool with_logprobs, const TokenTextFn& token_text) {
  nlohmann::json body = envelope(header, false);
  nlohmann::json list = nlohmann::json::array();
  for (const ChoiceOutput& choice : choices) {
    int64_t text_offset = 0;
    list.push_back({{"index", choice.index},
                    {"text", choice.text},
                    {"logprobs", with_logprobs ? completion_logprobs_json(choice.tokens, choice.logprobs, token_text,
                                                                          text_offset)
                                               : nlohmann::json(nullptr)},
                    {"finish_reason", finish_reason_json(choice.finish)},
                    {"stop_reason", choice.stop_reason.to_json()}});
  }
  body["choices"] = std::move(list);
  body["usage"] = usage_json(usage);
  return body;
}

nlohmann::json chat_body(const ResponseHeader& header, const std::vector<ChoiceOutput>& choices,
                         const UsageCounts& usage, bool with_logprobs, const TokenTextFn& token_text) {
  nlohmann::json body = envelope(header, false);
  nlohmann::json list = nlohmann::json::array();
  for (const ChoiceOutput& choice : choices) {
    list.push_back({{"index", choice.index},
                    {"message", {{"role", "assistant"}, {"content", choice.text}}},
                    {"logprobs", with_logprobs ? chat_logprobs_json(choice.tokens, choice.logprobs, token_text)
                                               : nlohmann::json(nullptr)},
                    {"finish_reason", finish_reason_json(choice.finish)},
                    {"stop_reason", choice.stop_reason.to_json()}});
  }
  body["choices"] = std::move(list);
  body["usage"] = usage_json(usage);
  return body;
}

nlohmann::json completion_chunk(const ResponseHeader& header, int64_t index, const std::string& text,
                                nlohmann::json logprobs, FinishReason finish, const StopReason& stop_reason) {
  nlohmann::json chunk = envelope(header, true);
  nlohmann::json choice = {{"index", index}, {"text", text}, {"logprobs", std::move(logprobs)},
                           {"finish_reason", finish_reason_json(finish)}};
  if (finish != FinishReason::None) choice["stop_reason"] = stop_reason.to_json();
  chunk["choices"] = nlohmann::json::array({std::move(choice)});
  return chunk;
}

nlohmann::json chat_role_chunk(const ResponseHeader& header, int64_t index) {
  nlohmann::json chunk = envelope(header, true);
  chunk["choices"] = nlohmann::json::array({{{"index", index},
                                             {"delta", {{"role", "assistant"}, {"content", ""}}},
                                             {"logprobs", nullptr},
                                             {"finish_reason", nullptr}}});
  return chunk;
}

nlohmann::json chat_chunk(const ResponseHeader& header, int64_t index, const std::string& text,
                          nlohmann::json logprobs, FinishReason finish, const StopReason& stop_reason) {
  nlohmann::json chunk = envelope(header, true);
  nlohmann::json delta = nlohmann::json::object();
  if (!text.empty() || finish == FinishReason::None) delta["content"] = text;
  nlohmann::json choice = {{"index", index}, {"delta", std::move(delta)}, {"logprobs", std::move(logprobs)},
                           {"finish_reason", finish_reason_json(finish)}};
  if (finish != FinishReason::None) choice["stop_reason"] = stop_reason.to_json();
  chunk["choices"] = nlohmann::json::array({std::move(choice)});
  return chunk;
}

nlohmann::json usage_chunk(const ResponseHeader& header, const UsageCounts& usage) {
  nlohmann::json chunk = envelope(header, true);
  chunk["choices"] = nlohmann::json::array();
  chunk["usage"] = usage_json(usage);
  return chunk;
}

std::string sse_event(const nlohmann::json& data) { return "data: " + dump_json(data) + "\n\n"; }

}  // namespace anvil::server
