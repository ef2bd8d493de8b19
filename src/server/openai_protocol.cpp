// Request validation for the OpenAI-compatible API. Every wrong type or out-of-range value is a
// 400 naming the field; fields anvil cannot honour are refused, never silently ignored.
#include "server/openai_protocol.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/json_error.h"
#include "server/json_fields.h"

namespace anvil::server {
namespace {

// Token ids: non-negative 32-bit integers (the vocabulary bound is checked against the model).
std::optional<std::vector<int32_t>> parse_token_ids(JsonFields& fields, const nlohmann::json& array,
                                                    const std::string& param) {
  std::vector<int32_t> ids;
  ids.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const std::optional<int64_t> id = json_integer(array[i]);
    if (!id || *id < 0 || *id > INT32_MAX) {
      // Only a number is shown as is: dump() of a deeply nested value would recurse without bound.
      const std::string got = array[i].is_number() ? array[i].dump() : std::string("a ") + json_type_name(array[i]);
      fields.fail(fmt::format("{}[{}] must be a token id (an integer >= 0), got {}", param, i, got), param);
      return std::nullopt;
    }
    ids.push_back(static_cast<int32_t>(*id));
  }
  return ids;
}

// prompt: "text", ["text", ...], [id, ...] or [[id, ...], ...], as the OpenAI API allows.
std::vector<PromptInput> parse_prompts(JsonFields& fields) {
  const nlohmann::json* prompt = fields.get("prompt");
  std::vector<PromptInput> prompts;
  if (!fields.ok()) return prompts;
  if (prompt == nullptr) {
    fields.fail("prompt is required", "prompt");
    return prompts;
  }
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty()) fields.fail("prompt must not be empty", "prompt");
    prompts.push_back({false, prompt->get<std::string>(), {}});
    return prompts;
  }
  if (!prompt->is_array()) {
    fields.fail(fmt::format("prompt must be a string, a list of strings, a list of token ids or a list of "
                            "token-id lists, got a {}", json_type_name(*prompt)),
                "prompt");
    return prompts;
  }
  if (prompt->empty()) {
    fields.fail("prompt must not be an empty list", "prompt");
    return prompts;
  }
  const nlohmann::json& first = (*prompt)[0];
  if (first.is_number()) {
    std::optional<std::vector<int32_t>> ids = parse_token_ids(fields, *prompt, "prompt");
    if (ids) prompts.push_back({true, "", std::move(*ids)});
    return prompts;
  }
  for (size_t i = 0; i < prompt->size() && fields.ok(); ++i) {
    const nlohmann::json& item = (*prompt)[i];
    const std::string param = fmt::format("prompt[{}]", i);
    if (first.is_string() && item.is_string()) {
      if (item.get_ref<const std::string&>().empty()) fields.fail(param + " must not be empty", "prompt");
      prompts.push_back({false, item.get<std::string>(), {}});
    } else if (first.is_array() && item.is_array()) {
      if (item.empty()) fields.fail(param + " must not be an empty list of token ids", "prompt");
      std::optional<std::vector<int32_t>> ids = parse_token_ids(fields, item, param);
      if (ids) prompts.push_back({true, "", std::move(*ids)});
    } else {
      fields.fail(fmt::format("{} is a {}; a prompt list holds only strings or only token-id lists", param,
                              json_type_name(item)),
                  "prompt");
    }
  }
  return prompts;
}

// content: a string, or a list of {"type": "text", "text": "..."} parts (joined by newlines, as
// vLLM does). Assistant turns may carry null content.
std::optional<std::string> parse_content(JsonFields& fields, const nlohmann::json* content, const std::string& path,
                                         const std::string& role) {
  const std::string param = path + ".content";
  if (content == nullptr) {
    if (role == "assistant") return std::string();
    fields.fail(param + " is required", "messages");
    return std::nullopt;
  }
  if (content->is_string()) return content->get<std::string>();
  if (!content->is_array()) {
    fields.fail(fmt::format("{} must be a string or a list of content parts, got a {}", param,
                            json_type_name(*content)),
                "messages");
    return std::nullopt;
  }
  std::string text;
  for (size_t i = 0; i < content->size(); ++i) {
    const nlohmann::json& part = (*content)[i];
    const std::string part_path = fmt::format("{}[{}]", param, i);
    JsonFields part_fields(part, part_path);
    if (!part.is_object()) {
      fields.fail(fmt::format("{} must be an object, got a {}", part_path, json_type_name(part)), "messages");
      return std::nullopt;
    }
    const std::optional<std::string> type = part_fields.string("type");
    const std::optional<std::string> part_text = part_fields.string("text");
    if (!part_fields.ok()) {
      fields.fail(ApiError::invalid(part_fields.error().message, "messages"));
      return std::nullopt;
    }
    if (type != "text") {
      fields.fail(fmt::format("{}: content parts of type '{}' are not supported; only 'text'", part_path,
                              type.value_or("(none)")),
                  "messages");
      return std::nullopt;
    }
    if (!part_text) {
      fields.fail(part_path + ".text is required", "messages");
      return std::nullopt;
    }
    if (!text.empty()) text += "\n";
    text += *part_text;
  }
  return text;
}

