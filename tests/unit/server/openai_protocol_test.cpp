// Request validation of the OpenAI-compatible API: accepted shapes, OpenAI defaults, and a 400
// with the right param for every wrong type or out-of-range value.
#include "server/openai_protocol.h"

#include <gtest/gtest.h>

namespace anvil::server {
namespace {

using nlohmann::json;

OpenAIRequest parse_ok(const json& body, ApiEndpoint endpoint = ApiEndpoint::Completions) {
  ApiResult<OpenAIRequest> result = parse_openai_request(body, endpoint);
  EXPECT_TRUE(result.is_ok()) << body.dump() << " -> " << (result.is_ok() ? "" : result.error().message);
  return result.is_ok() ? std::move(result).value() : OpenAIRequest{};
}

ApiError parse_error(const json& body, ApiEndpoint endpoint = ApiEndpoint::Completions) {
  ApiResult<OpenAIRequest> result = parse_openai_request(body, endpoint);
  EXPECT_FALSE(result.is_ok()) << body.dump() << " was accepted";
  return result.is_ok() ? ApiError{} : result.error();
}

json completion(json extra = json::object()) {
  json body = {{"model", "m"}, {"prompt", "hello"}};
  body.update(extra);
  return body;
}

json chat(json extra = json::object()) {
  json body = {{"model", "m"}, {"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}};
  body.update(extra);
  return body;
}

TEST(OpenAIProtocol, CompletionDefaultsAreOpenAIs) {
  OpenAIRequest r = parse_ok(completion());
  EXPECT_EQ(r.model, "m");
  ASSERT_EQ(r.prompts.size(), 1u);
  EXPECT_FALSE(r.prompts[0].is_tokens);
  EXPECT_EQ(r.prompts[0].text, "hello");
  EXPECT_FLOAT_EQ(r.sampling.temperature, 1.0f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 1.0f);
  EXPECT_EQ(r.sampling.top_k, 0);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.0f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.0f);
  EXPECT_FALSE(r.max_tokens.has_value());
  EXPECT_EQ(r.n, 1);
  EXPECT_EQ(r.logprobs, -1);
  EXPECT_FALSE(r.stream);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_TRUE(r.sampling.validate().is_ok());
}

TEST(OpenAIProtocol, EveryPromptShape) {
  OpenAIRequest list = parse_ok(completion({{"prompt", {"a", "b", "c"}}}));
  ASSERT_EQ(list.prompts.size(), 3u);
  EXPECT_EQ(list.prompts[2].text, "c");
  EXPECT_EQ(list.choice_count(), 3);

  OpenAIRequest ids = parse_ok(completion({{"prompt", {1, 70, 80}}}));
  ASSERT_EQ(ids.prompts.size(), 1u);
  EXPECT_TRUE(ids.prompts[0].is_tokens);
  EXPECT_EQ(ids.prompts[0].tokens, (std::vector<int32_t>{1, 70, 80}));

  OpenAIRequest id_lists = parse_ok(completion({{"prompt", {{1, 2}, {3}}}, {"n", 2}}));
  ASSERT_EQ(id_lists.prompts.size(), 2u);
  EXPECT_EQ(id_lists.prompts[1].tokens, (std::vector<int32_t>{3}));
  EXPECT_EQ(id_lists.choice_count(), 4);
}

TEST(OpenAIProtocol, BadPrompts) {
  EXPECT_EQ(parse_error(completion({{"prompt", ""}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", json::array()}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", 5}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", {"a", 1}}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", {1, -2}}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", {1, 2.5}}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", {{1}, json::array()}}})).param, "prompt");
  EXPECT_EQ(parse_error(completion({{"prompt", {""}}})).param, "prompt");
  json missing = completion();
  missing.erase("prompt");
  EXPECT_EQ(parse_error(missing).param, "prompt");
}

