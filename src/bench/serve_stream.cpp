// SSE framing and OpenAI completion chunks, tolerant of every server's small differences.
#include "bench/serve_stream.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace anvil {

// ---- SSE framing --------------------------------------------------------------------------------

void SseParser::feed(std::string_view bytes, const EventFn& on_event) {
  size_t start = 0;
  while (start < bytes.size()) {
    const size_t newline = bytes.find('\n', start);
    if (newline == std::string_view::npos) {
      partial_line_.append(bytes.substr(start));
      return;
    }
    std::string_view piece = bytes.substr(start, newline - start);
    start = newline + 1;
    if (partial_line_.empty()) {
      line(piece, on_event);
    } else {
      partial_line_.append(piece);
      const std::string whole = std::move(partial_line_);
      partial_line_.clear();
      line(whole, on_event);
    }
  }
}

void SseParser::finish(const EventFn& on_event) {
  if (!partial_line_.empty()) {
    const std::string last = std::move(partial_line_);
    partial_line_.clear();
    line(last, on_event);
  }
  dispatch(on_event);
}

void SseParser::line(std::string_view text, const EventFn& on_event) {
  if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
  if (text.empty()) {
    dispatch(on_event);
    return;
  }
  if (text.front() == ':') return;  // comment (keep-alive pings)
  const size_t colon = text.find(':');
  const std::string_view field = text.substr(0, colon);
  if (field != "data") return;
  std::string_view value = colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (has_data_) data_ += '\n';
  data_.append(value);
  has_data_ = true;
}

void SseParser::dispatch(const EventFn& on_event) {
  if (!has_data_) return;
  const std::string data = std::move(data_);
  data_.clear();
  has_data_ = false;
  on_event(data);
}

// ---- Completion chunks --------------------------------------------------------------------------

namespace {

std::optional<int64_t> count_field(const nlohmann::json& usage, const char* name) {
  auto it = usage.find(name);
  if (it == usage.end() || !it->is_number_integer()) return std::nullopt;
  return it->get<int64_t>();
}

bool non_empty_string(const nlohmann::json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() && !it->get_ref<const std::string&>().empty();
}

std::string error_message(const nlohmann::json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object()) {
    auto message = error.find("message");
    if (message != error.end() && message->is_string()) return message->get<std::string>();
  }
  return error.dump();
}

}  // namespace

void CompletionStreamState::on_event(std::string_view data, double at_s) {
  ++events_;
  if (data == "[DONE]") {
    if (!done_at_) done_at_ = at_s;
    return;
  }
  const nlohmann::json chunk = nlohmann::json::parse(data, nullptr, false);
  if (chunk.is_discarded() || !chunk.is_object()) {
    if (error_.empty()) error_ = fmt::format("the stream carried data that is not a JSON object: {:.200}", data);
    return;
  }
  if (auto error = chunk.find("error"); error != chunk.end() && !error->is_null()) {
    if (error_.empty()) error_ = "error in the stream: " + error_message(*error);
    return;
  }
  auto choices = chunk.find("choices");
  if (choices != chunk.end() && choices->is_array() && !choices->empty() && (*choices)[0].is_object()) {
    const nlohmann::json& choice = (*choices)[0];
    bool has_text = false;
    if (chat_) {
      auto delta = choice.find("delta");
      has_text = delta != choice.end() && delta->is_object() &&
                 (non_empty_string(*delta, "content") || non_empty_string(*delta, "reasoning_content") ||
                  non_empty_string(*delta, "reasoning"));
    } else {
      has_text = non_empty_string(choice, "text");
    }
    if (has_text) arrivals_.push_back(at_s);
  }
  // With include_usage the last chunk carries it; servers that repeat it per chunk end on the total.
  auto usage = chunk.find("usage");
  if (usage != chunk.end() && usage->is_object()) {
    if (auto n = count_field(*usage, "prompt_tokens")) prompt_tokens_ = n;
    if (auto n = count_field(*usage, "completion_tokens")) completion_tokens_ = n;
  }
}

std::string error_body_message(std::string_view body) {
  const nlohmann::json parsed = nlohmann::json::parse(body, nullptr, false);
  if (!parsed.is_discarded() && parsed.is_object()) {
    for (const char* key : {"error", "message", "detail"}) {
      auto it = parsed.find(key);
      if (it != parsed.end() && !it->is_null()) return error_message(*it);
    }
  }
  std::string text(body.substr(0, 300));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) text.pop_back();
  return text.empty() ? std::string("(empty body)") : text;
}

}  // namespace anvil