std::vector<ChatMessage> parse_messages(JsonFields& fields) {
  std::vector<ChatMessage> messages;
  const nlohmann::json* list = fields.get("messages");
  if (!fields.ok()) return messages;
  if (list == nullptr) {
    fields.fail("messages is required", "messages");
    return messages;
  }
  if (!list->is_array() || list->empty()) {
    fields.fail(list->is_array() ? "messages must not be empty"
                                 : fmt::format("messages must be a list of messages, got a {}", json_type_name(*list)),
                "messages");
    return messages;
  }
  for (size_t i = 0; i < list->size() && fields.ok(); ++i) {
    const nlohmann::json& item = (*list)[i];
    const std::string path = fmt::format("messages[{}]", i);
    if (!item.is_object()) {
      fields.fail(fmt::format("{} must be an object with role and content, got a {}", path, json_type_name(item)),
                  "messages");
      break;
    }
    JsonFields message(item, path);
    std::optional<std::string> role = message.string("role");
    if (!message.ok()) {
      fields.fail(ApiError::invalid(message.error().message, "messages"));
      break;
    }
    if (!role) {
      fields.fail(path + ".role is required", "messages");
      break;
    }
    if (*role == "developer") role = "system";  // OpenAI's newer name for the system turn
    if (*role != "system" && *role != "user" && *role != "assistant") {
      fields.fail(fmt::format("{}.role '{}' is not supported (system, developer, user or assistant)", path, *role),
                  "messages");
      break;
    }
    std::optional<std::string> content = parse_content(fields, message.get("content"), path, *role);
    if (!content) break;
    messages.push_back({*role, std::move(*content)});
  }
  return messages;
}

// stop: a string or a list of non-empty strings.
std::vector<std::string> parse_stop(JsonFields& fields) {
  std::vector<std::string> stop;
  const nlohmann::json* value = fields.get("stop");
  if (!fields.ok() || value == nullptr) return stop;
  if (value->is_string()) {
    stop.push_back(value->get<std::string>());
  } else if (value->is_array()) {
    for (size_t i = 0; i < value->size(); ++i) {
      if (!(*value)[i].is_string()) {
        fields.fail(fmt::format("stop[{}] must be a string, got a {}", i, json_type_name((*value)[i])), "stop");
        return {};
      }
      stop.push_back((*value)[i].get<std::string>());
    }
  } else {
    fields.fail(fmt::format("stop must be a string or a list of strings, got a {}", json_type_name(*value)), "stop");
    return {};
  }
  for (const std::string& s : stop)
    if (s.empty()) fields.fail("stop strings must not be empty", "stop");
  return stop;
}

// Absent, null, "", [] or {}: what SDKs send for fields they do not use.
bool is_unset(const nlohmann::json* value) {
  if (value == nullptr) return true;
  if (value->is_string()) return value->get_ref<const std::string&>().empty();
  return (value->is_array() || value->is_object()) && value->empty();
}

