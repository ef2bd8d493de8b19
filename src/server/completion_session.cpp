// One completion request in flight: submission (all-or-nothing), output assembly, SSE events,
// metrics at the end, and cancellation of whatever is left when the client goes away.
#include "server/completion_session.h"

#include <fmt/format.h>

#include <random>

#include "server/prompt_encoding.h"

namespace anvil::server {
namespace {

double seconds_between(std::chrono::steady_clock::time_point from, std::chrono::steady_clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

StopReason stop_reason_of(const RequestOutput& output) {
  return output.stop_token_id >= 0 ? StopReason::token(output.stop_token_id) : StopReason(output.stop_reason);
}

}  // namespace

CompletionSession::CompletionSession(const ServingContext& context, OpenAIRequest request, Clock::time_point arrival)
    : context_(context), request_(std::move(request)), arrival_(arrival) {
  header_.endpoint = request_.endpoint;
  header_.id = make_response_id(request_.endpoint);
  header_.created = unix_seconds_now();
  header_.model = request_.model.empty() ? context.display_name() : request_.model;
}

ApiResult<std::unique_ptr<CompletionSession>> CompletionSession::start(const ServingContext& context,
                                                                       OpenAIRequest request,
                                                                       Clock::time_point arrival) {
  if (context.engine == nullptr)
    return ApiError{503, "the model is still loading; retry shortly", "service_unavailable", "", ""};
  if (std::optional<ApiError> error = check_model_name(request.model, context.served_names)) return *error;

  if (!request.stop.empty() && context.tokenizer == nullptr)
    return ApiError::invalid("stop strings need the model's tokenizer, and this model carries none; use "
                             "stop_token_ids",
                             "stop");
  // Token ids of every prompt, before anything reaches the engine.
  std::vector<std::vector<int32_t>> prompts;
  std::vector<std::string> echo_texts;
  if (request.endpoint == ApiEndpoint::Completions) {
    for (const PromptInput& prompt : request.prompts) {
      ApiResult<std::vector<int32_t>> ids = encode_prompt(context, prompt);
      if (!ids) return ids.error();
      std::string echo;
      if (request.echo)
        echo = !prompt.is_tokens ? prompt.text : context.tokenizer ? context.tokenizer->decode(*ids) : "";
      prompts.push_back(std::move(ids).value());
      echo_texts.push_back(std::move(echo));
    }
  } else {
    ApiResult<std::vector<int32_t>> ids = encode_chat(context, request.messages, request.add_generation_prompt);
    if (!ids) return ids.error();
    prompts.push_back(std::move(ids).value());
    echo_texts.emplace_back();
  }

  std::unique_ptr<CompletionSession> session(new CompletionSession(context, std::move(request), arrival));
  const OpenAIRequest& r = session->request_;
  session->choices_.resize(static_cast<size_t>(r.choice_count()));
  for (size_t i = 0; i < session->choices_.size(); ++i) {
    Choice& choice = session->choices_[i];
    choice.output.index = static_cast<int64_t>(i);
    choice.prompt_tokens = static_cast<int64_t>(prompts[i / r.n].size());
    choice.echo_text = echo_texts[i / r.n];
    choice.text_offset = static_cast<int64_t>(choice.echo_text.size());
    choice.admitted_waiting = false;
  }
  ApiResult<bool> submitted = session->submit_all(std::move(prompts));
  if (!submitted) return submitted.error();
  return session;
}

ApiResult<bool> CompletionSession::submit_all(std::vector<std::vector<int32_t>> prompts) {
  // Every choice's parameters first: a bad one fails the request before anything runs.
  std::random_device entropy;
  std::mt19937_64 seeds((static_cast<uint64_t>(entropy()) << 32) ^ entropy());
  std::vector<RequestParams> params;
  for (size_t i = 0; i < choices_.size(); ++i) {
    ApiResult<RequestParams> p =
        make_request_params(request_, prompts[i / request_.n], static_cast<int64_t>(i), context_.limits, seeds());
    if (!p) return p.error();
    params.push_back(std::move(p).value());
  }
  const int64_t count = static_cast<int64_t>(choices_.size());
  if (!context_.admission->try_admit(count))
    return ApiError{429,
                    fmt::format("the server is at capacity ({} waiting for the engine, --max-waiting {}); "
                                "retry later",
                                context_.admission->waiting(), context_.admission->max_waiting()),
                    "rate_limit_error", "", "rate_limit_exceeded"};
  for (Choice& choice : choices_) choice.admitted_waiting = true;
  unfinished_ = count;
  for (size_t i = 0; i < choices_.size(); ++i) {
    std::shared_ptr<OutputQueue> queue = queue_;
    const int64_t index = static_cast<int64_t>(i);
    Result<RequestId> id = context_.engine->submit(std::move(params[i]), [queue, index](const RequestOutput& output) {
      queue->push(index, output);
    });
    if (!id) {
      // The destructor cancels the choices already submitted and frees every waiting slot.
      const std::string& message = id.status().message();
      if (message.find("shutting down") != std::string::npos)
        return ApiError{503, "the server is shutting down", "service_unavailable", "", ""};
      return ApiError::invalid(message, request_.endpoint == ApiEndpoint::Completions ? "prompt" : "messages");
    }
    choices_[i].engine_id = *id;
  }
  return true;
}

CompletionSession::~CompletionSession() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (Choice& choice : choices_) {
    if (!choice.finished && choice.engine_id != 0) context_.engine->cancel(choice.engine_id);
    if (choice.admitted_waiting) context_.admission->release();
    if (!choice.finished && choice.engine_id != 0 && context_.metrics)
      context_.metrics->record_choice(FinishReason::Abort, -1, -1);
  }
  const bool ran = !choices_.empty() && choices_[0].engine_id != 0;  // not a request refused at submission
  if (ran && !request_recorded_ && unfinished_ > 0 && context_.metrics) {
    const UsageCounts u = usage();
    context_.metrics->record_request(seconds_between(arrival_, Clock::now()), u.prompt_tokens, u.completion_tokens);
  }
}

void CompletionSession::cancel() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Choice& choice : choices_)
    if (!choice.finished && choice.engine_id != 0) context_.engine->cancel(choice.engine_id);
}

