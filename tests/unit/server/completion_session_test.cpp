// CompletionSession over a real engine (dummy:tiny-llama): greedy output equals generate(), the
// SSE stream carries the same text as the body, choices, usage, errors, 429 and cancellation.
#include "server/completion_session.h"

#include <gtest/gtest.h>

#include <thread>

#include "engine/generate.h"
#include "model/presets.h"
#include "server/tokenize_handlers.h"

namespace anvil::server {
namespace {

using nlohmann::json;

class CompletionSessionTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    Result<Checkpoint> checkpoint = create_dummy_checkpoint("dummy:tiny-llama");
    ASSERT_TRUE(checkpoint.is_ok()) << checkpoint.status().message();
    auto shared = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
    model_ = DecoderModel::create(shared).value().release();
    tokenizer_ = Tokenizer::create(shared->vocab).value().release();
  }
  static void TearDownTestSuite() {
    delete tokenizer_;
    delete model_;
  }

  void SetUp() override { make_engine(256); }
  void TearDown() override {
    if (engine_) engine_->stop();
  }

  void make_engine(int64_t max_waiting) {
    if (engine_) engine_->stop();
    EngineOptions options;
    options.kv_cache_bytes = int64_t{8} << 20;
    options.max_num_seqs = 16;
    engine_ = Engine::create(*model_, tokenizer_, pool_, options).value();
    engine_->start();
    admission_ = std::make_unique<AdmissionControl>(max_waiting);
    context_.engine = engine_.get();
    context_.tokenizer = tokenizer_;
    context_.served_names = {"tiny"};
    context_.chat_template = "chatml";
    context_.limits = {std::min<int64_t>(model_->config().context_length, engine_->kv_cache_capacity_tokens()),
                       model_->config().vocab_size};
    context_.admission = admission_.get();
    context_.metrics = &metrics_;
  }

  OpenAIRequest parse(const json& body, ApiEndpoint endpoint = ApiEndpoint::Completions) {
    ApiResult<OpenAIRequest> r = parse_openai_request(body, endpoint);
    EXPECT_TRUE(r.is_ok()) << (r.is_ok() ? "" : r.error().message);
    return std::move(r).value();
  }

  std::unique_ptr<CompletionSession> start(const json& body, ApiEndpoint endpoint = ApiEndpoint::Completions) {
    ApiResult<std::unique_ptr<CompletionSession>> s =
        CompletionSession::start(context_, parse(body, endpoint), std::chrono::steady_clock::now());
    EXPECT_TRUE(s.is_ok()) << (s.is_ok() ? "" : s.error().message);
    return s.is_ok() ? std::move(s).value() : nullptr;
  }

  ApiError start_error(const json& body, ApiEndpoint endpoint = ApiEndpoint::Completions) {
    ApiResult<std::unique_ptr<CompletionSession>> s =
        CompletionSession::start(context_, parse(body, endpoint), std::chrono::steady_clock::now());
    EXPECT_FALSE(s.is_ok());
    return s.is_ok() ? ApiError{} : s.error();
  }

  // The data: payloads of a whole stream, in order ([DONE] as the string "[DONE]").
  std::vector<json> drain(CompletionSession& session) {
    std::string text;
    for (int i = 0; i < 10000 && !session.finished(); ++i) text += session.next_events(std::chrono::milliseconds(100));
    EXPECT_TRUE(session.finished());
    std::vector<json> events;
    size_t pos = 0;
    while ((pos = text.find("data: ", pos)) != std::string::npos) {
      const size_t end = text.find("\n\n", pos);
      const std::string payload = text.substr(pos + 6, end - pos - 6);
      events.push_back(payload == "[DONE]" ? json("[DONE]") : json::parse(payload));
      pos = end + 2;
    }
    return events;
  }

  std::vector<int32_t> generate_alone(const std::vector<int32_t>& prompt, int64_t n) {
    GenerationRequest request;
    request.prompt = prompt;
    request.max_new_tokens = n;
    request.sampling.temperature = 0.0f;
    request.ignore_eos = true;
    Result<GenerationResult> result = generate(*model_, pool_, tokenizer_, request, {});
    EXPECT_TRUE(result.is_ok());
    return result->tokens;
  }

  static DecoderModel* model_;
  static Tokenizer* tokenizer_;
  ThreadPool pool_{2};
  std::unique_ptr<Engine> engine_;
  std::unique_ptr<AdmissionControl> admission_;
  ServerMetrics metrics_;
  ServingContext context_;
};

DecoderModel* CompletionSessionTest::model_ = nullptr;
Tokenizer* CompletionSessionTest::tokenizer_ = nullptr;