// Fields of the OpenAI API that anvil does not implement: refused with a clear message unless
// they hold their neutral value.
void refuse_unsupported(JsonFields& fields, const OpenAIRequest& request) {
  if (!is_unset(fields.get("suffix"))) fields.fail("suffix is not supported", "suffix");
  if (!is_unset(fields.get("logit_bias"))) fields.fail("logit_bias is not supported", "logit_bias");
  if (!is_unset(fields.get("tools"))) fields.fail("tools (function calling) are not supported", "tools");
  if (!is_unset(fields.get("functions"))) fields.fail("functions (function calling) are not supported", "functions");
  if (const nlohmann::json* format = fields.get("response_format")) {
    JsonFields format_fields(*format, "response_format");
    const std::optional<std::string> type = format->is_object() ? format_fields.string("type") : std::nullopt;
    if (!format->is_object() || !format_fields.ok() || type.value_or("text") != "text")
      fields.fail("response_format: only {\"type\": \"text\"} is supported", "response_format");
  }
  const std::optional<int64_t> best_of = fields.integer("best_of", 1, kMaxChoicesPerRequest);
  if (best_of && *best_of != request.n) fields.fail("best_of other than n is not supported", "best_of");
  // vLLM's extra fields: accepted at their default, refused otherwise.
  if (fields.boolean("use_beam_search").value_or(false)) fields.fail("use_beam_search is not supported", "use_beam_search");
  if (const nlohmann::json* prompt_logprobs = fields.get("prompt_logprobs"); prompt_logprobs && !prompt_logprobs->is_null())
    fields.fail("prompt_logprobs is not supported", "prompt_logprobs");
  if (fields.boolean("include_stop_str_in_output").value_or(false))
    fields.fail("include_stop_str_in_output is not supported (stop strings are cut from the text)",
                "include_stop_str_in_output");
  if (!fields.boolean("skip_special_tokens").value_or(true))
    fields.fail("skip_special_tokens false is not supported (special tokens never appear in the text)",
                "skip_special_tokens");
  if (const nlohmann::json* choice = fields.get("tool_choice");
      !is_unset(choice) && !(choice->is_string() && choice->get<std::string>() == "none"))
    fields.fail("tool_choice is not supported (no function calling)", "tool_choice");
  const std::optional<int64_t> min_tokens = fields.integer("min_tokens", 0, INT32_MAX);
  if (min_tokens && *min_tokens > 0) fields.fail("min_tokens is not supported", "min_tokens");
}

void parse_sampling(JsonFields& fields, OpenAIRequest& request) {
  SamplingParams& s = request.sampling;
  // OpenAI's defaults; `anvil run`'s (0.8 / 40 / 0.95 / 0.05) would surprise API clients.
  s.temperature = 1.0f;
  s.top_p = 1.0f;
  s.top_k = 0;
  s.min_p = 0.0f;
  s.repetition_penalty = 1.0f;
  s.presence_penalty = 0.0f;
  s.frequency_penalty = 0.0f;
  s.penalty_last_n = -1;  // vLLM's repetition penalty sees the whole prompt and output
  if (auto t = fields.number("temperature", 0.0, 2.0)) s.temperature = *t < 1e-5 ? 0.0f : static_cast<float>(*t);
  if (auto p = fields.number("top_p", 0.0, 1.0)) {
    if (*p <= 0.0) fields.fail(fmt::format("top_p must be in (0, 1], got {}", *p), "top_p");
    s.top_p = static_cast<float>(*p);
  }
  if (auto k = fields.integer("top_k", -1, INT32_MAX)) s.top_k = *k <= 0 ? 0 : *k;
  if (auto m = fields.number("min_p", 0.0, 1.0)) s.min_p = static_cast<float>(*m);
  if (auto p = fields.number("presence_penalty", -2.0, 2.0)) s.presence_penalty = static_cast<float>(*p);
  if (auto f = fields.number("frequency_penalty", -2.0, 2.0)) s.frequency_penalty = static_cast<float>(*f);
  if (auto r = fields.number("repetition_penalty", 0.0, 1e6)) {
    if (*r <= 0.0) fields.fail(fmt::format("repetition_penalty must be > 0, got {}", *r), "repetition_penalty");
    s.repetition_penalty = static_cast<float>(*r);
  }
  if (auto seed = fields.integer("seed", INT64_MIN, INT64_MAX)) request.seed = static_cast<uint64_t>(*seed);
}

void parse_logprobs(JsonFields& fields, OpenAIRequest& request) {
  if (request.endpoint == ApiEndpoint::Completions) {
    if (auto k = fields.integer("logprobs", 0, kMaxLogprobs)) request.logprobs = *k;
    return;
  }
  const bool wanted = fields.boolean("logprobs").value_or(false);
  const std::optional<int64_t> top = fields.integer("top_logprobs", 0, kMaxLogprobs);
  if (top && *top > 0 && !wanted) fields.fail("top_logprobs needs logprobs set to true", "top_logprobs");
  if (wanted) request.logprobs = top.value_or(0);
}

