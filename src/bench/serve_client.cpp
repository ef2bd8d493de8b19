// One timed streaming request over cpp-httplib; every failure becomes a message that names the URL.
#include "bench/serve_client.h"

#include <fmt/format.h>
#include <httplib.h>

#include <algorithm>
#include <cmath>

#include <nlohmann/json.hpp>

#include "bench/serve_stream.h"

namespace anvil {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_between(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

httplib::Headers request_headers(const ServeTarget& target, const char* accept) {
  httplib::Headers headers = {{"Accept", accept}, {"User-Agent", "anvil-bench-serve"}};
  if (!target.api_key.empty()) headers.emplace("Authorization", "Bearer " + target.api_key);
  return headers;
}

// httplib takes whole seconds + microseconds.
template <typename SetFn>
void set_timeout(SetFn&& set, double seconds) {
  const double clamped = std::clamp(seconds, 0.001, 1e7);
  const auto whole = static_cast<time_t>(clamped);
  set(whole, static_cast<time_t>((clamped - static_cast<double>(whole)) * 1e6));
}

void configure(httplib::Client& client, double timeout_s) {
  // Connecting gets at most 30 s so a dead host fails fast; reads may idle for the whole timeout
  // (a long prefill sends nothing until the first token).
  set_timeout([&](time_t s, time_t us) { client.set_connection_timeout(s, us); }, std::min(timeout_s, 30.0));
  set_timeout([&](time_t s, time_t us) { client.set_read_timeout(s, us); }, timeout_s);
  set_timeout([&](time_t s, time_t us) { client.set_write_timeout(s, us); }, timeout_s);
  client.set_keep_alive(false);
}

std::string transport_error(const ServeTarget& target, httplib::Error error, double timeout_s, double elapsed_s) {
  switch (error) {
    case httplib::Error::Connection:
      return fmt::format("cannot connect to {} (nothing is listening there, or the host is unreachable)",
                         target.base_url);
    case httplib::Error::ConnectionTimeout:
      return fmt::format("connecting to {} timed out", target.base_url);
    case httplib::Error::Read:
      if (elapsed_s >= timeout_s * 0.99) return fmt::format("timed out after {:g} s without data", timeout_s);
      return fmt::format("the connection to {} broke while reading the response", target.base_url);
    case httplib::Error::Write:
      return fmt::format("the connection to {} broke while sending the request", target.base_url);
    default:
      return fmt::format("request to {} failed: {}", target.base_url, httplib::to_string(error));
  }
}

}  // namespace

Result<ServeTarget> parse_serve_target(const std::string& base_url, const std::string& api_key) {
  const size_t scheme_end = base_url.find("://");
  const std::string scheme = scheme_end == std::string::npos ? "" : base_url.substr(0, scheme_end);
  if (scheme != "http" && scheme != "https")
    return Status::error(fmt::format("--base-url '{}' must start with http:// or https://", base_url));
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
  if (scheme == "https") return Status::error("--base-url: this anvil's HTTP client was built without TLS; use http://");
#endif
  const size_t path_start = base_url.find('/', scheme_end + 3);
  ServeTarget target;
  target.base_url = base_url;
  target.api_key = api_key;
  target.origin = base_url.substr(0, path_start);
  if (path_start != std::string::npos) target.path_prefix = base_url.substr(path_start);
  while (!target.path_prefix.empty() && target.path_prefix.back() == '/') target.path_prefix.pop_back();
  if (target.origin.size() == scheme_end + 3)
    return Status::error(fmt::format("--base-url '{}' has no host", base_url));
  try {
    httplib::Client probe(target.origin);
    if (!probe.is_valid()) return Status::error(fmt::format("--base-url '{}' is not a valid URL", base_url));
  } catch (const std::exception& e) {
    return Status::error(fmt::format("--base-url '{}': {}", base_url, e.what()));
  }
  return target;
}

Result<std::string> discover_model_id(const ServeTarget& target, double timeout_s) {
  const std::string path = target.path_prefix + "/v1/models";
  const std::string url = target.origin + path;
  httplib::Client client(target.origin);
  configure(client, std::min(timeout_s, 30.0));
  const Clock::time_point start = Clock::now();
  httplib::Result response = client.Get(path, request_headers(target, "application/json"));
  if (!response)
    return Status::error(fmt::format("GET {}: {}", url,
                                     transport_error(target, response.error(), timeout_s,
                                                     seconds_between(start, Clock::now()))));
  if (response->status != 200)
    return Status::error(fmt::format("GET {} answered HTTP {}: {}; give the model id with --model", url,
                                     response->status, error_body_message(response->body)));
  const nlohmann::json list = nlohmann::json::parse(response->body, nullptr, false);
  if (list.is_discarded() || !list.is_object() || !list.contains("data") || !list["data"].is_array())
    return Status::error(fmt::format("GET {}: the answer is not a model list ({{\"data\": [...]}}); give the model "
                                     "id with --model",
                                     url));
  for (const nlohmann::json& card : list["data"])
    if (card.is_object() && card.contains("id") && card["id"].is_string()) return card["id"].get<std::string>();
  return Status::error(fmt::format("GET {}: the server lists no models; give the model id with --model", url));
}

ServeRequestRecord send_streaming_request(const ServeTarget& target, const StreamRequestOptions& options,
                                          bool* abandoned) {
  ServeRequestRecord record;
  if (abandoned) *abandoned = false;
  httplib::Client client(target.origin);
  configure(client, options.timeout_s);
  if (options.on_client) options.on_client(&client);

  httplib::Request request;
  request.method = "POST";
  request.path = target.path_prefix + options.path;
  request.headers = request_headers(target, "text/event-stream");
  request.headers.emplace("Content-Type", "application/json");
  request.body = options.body;

  int status = 0;
  std::string content_type, error_body;
  bool timed_out = false, cancelled = false;
  SseParser parser;
  CompletionStreamState stream(options.chat);
  Clock::time_point sent;
  auto elapsed = [&] { return seconds_between(sent, Clock::now()); };
  request.response_handler = [&](const httplib::Response& response) {
    status = response.status;
    content_type = response.get_header_value("Content-Type");
    return true;
  };
  request.content_receiver = [&](const char* data, size_t size, uint64_t, uint64_t) {
    const double now = elapsed();
    if (options.cancel && options.cancel->load(std::memory_order_relaxed)) {
      cancelled = true;
      return false;
    }
    if (now > options.timeout_s) {
      timed_out = true;
      return false;
    }
    if (status != 200) {
      if (error_body.size() < 4096) error_body.append(data, std::min<size_t>(size, 4096 - error_body.size()));
      return true;
    }
    parser.feed(std::string_view(data, size), [&](std::string_view event) { stream.on_event(event, now); });
    return true;
  };

  const bool cancelled_before = options.cancel && options.cancel->load(std::memory_order_relaxed);
  sent = Clock::now();
  record.start_s = seconds_between(options.run_start, sent);
  httplib::Result result = cancelled_before ? httplib::Result(nullptr, httplib::Error::Canceled) : client.send(request);
  const double end = elapsed();
  if (options.on_client) options.on_client(nullptr);
  parser.finish([&](std::string_view event) { stream.on_event(event, end); });

  record.chunk_arrivals_s = stream.content_arrivals_s();
  record.usage_prompt_tokens = stream.prompt_tokens();
  record.usage_completion_tokens = stream.completion_tokens();
  record.e2el_s = stream.done_at_s().value_or(end);
  if (cancelled || cancelled_before || (options.cancel && options.cancel->load() && !result)) {
    if (abandoned) *abandoned = true;
    record.error = "abandoned (interrupted)";
    return record;
  }
  if (timed_out) {
    record.error = fmt::format("timed out after {:g} s", options.timeout_s);
    return record;
  }
  if (!result) {
    record.error = transport_error(target, result.error(), options.timeout_s, end);
    return record;
  }
  if (status != 200) {
    record.error = fmt::format("HTTP {}: {}", status, error_body_message(error_body));
    return record;
  }
  if (!stream.error().empty()) {
    record.error = stream.error();
    return record;
  }
  if (record.chunk_arrivals_s.empty()) {
    record.error = stream.events() == 0
                       ? fmt::format("the response was not an event stream (Content-Type: {})",
                                     content_type.empty() ? "none" : content_type)
                       : std::string("the stream carried no generated text");
    return record;
  }
  record.success = true;
  return record;
}

}  // namespace anvil