bool CompletionSession::all_finished() const { return unfinished_ == 0; }

std::string CompletionSession::token_text(int32_t id) const {
  if (context_.tokenizer == nullptr) return fmt::format("token_id:{}", id);
  return context_.tokenizer->token_bytes(id);
}

UsageCounts CompletionSession::usage() const {
  UsageCounts u;
  for (size_t i = 0; i < choices_.size(); ++i) {
    // A prompt counts once however many choices it has, as in OpenAI's usage.
    if (i % static_cast<size_t>(request_.n) == 0) {
      u.prompt_tokens += choices_[i].prompt_tokens;
      u.cached_tokens += choices_[i].cached_tokens;
    }
    u.completion_tokens += choices_[i].completion_tokens;
  }
  return u;
}

std::string CompletionSession::apply(const TimedOutput& item) {
  Choice& choice = choices_[static_cast<size_t>(item.choice)];
  if (choice.finished) return "";
  const RequestOutput& output = item.output;
  if (choice.admitted_waiting) {
    choice.admitted_waiting = false;
    context_.admission->release();
  }
  if (!output.new_tokens.empty()) {
    if (choice.first_token_at == Clock::time_point{}) choice.first_token_at = item.at;
    choice.last_token_at = item.at;
  }
  choice.prompt_tokens = output.prompt_tokens;
  choice.completion_tokens = output.completion_tokens;
  choice.cached_tokens = output.cached_prompt_tokens;

  std::string events;
  if (request_.stream) {
    events = stream_events_for(choice, output);
  } else {
    ChoiceOutput& out = choice.output;
    if (out.text.empty() && out.tokens.empty()) out.text = choice.echo_text;
    out.text += output.new_text;
    out.tokens.insert(out.tokens.end(), output.new_tokens.begin(), output.new_tokens.end());
    out.logprobs.insert(out.logprobs.end(), output.new_logprobs.begin(), output.new_logprobs.end());
  }
  if (output.finished()) {
    choice.finished = true;
    choice.output.finish = output.finish;
    choice.output.stop_reason = stop_reason_of(output);
    if (output.finish == FinishReason::Error)
      choice.error = output.error.empty() ? "unknown engine error" : output.error;
    --unfinished_;
    on_choice_finished(choice);
  }
  return events;
}