TEST(OpenAIProtocol, MaxTokens) {
  EXPECT_EQ(parse_ok(completion({{"max_tokens", 7}})).max_tokens, 7);
  EXPECT_EQ(parse_ok(completion({{"max_tokens", 7.0}})).max_tokens, 7);  // pydantic's lax int
  EXPECT_FALSE(parse_ok(completion({{"max_tokens", nullptr}})).max_tokens.has_value());
  for (const json& bad : {json(-1), json(0), json(2.5), json("7"), json(true), json(1e300),
                          json::parse("18446744073709551615")}) {
    ApiError error = parse_error(completion({{"max_tokens", bad}}));
    EXPECT_EQ(error.http_status, 400);
    EXPECT_EQ(error.param, "max_tokens") << bad.dump();
    EXPECT_EQ(error.type, "invalid_request_error");
    EXPECT_NE(error.message.find("max_tokens"), std::string::npos) << error.message;
  }
  // max_completion_tokens is the newer name and wins (completions take it too rather than ignore it).
  EXPECT_EQ(parse_ok(completion({{"max_completion_tokens", 4}})).max_tokens, 4);
  EXPECT_EQ(parse_ok(chat({{"max_tokens", 5}, {"max_completion_tokens", 9}}), ApiEndpoint::ChatCompletions).max_tokens,
            9);
  EXPECT_EQ(parse_error(chat({{"max_completion_tokens", -3}}), ApiEndpoint::ChatCompletions).param,
            "max_completion_tokens");
}