TEST_F(CompletionSessionTest, GreedyBodyEqualsGenerate) {
  auto session = start({{"prompt", "Hello world"}, {"max_tokens", 12}, {"temperature", 0}, {"ignore_eos", true}});
  ASSERT_TRUE(session);
  ApiResult<json> body = session->wait_for_body();
  ASSERT_TRUE(body.is_ok()) << body.error().message;
  const std::vector<int32_t> prompt = tokenizer_->encode("Hello world", true, true).value();
  const std::vector<int32_t> expected = generate_alone(prompt, 12);
  EXPECT_EQ((*body)["choices"][0]["text"], tokenizer_->decode(expected));
  EXPECT_EQ((*body)["choices"][0]["finish_reason"], "length");
  EXPECT_EQ((*body)["usage"]["prompt_tokens"], prompt.size());
  EXPECT_EQ((*body)["usage"]["completion_tokens"], 12);
  EXPECT_EQ((*body)["model"], "tiny");
  EXPECT_EQ(admission_->waiting(), 0);
}

TEST_F(CompletionSessionTest, StreamCarriesTheSameTextAsTheBody) {
  const json request = {{"prompt", {1, 70, 80, 90}}, {"max_tokens", 20}, {"temperature", 0}, {"ignore_eos", true}};
  auto whole = start(request);
  ApiResult<json> body = whole->wait_for_body();
  ASSERT_TRUE(body.is_ok());

  json streamed_request = request;
  streamed_request["stream"] = true;
  streamed_request["stream_options"] = {{"include_usage", true}};
  auto stream = start(streamed_request);
  std::vector<json> events = drain(*stream);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  const json& usage = events[events.size() - 2];
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"], (*body)["usage"]);
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    EXPECT_EQ(events[i]["object"], "text_completion");
    EXPECT_EQ(events[i]["id"], stream->id());
    text += events[i]["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(events[i]["choices"][0]["finish_reason"].is_null(), i + 3 < events.size());
  }
  EXPECT_EQ(events[events.size() - 3]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(text, (*body)["choices"][0]["text"]);
}

TEST_F(CompletionSessionTest, ChatStreamOpensWithTheRole) {
  const json request = {{"messages", json::array({{{"role", "user"}, {"content", "hi"}}})},
                        {"max_tokens", 6}, {"temperature", 0}, {"ignore_eos", true}, {"stream", true}};
  auto stream = start(request, ApiEndpoint::ChatCompletions);
  std::vector<json> events = drain(*stream);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0]["object"], "chat.completion.chunk");
  EXPECT_EQ(events[0]["choices"][0]["delta"]["role"], "assistant");
  EXPECT_EQ(events[events.size() - 2]["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(events.back(), "[DONE]");

  json whole_request = request;
  whole_request.erase("stream");
  auto whole = start(whole_request, ApiEndpoint::ChatCompletions);
  ApiResult<json> body = whole->wait_for_body();
  ASSERT_TRUE(body.is_ok());
  std::string text;
  for (size_t i = 1; i + 1 < events.size(); ++i) text += events[i]["choices"][0]["delta"].value("content", "");
  EXPECT_EQ(text, (*body)["choices"][0]["message"]["content"]);
  EXPECT_EQ((*body)["object"], "chat.completion");
  // usage.prompt_tokens is what /tokenize counts for the same messages.
  ApiResult<json> counted = handle_tokenize(context_, json{{"messages", request["messages"]}}.dump());
  ASSERT_TRUE(counted.is_ok());
  EXPECT_EQ((*body)["usage"]["prompt_tokens"], (*counted)["count"]);
}

TEST_F(CompletionSessionTest, PromptsTimesChoices) {
  auto session = start({{"prompt", {"a", "b b b"}}, {"n", 2}, {"max_tokens", 3}, {"seed", 5}, {"ignore_eos", true}});
  ApiResult<json> body = session->wait_for_body();
  ASSERT_TRUE(body.is_ok());
  ASSERT_EQ((*body)["choices"].size(), 4u);
  for (int i = 0; i < 4; ++i) EXPECT_EQ((*body)["choices"][i]["index"], i);
  const int64_t a = static_cast<int64_t>(tokenizer_->encode("a", true, true)->size());
  const int64_t b = static_cast<int64_t>(tokenizer_->encode("b b b", true, true)->size());
  EXPECT_EQ((*body)["usage"]["prompt_tokens"], a + b);  // each prompt once, not once per choice
  EXPECT_EQ((*body)["usage"]["completion_tokens"], 12);
}

TEST_F(CompletionSessionTest, LogprobsInBothShapes) {
  auto completion = start({{"prompt", "x"}, {"max_tokens", 3}, {"logprobs", 2}, {"ignore_eos", true}});
  ApiResult<json> body = completion->wait_for_body();
  ASSERT_TRUE(body.is_ok());
  const json& lp = (*body)["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"].size(), 3u);
  EXPECT_EQ(lp["token_logprobs"].size(), 3u);
  EXPECT_EQ(lp["text_offset"].size(), 3u);
  EXPECT_GE(lp["top_logprobs"][0].size(), 2u);
  for (const json& v : lp["token_logprobs"]) EXPECT_LE(v.get<double>(), 0.0);

  auto chat = start({{"messages", json::array({{{"role", "user"}, {"content", "x"}}})}, {"max_tokens", 2},
                     {"logprobs", true}, {"top_logprobs", 3}, {"ignore_eos", true}},
                    ApiEndpoint::ChatCompletions);
  ApiResult<json> chat_body = chat->wait_for_body();
  ASSERT_TRUE(chat_body.is_ok());
  const json& content = (*chat_body)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"].size(), 3u);
  EXPECT_TRUE(content[0]["bytes"].is_array());
}