std::string CompletionSession::stream_events_for(Choice& choice, const RequestOutput& output) {
  const bool completions = request_.endpoint == ApiEndpoint::Completions;
  if (output.finish == FinishReason::Error) {
    ApiError error{500, "generation failed: " + (output.error.empty() ? "unknown engine error" : output.error),
                   "internal_error", "", ""};
    return sse_event(error.to_json());
  }
  nlohmann::json logprobs = nullptr;
  if (request_.logprobs >= 0 && !output.new_tokens.empty()) {
    const TokenTextFn text_of = [this](int32_t id) { return token_text(id); };
    logprobs = completions
                   ? completion_logprobs_json(output.new_tokens, output.new_logprobs, text_of, choice.text_offset)
                   : chat_logprobs_json(output.new_tokens, output.new_logprobs, text_of);
  }
  std::string text = output.new_text;
  if (!choice.sent_first_text && !choice.echo_text.empty()) text = choice.echo_text + text;
  // Tokens whose text is held back (half a character, a possible stop string) make no chunk.
  if (text.empty() && logprobs.is_null() && !output.finished()) return "";
  if (!text.empty()) choice.sent_first_text = true;
  const int64_t index = choice.output.index;
  return sse_event(completions ? completion_chunk(header_, index, text, std::move(logprobs), output.finish,
                                                  stop_reason_of(output))
                               : chat_chunk(header_, index, text, std::move(logprobs), output.finish,
                                            stop_reason_of(output)));
}

void CompletionSession::on_choice_finished(Choice& choice) {
  if (context_.metrics == nullptr) return;
  const bool has_first = choice.first_token_at != Clock::time_point{};
  const double ttft = has_first ? seconds_between(arrival_, choice.first_token_at) : -1.0;
  const double tpot = has_first && choice.completion_tokens > 1
                          ? seconds_between(choice.first_token_at, choice.last_token_at) /
                                static_cast<double>(choice.completion_tokens - 1)
                          : -1.0;
  context_.metrics->record_choice(choice.output.finish, ttft, tpot);
  if (all_finished() && !request_recorded_) {
    request_recorded_ = true;
    const UsageCounts u = usage();
    context_.metrics->record_request(seconds_between(arrival_, Clock::now()), u.prompt_tokens, u.completion_tokens);
  }
}

std::string CompletionSession::closing_events() {
  std::string events;
  if (request_.include_usage) events += sse_event(usage_chunk(header_, usage()));
  events += kSseDone;
  done_sent_ = true;
  return events;
}

std::string CompletionSession::next_events(std::chrono::milliseconds timeout) {
  std::string events;
  if (!role_chunks_sent_) {
    std::lock_guard<std::mutex> lock(mutex_);
    role_chunks_sent_ = true;
    if (request_.endpoint == ApiEndpoint::ChatCompletions)
      for (const Choice& choice : choices_) events += sse_event(chat_role_chunk(header_, choice.output.index));
  }
  if (done_sent_) return events;
  if (!all_finished()) {
    std::vector<TimedOutput> items = queue_->pop_all(events.empty() ? timeout : std::chrono::milliseconds(0));
    std::lock_guard<std::mutex> lock(mutex_);
    for (const TimedOutput& item : items) events += apply(item);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  if (all_finished() && !done_sent_) events += closing_events();
  return events;
}

ApiResult<nlohmann::json> CompletionSession::wait_for_body(const std::function<bool()>& client_gone) {
  while (!all_finished()) {
    if (client_gone && client_gone()) {
      cancel();
      return ApiError{499, "the client disconnected; request cancelled", "client_closed_request", "", ""};
    }
    std::vector<TimedOutput> items = queue_->pop_all(std::chrono::milliseconds(200));
    std::lock_guard<std::mutex> lock(mutex_);
    for (const TimedOutput& item : items) apply(item);
  }
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Choice& choice : choices_)
    if (!choice.error.empty())
      return ApiError{500, "generation failed: " + choice.error, "internal_error", "", ""};
  std::vector<ChoiceOutput> outputs;
  for (const Choice& choice : choices_) outputs.push_back(choice.output);
  const TokenTextFn text_of = [this](int32_t id) { return token_text(id); };
  const bool with_logprobs = request_.logprobs >= 0;
  return request_.endpoint == ApiEndpoint::Completions
             ? completion_body(header_, outputs, usage(), with_logprobs, text_of)
             : chat_body(header_, outputs, usage(), with_logprobs, text_of);
}

CompletionSession::Summary CompletionSession::summary() const {
  std::lock_guard<std::mutex> lock(mutex_);
  Summary s;
  const UsageCounts u = usage();
  s.prompt_tokens = u.prompt_tokens;
  s.completion_tokens = u.completion_tokens;
  Clock::time_point first{};
  for (const Choice& choice : choices_) {
    if (choice.first_token_at != Clock::time_point{} && (first == Clock::time_point{} || choice.first_token_at < first))
      first = choice.first_token_at;
    if (s.error.empty()) s.error = choice.error;
  }
  if (first != Clock::time_point{}) s.ttft_ms = seconds_between(arrival_, first) * 1000.0;
  if (!choices_.empty()) s.finish_reason = finish_reason_name(choices_[0].output.finish);
  return s;
}

}  // namespace anvil::server