TEST(OpenAIProtocol, SamplingRanges) {
  OpenAIRequest r = parse_ok(completion({{"temperature", 0.5}, {"top_p", 0.9}, {"top_k", 5}, {"min_p", 0.1},
                                         {"presence_penalty", -1.5}, {"frequency_penalty", 2},
                                         {"repetition_penalty", 1.3}, {"seed", 42}}));
  EXPECT_FLOAT_EQ(r.sampling.temperature, 0.5f);
  EXPECT_FLOAT_EQ(r.sampling.top_p, 0.9f);
  EXPECT_EQ(r.sampling.top_k, 5);
  EXPECT_FLOAT_EQ(r.sampling.min_p, 0.1f);
  EXPECT_FLOAT_EQ(r.sampling.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(r.sampling.frequency_penalty, 2.0f);
  EXPECT_FLOAT_EQ(r.sampling.repetition_penalty, 1.3f);
  EXPECT_EQ(r.seed, 42u);
  EXPECT_FLOAT_EQ(parse_ok(completion({{"temperature", 0}})).sampling.temperature, 0.0f);
  EXPECT_EQ(parse_ok(completion({{"top_k", -1}})).sampling.top_k, 0);

  const std::vector<std::pair<const char*, json>> bad = {
      {"temperature", -0.1}, {"temperature", 2.5},      {"temperature", "hot"}, {"top_p", 0},
      {"top_p", 1.5},        {"top_k", -2},             {"top_k", 1.5},         {"min_p", 1.5},
      {"presence_penalty", 3}, {"frequency_penalty", -2.5}, {"repetition_penalty", 0}, {"seed", "x"},
      {"n", 0},              {"n", 1000},               {"n", "2"},             {"ignore_eos", 1},
      {"stream", "yes"},     {"logprobs", 21},          {"logprobs", -1},       {"model", 3}};
  for (const auto& [field, value] : bad) {
    ApiError error = parse_error(completion({{field, value}}));
    EXPECT_EQ(error.http_status, 400) << field;
    EXPECT_EQ(error.param, field) << field << "=" << value.dump() << ": " << error.message;
  }
}

TEST(OpenAIProtocol, StopStrings) {
  EXPECT_EQ(parse_ok(completion({{"stop", "\n"}})).stop, (std::vector<std::string>{"\n"}));
  EXPECT_EQ(parse_ok(completion({{"stop", {"a", "bc"}}})).stop, (std::vector<std::string>{"a", "bc"}));
  EXPECT_TRUE(parse_ok(completion({{"stop", nullptr}})).stop.empty());
  EXPECT_EQ(parse_error(completion({{"stop", 3}})).param, "stop");
  EXPECT_EQ(parse_error(completion({{"stop", {"a", 3}}})).param, "stop");
  EXPECT_EQ(parse_error(completion({{"stop", ""}})).param, "stop");
  EXPECT_EQ(parse_ok(completion({{"stop_token_ids", {2, 7}}})).stop_token_ids, (std::vector<int32_t>{2, 7}));
}

TEST(OpenAIProtocol, Logprobs) {
  EXPECT_EQ(parse_ok(completion({{"logprobs", 0}})).logprobs, 0);
  EXPECT_EQ(parse_ok(completion({{"logprobs", 5}})).logprobs, 5);
  EXPECT_EQ(parse_ok(chat({{"logprobs", true}}), ApiEndpoint::ChatCompletions).logprobs, 0);
  EXPECT_EQ(parse_ok(chat({{"logprobs", true}, {"top_logprobs", 3}}), ApiEndpoint::ChatCompletions).logprobs, 3);
  EXPECT_EQ(parse_ok(chat({{"logprobs", false}}), ApiEndpoint::ChatCompletions).logprobs, -1);
  EXPECT_EQ(parse_error(chat({{"top_logprobs", 3}}), ApiEndpoint::ChatCompletions).param, "top_logprobs");
  EXPECT_EQ(parse_error(chat({{"logprobs", true}, {"top_logprobs", 21}}), ApiEndpoint::ChatCompletions).param,
            "top_logprobs");
  EXPECT_EQ(parse_error(chat({{"logprobs", 3}}), ApiEndpoint::ChatCompletions).param, "logprobs");
}

TEST(OpenAIProtocol, Streaming) {
  OpenAIRequest r = parse_ok(completion({{"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  EXPECT_TRUE(r.stream);
  EXPECT_TRUE(r.include_usage);
  EXPECT_EQ(parse_error(completion({{"stream_options", {{"include_usage", true}}}})).param, "stream_options");
  EXPECT_EQ(parse_error(completion({{"stream", true}, {"stream_options", {{"include_usage", "y"}}}})).param,
            "stream_options");
  EXPECT_EQ(parse_error(completion({{"stream", true}, {"stream_options", 1}})).param, "stream_options");
}

TEST(OpenAIProtocol, ChatMessages) {
  json messages = json::array({{{"role", "system"}, {"content", "be brief"}},
                               {{"role", "developer"}, {"content", "really"}},
                               {{"role", "user"}, {"content", {{{"type", "text"}, {"text", "a"}},
                                                               {{"type", "text"}, {"text", "b"}}}}},
                               {{"role", "assistant"}, {"content", nullptr}}});
  OpenAIRequest r = parse_ok(chat({{"messages", messages}}), ApiEndpoint::ChatCompletions);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[1].role, "system");
  EXPECT_EQ(r.messages[2].content, "a\nb");
  EXPECT_EQ(r.messages[3].content, "");
  EXPECT_TRUE(r.add_generation_prompt);

  const std::vector<json> bad = {
      json::array(),
      "hello",
      json::array({"hi"}),
      json::array({{{"content", "hi"}}}),
      json::array({{{"role", "wizard"}, {"content", "hi"}}}),
      json::array({{{"role", "tool"}, {"content", "hi"}}}),
      json::array({{{"role", 1}, {"content", "hi"}}}),
      json::array({{{"role", "user"}}}),
      json::array({{{"role", "user"}, {"content", 5}}}),
      json::array({{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}),
      json::array({{{"role", "user"}, {"content", {{{"type", "text"}}}}}}),
      json::array({{{"role", "user"}, {"content", {"bare"}}}}),
  };
  for (const json& m : bad) {
    ApiError error = parse_error(chat({{"messages", m}}), ApiEndpoint::ChatCompletions);
    EXPECT_EQ(error.http_status, 400);
    EXPECT_EQ(error.param, "messages") << m.dump() << ": " << error.message;
  }
  EXPECT_NE(parse_error(chat({{"messages", json::array({{{"role", "wizard"}, {"content", "x"}}})}}),
                        ApiEndpoint::ChatCompletions)
                .message.find("wizard"),
            std::string::npos);
}

TEST(OpenAIProtocol, UnsupportedFieldsAreRefusedClearly) {
  EXPECT_EQ(parse_error(completion({{"suffix", "x"}})).param, "suffix");
  EXPECT_EQ(parse_error(completion({{"logit_bias", {{"5", 10}}}})).param, "logit_bias");
  EXPECT_EQ(parse_error(completion({{"best_of", 3}})).param, "best_of");
  EXPECT_EQ(parse_error(completion({{"echo", true}, {"logprobs", 1}})).param, "echo");
  EXPECT_EQ(parse_error(chat({{"tools", {{{"type", "function"}}}}}), ApiEndpoint::ChatCompletions).param, "tools");
  EXPECT_EQ(parse_error(chat({{"response_format", {{"type", "json_object"}}}}), ApiEndpoint::ChatCompletions).param,
            "response_format");
  // vLLM's extras that would change the output.
  for (const char* field : {"use_beam_search", "include_stop_str_in_output"})
    EXPECT_EQ(parse_error(completion({{field, true}})).param, field);
  EXPECT_EQ(parse_error(completion({{"skip_special_tokens", false}})).param, "skip_special_tokens");
  EXPECT_EQ(parse_error(completion({{"prompt_logprobs", 1}})).param, "prompt_logprobs");
  EXPECT_EQ(parse_error(chat({{"tool_choice", "auto"}}), ApiEndpoint::ChatCompletions).param, "tool_choice");
  // Their neutral values are fine: SDKs send them.
  parse_ok(completion({{"suffix", ""}, {"logit_bias", json::object()}, {"best_of", 1}, {"echo", true}, {"user", "u"}}));
  parse_ok(completion({{"use_beam_search", false}, {"include_stop_str_in_output", false}, {"skip_special_tokens", true},
                       {"prompt_logprobs", nullptr}}));
  parse_ok(chat({{"tool_choice", "none"}}), ApiEndpoint::ChatCompletions);
  parse_ok(chat({{"tools", json::array()}, {"response_format", {{"type", "text"}}}}), ApiEndpoint::ChatCompletions);
}

TEST(OpenAIProtocol, TooManyChoices) {
  std::vector<std::string> prompts(20, "p");
  EXPECT_EQ(parse_error(completion({{"prompt", prompts}, {"n", 10}})).param, "n");
}

TEST(OpenAIProtocol, MalformedBodies) {
  for (const char* body : {"", "{", "{\"prompt\": }", "[1, 2]", "\"text\"", "null", "{\"a\":1}x"}) {
    ApiResult<OpenAIRequest> result = parse_openai_request(std::string_view(body), ApiEndpoint::Completions);
    ASSERT_FALSE(result.is_ok()) << body;
    EXPECT_EQ(result.error().http_status, 400);
    EXPECT_EQ(result.error().type, "invalid_request_error");
  }
  ApiResult<OpenAIRequest> bad = parse_openai_request(std::string_view("{\"prompt\": "), ApiEndpoint::Completions);
  EXPECT_NE(bad.error().message.find("not valid JSON"), std::string::npos) << bad.error().message;
  EXPECT_EQ(bad.error().message.find("[json.exception"), std::string::npos) << bad.error().message;
}

TEST(OpenAIProtocol, DeeplyNestedValuesAreRefusedWithoutRecursion) {
  // 100000 levels: printing or copying such a value recursively would overflow the stack.
  const std::string nested = std::string(100000, '[') + std::string(100000, ']');
  for (const std::string& field : {"prompt", "stop", "stop_token_ids", "messages", "max_tokens", "model"}) {
    for (ApiEndpoint endpoint : {ApiEndpoint::Completions, ApiEndpoint::ChatCompletions}) {
      const std::string body = "{\"" + field + "\": " + nested + "}";
      ApiResult<OpenAIRequest> result = parse_openai_request(std::string_view(body), endpoint);
      ASSERT_FALSE(result.is_ok()) << field;
      EXPECT_EQ(result.error().http_status, 400);
      EXPECT_LT(result.error().message.size(), 300u) << field;
    }
  }
  const std::string tokens = "{\"tokens\": " + nested + "}";
  EXPECT_FALSE(parse_detokenize_request(nlohmann::json::parse(tokens)).is_ok());
}

TEST(OpenAIProtocol, ErrorObjectShape) {
  ApiError error = ApiError::invalid("n must be at least 1, got 0", "n");
  json body = error.to_json();
  EXPECT_EQ(body["error"]["message"], "n must be at least 1, got 0");
  EXPECT_EQ(body["error"]["type"], "invalid_request_error");
  EXPECT_EQ(body["error"]["param"], "n");
  EXPECT_TRUE(body["error"]["code"].is_null());
  EXPECT_TRUE(ApiError::invalid("x").to_json()["error"]["param"].is_null());
}

TEST(OpenAIProtocol, ModelName) {
  EXPECT_FALSE(check_model_name("", {"tiny"}).has_value());
  EXPECT_FALSE(check_model_name("tiny", {"tiny", "alias"}).has_value());
  std::optional<ApiError> error = check_model_name("gpt-4", {"tiny"});
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->http_status, 404);
  EXPECT_EQ(error->code, "model_not_found");
  EXPECT_NE(error->message.find("gpt-4"), std::string::npos);
}

TEST(OpenAIProtocol, RequestParamsForOneChoice) {
  const ModelLimits limits{64, 100};
  OpenAIRequest r = parse_ok(completion({{"temperature", 0}, {"stop", "x"}, {"logprobs", 2}, {"ignore_eos", true},
                                         {"seed", 7}, {"n", 3}}));
  ApiResult<RequestParams> params = make_request_params(r, {1, 2, 3}, 2, limits, 999);
  ASSERT_TRUE(params.is_ok()) << params.error().message;
  EXPECT_EQ(params->prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(params->max_tokens, 16);  // OpenAI's default for completions
  EXPECT_EQ(params->sampling.seed, 9u);  // seed + choice index
  EXPECT_FLOAT_EQ(params->sampling.temperature, 0.0f);
  EXPECT_EQ(params->stop, (std::vector<std::string>{"x"}));
  EXPECT_EQ(params->logprobs, 2);
  EXPECT_TRUE(params->ignore_eos);
  EXPECT_TRUE(params->sampling.validate().is_ok());

  OpenAIRequest unseeded = parse_ok(completion());
  EXPECT_EQ(make_request_params(unseeded, {1}, 0, limits, 999)->sampling.seed, 999u);
  // The default is capped by the context; chat's default is the rest of the context.
  EXPECT_EQ(make_request_params(unseeded, std::vector<int32_t>(60, 1), 0, limits, 0)->max_tokens, 4);
  OpenAIRequest chat_request = parse_ok(chat(), ApiEndpoint::ChatCompletions);
  EXPECT_EQ(make_request_params(chat_request, std::vector<int32_t>(10, 1), 0, limits, 0)->max_tokens, 54);
}

TEST(OpenAIProtocol, RequestParamsRejectWhatTheModelCannotDo) {
  const ModelLimits limits{64, 100};
  OpenAIRequest r = parse_ok(completion({{"max_tokens", 60}}));
  ApiResult<RequestParams> too_long = make_request_params(r, std::vector<int32_t>(10, 1), 0, limits, 0);
  ASSERT_FALSE(too_long.is_ok());
  EXPECT_EQ(too_long.error().http_status, 400);
  EXPECT_EQ(too_long.error().param, "max_tokens");
  EXPECT_NE(too_long.error().message.find("maximum context length is 64"), std::string::npos);

  OpenAIRequest plain = parse_ok(completion());
  ApiResult<RequestParams> prompt_too_long = make_request_params(plain, std::vector<int32_t>(64, 1), 0, limits, 0);
  ASSERT_FALSE(prompt_too_long.is_ok());
  EXPECT_EQ(prompt_too_long.error().param, "prompt");
  EXPECT_EQ(prompt_too_long.error().code, "context_length_exceeded");

  ApiResult<RequestParams> out_of_vocab = make_request_params(plain, {1, 100}, 0, limits, 0);
  ASSERT_FALSE(out_of_vocab.is_ok());
  EXPECT_NE(out_of_vocab.error().message.find("100"), std::string::npos);
  EXPECT_FALSE(make_request_params(plain, {}, 0, limits, 0).is_ok());
  OpenAIRequest bad_stop = parse_ok(completion({{"stop_token_ids", {100}}}));
  EXPECT_EQ(make_request_params(bad_stop, {1}, 0, limits, 0).error().param, "stop_token_ids");
}

TEST(OpenAIProtocol, TokenizeBodies) {
  ApiResult<TokenizeRequest> text = parse_tokenize_request(json{{"prompt", "hi"}, {"add_special_tokens", false}});
  ASSERT_TRUE(text.is_ok());
  EXPECT_FALSE(text->is_chat);
  EXPECT_EQ(text->prompt, "hi");
  EXPECT_FALSE(text->add_special_tokens);
  ApiResult<TokenizeRequest> chat_body =
      parse_tokenize_request(json{{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})}});
  ASSERT_TRUE(chat_body.is_ok());
  EXPECT_TRUE(chat_body->is_chat);
  EXPECT_FALSE(parse_tokenize_request(json::object()).is_ok());
  EXPECT_FALSE(parse_tokenize_request(json{{"prompt", 3}}).is_ok());
  EXPECT_FALSE(parse_tokenize_request(json{{"prompt", "a"}, {"messages", json::array()}}).is_ok());

  ApiResult<DetokenizeRequest> ids = parse_detokenize_request(json{{"tokens", {1, 2}}});
  ASSERT_TRUE(ids.is_ok());
  EXPECT_EQ(ids->tokens, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(parse_detokenize_request(json{{"tokens", "1,2"}}).error().param, "tokens");
  EXPECT_EQ(parse_detokenize_request(json{{"tokens", {-1}}}).error().param, "tokens");
}

}  // namespace
}  // namespace anvil::server
