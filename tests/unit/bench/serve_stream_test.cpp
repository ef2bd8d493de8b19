// SSE framing under arbitrary splits and the reading of OpenAI completion chunks (text, usage, errors).
#include "bench/serve_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace anvil {
namespace {

std::vector<std::string> parse_in_pieces(const std::string& stream, size_t piece) {
  SseParser parser;
  std::vector<std::string> events;
  auto collect = [&](std::string_view data) { events.emplace_back(data); };
  for (size_t i = 0; i < stream.size(); i += piece) parser.feed(std::string_view(stream).substr(i, piece), collect);
  parser.finish(collect);
  return events;
}

TEST(ServeSse, EventsSurviveAnySplit) {
  const std::string stream =
      ": keep-alive\n\ndata: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\nevent: x\nid: 7\ndata: line1\ndata: line2\n\n"
      "data: [DONE]\n\n";
  const std::vector<std::string> expected = {"{\"a\":1}", "{\"b\":2}", "line1\nline2", "[DONE]"};
  for (size_t piece : {1u, 2u, 3u, 7u, 1000u}) EXPECT_EQ(parse_in_pieces(stream, piece), expected) << piece;
}

TEST(ServeSse, UnterminatedLastEventCountsAtTheEnd) {
  EXPECT_EQ(parse_in_pieces("data: {\"x\":1}", 4), std::vector<std::string>{"{\"x\":1}"});
  EXPECT_TRUE(parse_in_pieces("", 1).empty());
}

TEST(ServeStream, CompletionChunksUsageAndDone) {
  CompletionStreamState s(false);
  s.on_event(R"({"choices":[{"index":0,"text":"Hel","finish_reason":null}]})", 0.1);
  s.on_event(R"({"choices":[{"index":0,"text":"","finish_reason":null}]})", 0.12);  // held back: no arrival
  s.on_event(R"({"choices":[{"index":0,"text":"lo","finish_reason":"length"}]})", 0.15);
  s.on_event(R"({"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4,"total_tokens":13}})", 0.16);
  s.on_event("[DONE]", 0.17);
  EXPECT_EQ(s.content_arrivals_s(), (std::vector<double>{0.1, 0.15}));
  EXPECT_EQ(*s.prompt_tokens(), 9);
  EXPECT_EQ(*s.completion_tokens(), 4);
  EXPECT_EQ(*s.done_at_s(), 0.17);
  EXPECT_TRUE(s.error().empty());
}

TEST(ServeStream, ChatRoleChunkAndBareFinishAreNotTokens) {
  CompletionStreamState s(true);
  s.on_event(R"({"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]})", 0.01);
  s.on_event(R"({"choices":[{"index":0,"delta":{"content":"Hi"}}]})", 0.2);
  s.on_event(R"({"choices":[{"index":0,"delta":{"reasoning_content":"hmm"}}]})", 0.25);
  s.on_event(R"({"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]})", 0.3);
  s.on_event(R"({"choices":[{"index":0,"delta":{"content":null}}],"usage":null})", 0.31);
  EXPECT_EQ(s.content_arrivals_s(), (std::vector<double>{0.2, 0.25}));
  EXPECT_FALSE(s.completion_tokens().has_value());
  EXPECT_FALSE(s.done_at_s().has_value());
}

TEST(ServeStream, ErrorsInTheStream) {
  CompletionStreamState s(false);
  s.on_event(R"({"error":{"message":"out of KV cache","type":"InternalServerError"}})", 0.1);
  EXPECT_EQ(s.error(), "error in the stream: out of KV cache");
  CompletionStreamState garbage(false);
  garbage.on_event("not json", 0.1);
  EXPECT_NE(garbage.error().find("not a JSON object"), std::string::npos);
}

TEST(ServeStream, ErrorBodyMessages) {
  EXPECT_EQ(error_body_message(R"({"error":{"message":"The model 'x' does not exist","code":404}})"),
            "The model 'x' does not exist");
  EXPECT_EQ(error_body_message(R"({"error":"bad request"})"), "bad request");
  EXPECT_EQ(error_body_message(R"({"detail":"Not Found"})"), "Not Found");
  EXPECT_EQ(error_body_message("Internal Server Error\n"), "Internal Server Error");
  EXPECT_EQ(error_body_message(""), "(empty body)");
}

}  // namespace
}  // namespace anvil