void parse_streaming(JsonFields& fields, OpenAIRequest& request) {
  request.stream = fields.boolean("stream").value_or(false);
  const nlohmann::json* options = fields.get("stream_options");
  if (!fields.ok() || options == nullptr) return;
  if (!options->is_object()) {
    fields.fail(fmt::format("stream_options must be an object, got a {}", json_type_name(*options)), "stream_options");
    return;
  }
  if (!request.stream) {
    fields.fail("stream_options is only allowed when stream is true", "stream_options");
    return;
  }
  JsonFields option_fields(*options, "stream_options");
  request.include_usage = option_fields.boolean("include_usage").value_or(false);
  option_fields.boolean("continuous_usage_stats");  // accepted for vLLM clients; usage comes at the end
  if (!option_fields.ok()) fields.fail(ApiError::invalid(option_fields.error().message, "stream_options"));
}

}  // namespace

ApiResult<nlohmann::json> parse_json_body(std::string_view body) {
  nlohmann::json parsed;
  try {
    parsed = nlohmann::json::parse(body);
  } catch (const std::exception& e) {
    return ApiError::invalid("the request body is not valid JSON: " + json_error_text(e));
  }
  if (!parsed.is_object())
    return ApiError::invalid(fmt::format("the request body must be a JSON object, got a {}", json_type_name(parsed)));
  return parsed;
}

ApiResult<OpenAIRequest> parse_openai_request(const nlohmann::json& body, ApiEndpoint endpoint) {
  if (!body.is_object())
    return ApiError::invalid(fmt::format("the request body must be a JSON object, got a {}", json_type_name(body)));
  OpenAIRequest request;
  request.endpoint = endpoint;
  JsonFields fields(body);
  request.model = fields.string("model").value_or("");
  if (endpoint == ApiEndpoint::Completions) {
    request.prompts = parse_prompts(fields);
    request.echo = fields.boolean("echo").value_or(false);
  } else {
    request.messages = parse_messages(fields);
    request.add_generation_prompt = fields.boolean("add_generation_prompt").value_or(true);
  }
  // Chat's max_completion_tokens replaced max_tokens; a request may carry both (vLLM takes the new one).
  request.max_tokens = fields.integer("max_tokens", 1, INT64_MAX);
  // Completions has no max_completion_tokens in OpenAI's API; taking it as the same limit beats
  // ignoring a limit the client meant.
  if (auto m = fields.integer("max_completion_tokens", 1, INT64_MAX)) request.max_tokens = m;
  request.n = fields.integer("n", 1, kMaxChoicesPerRequest).value_or(1);
  parse_sampling(fields, request);
  request.stop = parse_stop(fields);
  if (const nlohmann::json* ids = fields.get("stop_token_ids"); ids && fields.ok()) {
    if (!ids->is_array()) fields.fail("stop_token_ids must be a list of token ids", "stop_token_ids");
    else if (auto parsed = parse_token_ids(fields, *ids, "stop_token_ids")) request.stop_token_ids = std::move(*parsed);
  }
  parse_logprobs(fields, request);
  request.ignore_eos = fields.boolean("ignore_eos").value_or(false);
  parse_streaming(fields, request);
  fields.string("user");  // accepted and ignored, as OpenAI's own API does for routing
  refuse_unsupported(fields, request);
  if (fields.ok() && request.echo && request.logprobs >= 0)
    fields.fail("echo together with logprobs (prompt logprobs) is not supported", "echo");
  if (fields.ok() && request.choice_count() > kMaxChoicesPerRequest)
    fields.fail(fmt::format("a request may ask for at most {} completions (prompts x n), this one asks for {}",
                            kMaxChoicesPerRequest, request.choice_count()),
                "n");
  if (!fields.ok()) return fields.error();
  return request;
}

ApiResult<OpenAIRequest> parse_openai_request(std::string_view body, ApiEndpoint endpoint) {
  ApiResult<nlohmann::json> parsed = parse_json_body(body);
  if (!parsed) return parsed.error();
  return parse_openai_request(*parsed, endpoint);
}

std::optional<ApiError> check_model_name(const std::string& model, const std::vector<std::string>& served_names) {
  if (model.empty() || std::find(served_names.begin(), served_names.end(), model) != served_names.end())
    return std::nullopt;
  std::string known;
  for (const std::string& name : served_names) known += (known.empty() ? "'" : ", '") + name + "'";
  return ApiError{404, fmt::format("The model '{}' does not exist; this server serves {}", model, known),
                  "NotFoundError", "model", "model_not_found"};
}

