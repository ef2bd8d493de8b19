// Reading an OpenAI streaming response: Server-Sent Events framing (bytes -> `data:` payloads) and
// the completion chunks inside them (content arrivals, usage, in-stream errors). No I/O.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace anvil {

// Incremental SSE parser: feed bytes as they arrive in any split; each complete event's data
// (its `data:` lines joined by '\n', per the SSE spec) goes to the callback. Comments (":...") and
// other fields (event:, id:, retry:) are ignored.
class SseParser {
 public:
  using EventFn = std::function<void(std::string_view data)>;
  void feed(std::string_view bytes, const EventFn& on_event);
  // The stream ended: an event not closed by a blank line still counts.
  void finish(const EventFn& on_event);

 private:
  void line(std::string_view text, const EventFn& on_event);
  void dispatch(const EventFn& on_event);

  std::string partial_line_;
  std::string data_;
  bool has_data_ = false;
};

// What the chunks of one streamed completion said.
class CompletionStreamState {
 public:
  explicit CompletionStreamState(bool chat) : chat_(chat) {}

  // One event's data, arrived `at_s` seconds after the request was sent.
  void on_event(std::string_view data, double at_s);

  // Arrivals of chunks carrying generated text: completions `choices[0].text`, chat
  // `choices[0].delta.content` (or reasoning_content). Chunks with empty text (chat's role
  // announcement, a bare finish_reason, the usage chunk) are not token arrivals.
  const std::vector<double>& content_arrivals_s() const { return arrivals_; }
  std::optional<int64_t> prompt_tokens() const { return prompt_tokens_; }
  std::optional<int64_t> completion_tokens() const { return completion_tokens_; }
  std::optional<double> done_at_s() const { return done_at_; }  // when [DONE] arrived
  const std::string& error() const { return error_; }            // an in-stream error, or unparsable data
  int64_t events() const { return events_; }

 private:
  bool chat_;
  std::vector<double> arrivals_;
  std::optional<int64_t> prompt_tokens_, completion_tokens_;
  std::optional<double> done_at_;
  std::string error_;
  int64_t events_ = 0;
};

// The message of an error body ({"error": {"message"}}, {"error": "..."}, {"message"}, {"detail"}),
// or the body's start when it is not JSON.
std::string error_body_message(std::string_view body);

}  // namespace anvil
