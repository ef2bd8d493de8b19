// Response shapes of the OpenAI-compatible API: bodies, streaming chunks, usage and logprobs.
#include "server/openai_response.h"

#include <gtest/gtest.h>

#include "server/api_error.h"

namespace anvil::server {
namespace {

using nlohmann::json;

std::string fake_token_text(int32_t id) {
  if (id == 99) return "\xe2\x80";  // half of a three-byte character
  return "t" + std::to_string(id);
}

ResponseHeader header(ApiEndpoint endpoint) { return {endpoint, "id-1", 1700000000, "tiny"}; }

TEST(OpenAIResponse, Ids) {
  const std::string a = make_response_id(ApiEndpoint::Completions);
  const std::string b = make_response_id(ApiEndpoint::ChatCompletions);
  EXPECT_EQ(a.rfind("cmpl-", 0), 0u);
  EXPECT_EQ(b.rfind("chatcmpl-", 0), 0u);
  EXPECT_EQ(a.size(), 5u + 32u);
  EXPECT_NE(a.substr(5), make_response_id(ApiEndpoint::Completions).substr(5));
  EXPECT_GT(unix_seconds_now(), 1600000000);
}

TEST(OpenAIResponse, CompletionBody) {
  ChoiceOutput choice{0, "hello", {5, 6}, {}, FinishReason::Length, ""};
  json body = completion_body(header(ApiEndpoint::Completions), {choice}, {3, 2, 0}, false, fake_token_text);
  EXPECT_EQ(body["object"], "text_completion");
  EXPECT_EQ(body["id"], "id-1");
  EXPECT_EQ(body["created"], 1700000000);
  EXPECT_EQ(body["model"], "tiny");
  ASSERT_EQ(body["choices"].size(), 1u);
  EXPECT_EQ(body["choices"][0]["index"], 0);
  EXPECT_EQ(body["choices"][0]["text"], "hello");
  EXPECT_TRUE(body["choices"][0]["logprobs"].is_null());
  EXPECT_EQ(body["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(body["usage"], (json{{"prompt_tokens", 3}, {"completion_tokens", 2}, {"total_tokens", 5}}));
}

// stop_reason: the stop string, the stop token id as an integer (as vLLM), or null.
TEST(OpenAIResponse, StopReasonIsStringIdOrNull) {
  EXPECT_EQ(StopReason("END").to_json(), "END");
  EXPECT_EQ(StopReason::token(7).to_json(), 7);
  EXPECT_TRUE(StopReason().to_json().is_null());
  ChoiceOutput choice{0, "x", {7}, {}, FinishReason::Stop, StopReason::token(7)};
  json body = completion_body(header(ApiEndpoint::Completions), {choice}, {1, 1, 0}, false, fake_token_text);
  EXPECT_EQ(body["choices"][0]["stop_reason"], 7);
  json last = completion_chunk(header(ApiEndpoint::Completions), 0, "", nullptr, FinishReason::Stop, StopReason::token(7));
  EXPECT_EQ(last["choices"][0]["stop_reason"], 7);
}

TEST(OpenAIResponse, ChatBody) {
  ChoiceOutput choice{1, "hi there", {5}, {}, FinishReason::Stop, "\n"};
  json body = chat_body(header(ApiEndpoint::ChatCompletions), {choice}, {4, 1, 2}, false, fake_token_text);
  EXPECT_EQ(body["object"], "chat.completion");
  EXPECT_EQ(body["choices"][0]["index"], 1);
  EXPECT_EQ(body["choices"][0]["message"], (json{{"role", "assistant"}, {"content", "hi there"}}));
  EXPECT_EQ(body["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(body["choices"][0]["stop_reason"], "\n");
  EXPECT_EQ(body["usage"]["total_tokens"], 5);
  EXPECT_EQ(body["usage"]["prompt_tokens_details"]["cached_tokens"], 2);
}

TEST(OpenAIResponse, CompletionLogprobs) {
  std::vector<TokenLogprobs> logprobs = {{{5, -0.5f}, {{5, -0.5f}, {7, -1.0f}}}, {{6, -0.25f}, {{8, -0.1f}}}};
  int64_t offset = 10;
  json lp = completion_logprobs_json({5, 6}, logprobs, fake_token_text, offset);
  EXPECT_EQ(lp["tokens"], (json{"t5", "t6"}));
  EXPECT_EQ(lp["token_logprobs"], (json{-0.5, -0.25}));
  EXPECT_EQ(lp["text_offset"], (json{10, 12}));
  EXPECT_EQ(offset, 14);
  EXPECT_EQ(lp["top_logprobs"][0], (json{{"t5", -0.5}, {"t7", -1.0}}));
  EXPECT_EQ(lp["top_logprobs"][1], (json{{"t8", -0.1f}, {"t6", -0.25}}));
}

TEST(OpenAIResponse, ChatLogprobs) {
  std::vector<TokenLogprobs> logprobs = {{{99, -0.5f}, {{99, -0.5f}, {5, -2.0f}}}};
  json lp = chat_logprobs_json({99}, logprobs, fake_token_text);
  ASSERT_EQ(lp["content"].size(), 1u);
  const json& entry = lp["content"][0];
  EXPECT_EQ(entry["token"], "bytes:\\xe2\\x80");
  EXPECT_EQ(entry["logprob"], -0.5);
  EXPECT_EQ(entry["bytes"], (json{0xe2, 0x80}));
  ASSERT_EQ(entry["top_logprobs"].size(), 2u);
  EXPECT_EQ(entry["top_logprobs"][1], (json{{"token", "t5"}, {"logprob", -2.0}, {"bytes", {'t', '5'}}}));
  // The whole thing serializes (no invalid UTF-8 left in strings).
  EXPECT_NO_THROW((void)lp.dump());
}

TEST(OpenAIResponse, InvalidUtf8NeverThrows) {
  json body = {{"text", std::string("a\xff")}};
  EXPECT_EQ(dump_json(body), "{\"text\":\"a\xef\xbf\xbd\"}");
}

TEST(OpenAIResponse, CompletionChunks) {
  json chunk = completion_chunk(header(ApiEndpoint::Completions), 2, "ab", nullptr, FinishReason::None, "");
  EXPECT_EQ(chunk["object"], "text_completion");
  EXPECT_EQ(chunk["choices"][0]["index"], 2);
  EXPECT_EQ(chunk["choices"][0]["text"], "ab");
  EXPECT_TRUE(chunk["choices"][0]["finish_reason"].is_null());
  json last = completion_chunk(header(ApiEndpoint::Completions), 0, "", nullptr, FinishReason::Length, "");
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
}

TEST(OpenAIResponse, ChatChunks) {
  const ResponseHeader h = header(ApiEndpoint::ChatCompletions);
  json role = chat_role_chunk(h, 0);
  EXPECT_EQ(role["object"], "chat.completion.chunk");
  EXPECT_EQ(role["choices"][0]["delta"]["role"], "assistant");
  json content = chat_chunk(h, 0, "Hi", nullptr, FinishReason::None, "");
  EXPECT_EQ(content["choices"][0]["delta"], (json{{"content", "Hi"}}));
  EXPECT_TRUE(content["choices"][0]["finish_reason"].is_null());
  json last = chat_chunk(h, 0, "", nullptr, FinishReason::Stop, "");
  EXPECT_EQ(last["choices"][0]["delta"], json::object());
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  json usage = usage_chunk(h, {3, 4, 0});
  EXPECT_TRUE(usage["choices"].is_array() && usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);
}

TEST(OpenAIResponse, SseFraming) {
  EXPECT_EQ(sse_event(json{{"a", 1}}), "data: {\"a\":1}\n\n");
  EXPECT_STREQ(kSseDone, "data: [DONE]\n\n");
}

TEST(OpenAIResponse, TokenDisplayText) {
  EXPECT_EQ(token_display_text(" the"), " the");
  EXPECT_EQ(token_display_text("\xc3"), "bytes:\\xc3");
}

}  // namespace
}  // namespace anvil::server