std::optional<ApiError> check_prompt_tokens(const std::vector<int32_t>& prompt, const ModelLimits& limits,
                                            const char* param) {
  if (prompt.empty()) return ApiError::invalid(fmt::format("{} must not be empty", param), param);
  for (int32_t id : prompt)
    if (id < 0 || id >= limits.vocab_size)
      return ApiError::invalid(fmt::format("token id {} in the {} is outside the vocabulary (0..{})", id, param,
                                           limits.vocab_size - 1),
                               param);
  const int64_t length = static_cast<int64_t>(prompt.size());
  if (length >= limits.context_length)
    return ApiError::invalid(fmt::format("This model's maximum context length is {} tokens. However, your {} is {} "
                                         "tokens, which leaves no room for a completion. Please reduce the length "
                                         "of the {}.",
                                         limits.context_length, param, length, param),
                             param, "context_length_exceeded");
  return std::nullopt;
}

ApiResult<RequestParams> make_request_params(const OpenAIRequest& request, std::vector<int32_t> prompt,
                                             int64_t choice_index, const ModelLimits& limits,
                                             uint64_t random_seed) {
  const char* prompt_param = request.endpoint == ApiEndpoint::Completions ? "prompt" : "messages";
  if (std::optional<ApiError> error = check_prompt_tokens(prompt, limits, prompt_param)) return *error;
  const int64_t prompt_length = static_cast<int64_t>(prompt.size());
  const int64_t room = limits.context_length - prompt_length;
  int64_t max_tokens = request.endpoint == ApiEndpoint::Completions ? std::min<int64_t>(16, room) : room;
  if (request.max_tokens) {
    if (*request.max_tokens > room)
      return ApiError::invalid(fmt::format("This model's maximum context length is {} tokens. However, you requested "
                                           "{} tokens ({} in the {}, {} in the completion). Please reduce the length "
                                           "of the {} or completion.",
                                           limits.context_length, prompt_length + *request.max_tokens, prompt_length,
                                           prompt_param, *request.max_tokens, prompt_param),
                               "max_tokens", "context_length_exceeded");
    max_tokens = *request.max_tokens;
  }
  for (int32_t id : request.stop_token_ids)
    if (id >= limits.vocab_size)
      return ApiError::invalid(fmt::format("stop_token_ids: {} is outside the vocabulary (0..{})", id,
                                           limits.vocab_size - 1),
                               "stop_token_ids");

  RequestParams params;
  params.prompt = std::move(prompt);
  params.sampling = request.sampling;
  params.sampling.seed = request.seed ? *request.seed + static_cast<uint64_t>(choice_index) : random_seed;
  params.max_tokens = max_tokens;
  params.stop = request.stop;
  params.stop_token_ids = request.stop_token_ids;
  params.ignore_eos = request.ignore_eos;
  params.logprobs = request.logprobs;
  params.detokenize = true;
  return params;
}

ApiResult<TokenizeRequest> parse_tokenize_request(const nlohmann::json& body) {
  if (!body.is_object())
    return ApiError::invalid(fmt::format("the request body must be a JSON object, got a {}", json_type_name(body)));
  TokenizeRequest request;
  JsonFields fields(body);
  request.model = fields.string("model").value_or("");
  request.add_special_tokens = fields.boolean("add_special_tokens").value_or(true);
  request.add_generation_prompt = fields.boolean("add_generation_prompt").value_or(true);
  const bool has_prompt = fields.get("prompt") != nullptr;
  const bool has_messages = fields.get("messages") != nullptr;
  if (has_prompt == has_messages) {
    fields.fail("give exactly one of prompt (a string) or messages (a chat)", has_prompt ? "messages" : "prompt");
  } else if (has_messages) {
    request.is_chat = true;
    request.messages = parse_messages(fields);
  } else {
    request.prompt = fields.string("prompt").value_or("");
  }
  if (!fields.ok()) return fields.error();
  return request;
}

ApiResult<DetokenizeRequest> parse_detokenize_request(const nlohmann::json& body) {
  if (!body.is_object())
    return ApiError::invalid(fmt::format("the request body must be a JSON object, got a {}", json_type_name(body)));
  DetokenizeRequest request;
  JsonFields fields(body);
  request.model = fields.string("model").value_or("");
  const nlohmann::json* tokens = fields.get("tokens");
  if (tokens == nullptr || !tokens->is_array()) {
    fields.fail("tokens must be a list of token ids", "tokens");
  } else if (auto ids = parse_token_ids(fields, *tokens, "tokens")) {
    request.tokens = std::move(*ids);
  }
  if (!fields.ok()) return fields.error();
  return request;
}

}  // namespace anvil::server
