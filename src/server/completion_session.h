// CompletionSession: one /v1/completions or /v1/chat/completions request in flight: its engine
// requests (prompts x n choices), their outputs, and the response body or SSE stream they make.
#pragma once

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/api_error.h"
#include "server/openai_protocol.h"
#include "server/openai_response.h"
#include "server/output_queue.h"
#include "server/serving_context.h"

namespace anvil::server {

class CompletionSession {
 public:
  using Clock = std::chrono::steady_clock;

  // Encodes the prompts, checks them against the model, reserves waiting slots (429 when the
  // queue is full) and submits one engine request per choice. Every error comes back here,
  // before a byte of the response is written.
  static ApiResult<std::unique_ptr<CompletionSession>> start(const ServingContext& context, OpenAIRequest request,
                                                             Clock::time_point arrival);
  ~CompletionSession();  // cancels the engine requests that have not finished
  CompletionSession(const CompletionSession&) = delete;
  CompletionSession& operator=(const CompletionSession&) = delete;

  const std::string& id() const { return header_.id; }
  bool streaming() const { return request_.stream; }

  // Non-streaming: waits for every choice and returns the whole body (500 when the engine failed).
  // client_gone is asked a few times a second; when it says yes the requests are cancelled and
  // the answer is 499 (nobody is left to read it; the access log and metrics record it).
  ApiResult<nlohmann::json> wait_for_body(const std::function<bool()>& client_gone = {});

  // Streaming: the SSE text that became ready, waiting up to `timeout` for the engine; "" when
  // nothing came. The text that ends with "data: [DONE]" sets finished().
  std::string next_events(std::chrono::milliseconds timeout);
  bool finished() const { return done_sent_; }

  // The client went away: the engine drops the requests and frees their KV blocks.
  void cancel();

  // For the access log.
  struct Summary {
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    double ttft_ms = -1;             // first token of any choice
    std::string finish_reason;       // of choice 0
    std::string error;               // an engine failure, if any
  };
  Summary summary() const;

 private:
  struct Choice {
    RequestId engine_id = 0;
    int64_t prompt_tokens = 0;
    int64_t completion_tokens = 0;
    int64_t cached_tokens = 0;
    bool admitted_waiting = true;    // holds a waiting slot until its first output
    bool finished = false;
    bool sent_first_text = false;    // streaming: echo and the role chunk go first
    int64_t text_offset = 0;         // completions logprobs: offset of the next token's text
    std::string echo_text;           // completions with echo: the prompt's text
    std::string error;
    Clock::time_point first_token_at{};
    Clock::time_point last_token_at{};
    ChoiceOutput output;
  };

  CompletionSession(const ServingContext& context, OpenAIRequest request, Clock::time_point arrival);
  ApiResult<bool> submit_all(std::vector<std::vector<int32_t>> prompts);
  // Folds one output into its choice; returns the SSE events it makes when streaming.
  std::string apply(const TimedOutput& item);
  std::string stream_events_for(Choice& choice, const RequestOutput& output);
  std::string closing_events();
  void on_choice_finished(Choice& choice);
  bool all_finished() const;
  UsageCounts usage() const;
  std::string token_text(int32_t id) const;

  const ServingContext& context_;
  OpenAIRequest request_;
  ResponseHeader header_;
  Clock::time_point arrival_;
  std::shared_ptr<OutputQueue> queue_ = std::make_shared<OutputQueue>();
  std::vector<Choice> choices_;
  int64_t unfinished_ = 0;
  bool role_chunks_sent_ = false;
  bool done_sent_ = false;
  bool request_recorded_ = false;
  mutable std::mutex mutex_;  // summary() may be read from another thread than the one streaming
};

}  // namespace anvil::server