TEST_F(CompletionSessionTest, StopStringEndsWithStop) {
  // Find a piece of the greedy text to use as a stop string.
  auto probe = start({{"prompt", {1, 70, 80}}, {"max_tokens", 30}, {"temperature", 0}, {"ignore_eos", true}});
  const std::string text = (*probe->wait_for_body())["choices"][0]["text"];
  ASSERT_GT(text.size(), 8u);
  const std::string stop = text.substr(4, 3);
  auto session = start({{"prompt", {1, 70, 80}}, {"max_tokens", 30}, {"temperature", 0}, {"ignore_eos", true},
                        {"stop", stop}});
  ApiResult<json> body = session->wait_for_body();
  ASSERT_TRUE(body.is_ok());
  EXPECT_EQ((*body)["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ((*body)["choices"][0]["stop_reason"], stop);
  EXPECT_EQ((*body)["choices"][0]["text"], text.substr(0, text.find(stop)));
}

TEST_F(CompletionSessionTest, ErrorsBeforeAnythingRuns) {
  EXPECT_EQ(start_error({{"model", "gpt-4"}, {"prompt", "x"}}).http_status, 404);
  std::vector<int32_t> long_prompt(300, 5);
  ApiError too_long = start_error({{"prompt", long_prompt}});
  EXPECT_EQ(too_long.http_status, 400);
  EXPECT_EQ(too_long.code, "context_length_exceeded");
  ApiError huge = start_error({{"prompt", "x"}, {"max_tokens", 100000}});
  EXPECT_EQ(huge.http_status, 400);
  EXPECT_EQ(huge.param, "max_tokens");
  EXPECT_EQ(start_error({{"prompt", {1, 99999}}}).http_status, 400);
  EXPECT_EQ(admission_->waiting(), 0);
  EXPECT_EQ(engine_->metrics().running + engine_->metrics().waiting, 0);
}

TEST_F(CompletionSessionTest, FullWaitingQueueAnswers429) {
  make_engine(2);
  EXPECT_TRUE(admission_->try_admit(2));  // two requests waiting already
  ApiError full = start_error({{"prompt", "x"}, {"max_tokens", 2}});
  EXPECT_EQ(full.http_status, 429);
  EXPECT_EQ(full.code, "rate_limit_exceeded");
  admission_->release(2);
  auto ok = start({{"prompt", "x"}, {"max_tokens", 2}});
  ASSERT_TRUE(ok);
  EXPECT_TRUE(ok->wait_for_body().is_ok());
  EXPECT_EQ(admission_->waiting(), 0);
}

TEST_F(CompletionSessionTest, DroppingASessionCancelsItsRequests) {
  auto session = start({{"prompt", {1, 2, 3}}, {"max_tokens", 200}, {"ignore_eos", true}, {"stream", true}, {"n", 3}});
  ASSERT_TRUE(session);
  (void)session->next_events(std::chrono::milliseconds(100));
  session.reset();  // the client went away
  for (int i = 0; i < 200; ++i) {
    const EngineMetrics m = engine_->metrics();
    if (m.running == 0 && m.waiting == 0 && m.kv_blocks_used == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  const EngineMetrics m = engine_->metrics();
  EXPECT_EQ(m.running, 0);
  EXPECT_EQ(m.kv_blocks_used, 0);
  EXPECT_EQ(admission_->waiting(), 0);
}

TEST_F(CompletionSessionTest, TokenizeAndDetokenize) {
  ApiResult<json> tokens = handle_tokenize(context_, R"({"prompt": "Hello world"})");
  ASSERT_TRUE(tokens.is_ok());
  EXPECT_EQ((*tokens)["tokens"], json(tokenizer_->encode("Hello world", true, true).value()));
  EXPECT_EQ((*tokens)["max_model_len"], context_.limits.context_length);
  ApiResult<json> text = handle_detokenize(context_, json{{"tokens", (*tokens)["tokens"]}}.dump());
  ASSERT_TRUE(text.is_ok());
  EXPECT_EQ((*text)["prompt"], "Hello world");
  EXPECT_EQ(handle_detokenize(context_, R"({"tokens": [100000]})").error().http_status, 400);
  EXPECT_EQ(handle_tokenize(context_, R"({"prompt": "x", "model": "nope"})").error().http_status, 404);
  EXPECT_EQ(handle_tokenize(context_, "{").error().http_status, 400);
}

}  // namespace
}  // namespace anvil::server
