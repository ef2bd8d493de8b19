// The HTTP side of `bench serve`: one streamed POST to an OpenAI-compatible server, timed chunk by
// chunk, and GET /v1/models to find the model id. cpp-httplib, one connection per request.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

#include "anvil/status.h"
#include "bench/serve_metrics.h"

namespace httplib {
class Client;
}

namespace anvil {

// A base URL split for httplib: "http://host:8000/prefix" -> origin "http://host:8000", path
// prefix "/prefix" (put before every endpoint).
struct ServeTarget {
  std::string base_url;  // as given, for messages
  std::string origin;
  std::string path_prefix;
  std::string api_key;   // sent as Authorization: Bearer when not empty
};

Result<ServeTarget> parse_serve_target(const std::string& base_url, const std::string& api_key);

// The first model id of GET {prefix}/v1/models. Errors name the URL: nothing listening, an HTTP
// error (with the server's message), or an empty list.
Result<std::string> discover_model_id(const ServeTarget& target, double timeout_s);

struct StreamRequestOptions {
  std::string path;                  // the endpoint, e.g. /v1/completions (the prefix is added)
  std::string body;                  // the JSON request body
  bool chat = false;
  double timeout_s = 600;            // the whole request; it fails once it has run this long
  std::chrono::steady_clock::time_point run_start;  // ServeRequestRecord::start_s counts from here
  const std::atomic<bool>* cancel = nullptr;        // turns true: give up (the record says "abandoned")
  // Called with the request's client once it exists and with nullptr when done, so another thread
  // can stop() it (shutting its socket unblocks a read).
  std::function<void(httplib::Client*)> on_client;
};

// Sends one streaming request and times it. Never fails as a whole: transport errors, HTTP errors
// (with the server's message) and timeouts come back as a record with success false.
// `abandoned` is set when `cancel` ended it (such a record is no measurement).
ServeRequestRecord send_streaming_request(const ServeTarget& target, const StreamRequestOptions& options,
                                          bool* abandoned);

}  // namespace anvil
