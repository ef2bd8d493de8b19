// The HTTP routes of `anvil serve` on cpp-httplib. Handlers parse and answer; the work lives in
// CompletionSession (engine requests) and the protocol files (request and response shapes).
#include "server/http_server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <strings.h>
#include <sys/socket.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "server/access_log.h"
#include "server/api_error.h"
#include "server/completion_session.h"
#include "server/openai_protocol.h"
#include "server/peer_socket.h"
#include "server/prometheus.h"
#include "server/tokenize_handlers.h"

namespace anvil::server {
namespace {

using Clock = std::chrono::steady_clock;

// Two things httplib::Server does not offer, done on its (protected) listening socket:
//  - a bigger listen backlog: httplib listens with 5, so 64 clients connecting at once would see
//    dropped SYNs and one-second retransmits; listening again on the bound socket raises it;
//  - a graceful stop: stop() also ends every response being streamed (the chunked writer checks
//    the listening socket), while a graceful shutdown must let them finish. Shutting the socket
//    down ends only the accept loop (which then closes it); forgetting it later ends the rest.
class ListeningServer : public httplib::Server {
 public:
  void raise_backlog(int backlog) {
    const socket_t socket = svr_sock_;
    if (socket != INVALID_SOCKET) ::listen(socket, backlog);
  }
  void stop_accepting() {
    const socket_t socket = svr_sock_;
    if (socket != INVALID_SOCKET) ::shutdown(socket, SHUT_RDWR);
  }
  // After stop_accepting: streams and keep-alive connections end at their next check.
  void end_connections() { svr_sock_ = INVALID_SOCKET; }
};

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Constant time in the key's length, so response timing does not reveal a matching prefix.
bool same_secret(const std::string& given, const std::string& expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

// Label values for the request counter: known routes by name, anything else as "other" (a
// scanner's random paths must not grow the metric without bound).
std::string route_label(const std::string& path) {
  static const char* const kRoutes[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health",
                                        "/metrics", "/tokenize", "/detokenize"};
  for (const char* route : kRoutes)
    if (path == route) return route;
  if (path.rfind("/v1/models/", 0) == 0) return "/v1/models/{model}";
  return "other";
}

// The method a known route answers, for a 405 on the others; null for unknown paths.
const char* allowed_method(const std::string& path) {
  static const char* const kPost[] = {"/v1/completions", "/v1/chat/completions", "/tokenize", "/detokenize"};
  for (const char* route : kPost)
    if (path == route) return "POST";
  if (path == "/v1/models" || path == "/health" || path == "/metrics" || path.rfind("/v1/models/", 0) == 0) return "GET";
  return nullptr;
}

const char* status_error_type(int status) {
  switch (status) {
    case 401: return "authentication_error";
    case 404: return "NotFoundError";  // as for an unknown model (vLLM's spelling)
    case 405: return "invalid_request_error";
    case 413: return "invalid_request_error";
    case 429: return "rate_limit_error";
    case 503: return "service_unavailable";
    default: return status >= 500 ? "internal_error" : "invalid_request_error";
  }
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(HttpServerOptions o)
      : options(std::move(o)), admission(options.max_waiting), access_log(options.access_log) {}

  HttpServerOptions options;
  ListeningServer http;
  int port = -1;
  std::thread thread;
  AdmissionControl admission;
  ServerMetrics metrics;
  AccessLog access_log;
  ServingContext context;
  std::atomic<bool> ready{false};
  std::atomic<bool> stopping{false};
  std::mutex done_mutex;
  std::condition_variable done_changed;
  bool listener_done = false;

  void configure();
  void install_routes();

  AccessRecord start_record(const httplib::Request& req) const {
    AccessRecord record;
    record.method = req.method;
    record.path = req.path;
    record.remote = req.remote_addr;
    return record;
  }
  void finish(AccessRecord& record, Clock::time_point start) {
    record.total_ms = ms_since(start);
    metrics.record_http(route_label(record.path), record.status);
    access_log.write(record);
  }
  void answer_json(httplib::Response& res, int status, const nlohmann::json& body) {
    res.status = status;
    res.set_content(dump_json(body), "application/json");
  }
  void answer_error(httplib::Response& res, const ApiError& error, AccessRecord& record, Clock::time_point start) {
    answer_json(res, error.http_status, error.to_json());
    if (error.http_status == 429 || error.http_status == 503) res.set_header("Retry-After", "1");
    record.status = error.http_status;
    record.error = error.message;
    finish(record, start);
  }
  // The API routes need the model and a server that is not shutting down.
  std::optional<ApiError> unavailable() const {
    if (stopping.load()) return ApiError{503, "the server is shutting down", "service_unavailable", "", ""};
    if (!ready.load(std::memory_order_acquire))
      return ApiError{503, "the model is still loading; retry shortly", "service_unavailable", "", ""};
    return std::nullopt;
  }
  bool authorized(const httplib::Request& req) const {
    if (options.api_key.empty()) return true;
    const std::string header = req.get_header_value("Authorization");
    constexpr std::string_view kBearer = "Bearer ";
    if (header.size() < kBearer.size() || strncasecmp(header.c_str(), kBearer.data(), kBearer.size()) != 0)
      return false;
    return same_secret(header.substr(kBearer.size()), options.api_key);
  }

  void handle_completion(const httplib::Request& req, httplib::Response& res, ApiEndpoint endpoint);
  void handle_json_route(const httplib::Request& req, httplib::Response& res,
                         const std::function<ApiResult<nlohmann::json>()>& handler);
};

void HttpServer::Impl::configure() {
  const int threads = options.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  http.set_payload_max_length(options.max_body_bytes);
  http.set_keep_alive_timeout(options.keep_alive_timeout_seconds);
  http.set_keep_alive_max_count(1000);
  http.set_tcp_nodelay(true);  // a streamed token must not wait for Nagle's timer
  // httplib's default also sets SO_REUSEPORT, which lets a second server bind the same port and
  // silently take half the connections; a port in use must be an error instead.
  http.set_socket_options([](socket_t socket) {
    int yes = 1;
    ::setsockopt(socket, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // A client that stops reading a stream stalls the write; after this its request is cancelled.
  http.set_write_timeout(10, 0);
  http.set_read_timeout(30, 0);

  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    // Health checks and scrapes stay open, as in vLLM; everything else needs the key.
    if (req.path == "/health" || req.path == "/metrics" || authorized(req))
      return httplib::Server::HandlerResponse::Unhandled;
    const Clock::time_point start = Clock::now();
    AccessRecord record = start_record(req);
    ApiError error{401,
                   req.has_header("Authorization") ? "Incorrect API key provided"
                                                   : "Missing API key: send the header 'Authorization: Bearer <key>'",
                   "invalid_request_error", "", "invalid_api_key"};
    res.set_header("WWW-Authenticate", "Bearer");
    answer_error(res, error, record, start);
    return httplib::Server::HandlerResponse::Handled;
  });

  // Errors httplib answers by itself (unknown route, body too large, bad request line) get an
  // OpenAI-style body too. Our own error answers already carry one and pass through.
  const httplib::Server::HandlerWithResponse error_handler = [this](const httplib::Request& req,
                                                                    httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const Clock::time_point start = Clock::now();
    AccessRecord record = start_record(req);
    const char* allowed = allowed_method(req.path);
    if (res.status == 404 && allowed && req.method != allowed) {
      res.status = 405;
      res.set_header("Allow", allowed);
    }
    std::string message = res.status == 405   ? fmt::format("{} is not allowed on {}; use {}", req.method, req.path,
                                                            allowed ? allowed : "another method")
                          : res.status == 404 ? fmt::format("no route {} {}", req.method, req.path)
                          : res.status == 413 ? fmt::format("the request body is larger than {} bytes",
                                                            options.max_body_bytes)
                                              : fmt::format("HTTP {}", res.status);
    const std::string type = status_error_type(res.status);
    answer_error(res, ApiError{res.status, std::move(message), type, "", ""}, record, start);
    return httplib::Server::HandlerResponse::Handled;
  };
  http.set_error_handler(error_handler);

  http.set_exception_handler([this](const httplib::Request& req, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    const Clock::time_point start = Clock::now();
    AccessRecord record = start_record(req);
    answer_error(res, ApiError{500, "internal error: " + what, "internal_error", "", ""}, record, start);
  });
  install_routes();
}

void HttpServer::Impl::handle_json_route(const httplib::Request& req, httplib::Response& res,
                                         const std::function<ApiResult<nlohmann::json>()>& handler) {
  const Clock::time_point start = Clock::now();
  AccessRecord record = start_record(req);
  if (std::optional<ApiError> error = unavailable()) return answer_error(res, *error, record, start);
  ApiResult<nlohmann::json> body = handler();
  if (!body) return answer_error(res, body.error(), record, start);
  answer_json(res, 200, *body);
  record.status = 200;
  finish(record, start);
}

void HttpServer::Impl::handle_completion(const httplib::Request& req, httplib::Response& res, ApiEndpoint endpoint) {
  const Clock::time_point arrival = Clock::now();
  AccessRecord record = start_record(req);
  if (std::optional<ApiError> error = unavailable()) return answer_error(res, *error, record, arrival);
  ApiResult<OpenAIRequest> parsed = parse_openai_request(std::string_view(req.body), endpoint);
  if (!parsed) return answer_error(res, parsed.error(), record, arrival);
  record.stream = parsed->stream;
  ApiResult<std::unique_ptr<CompletionSession>> started =
      CompletionSession::start(context, std::move(parsed).value(), arrival);
  if (!started) return answer_error(res, started.error(), record, arrival);
  std::shared_ptr<CompletionSession> session = std::move(started).value();
  record.id = session->id();

  auto fill_summary = [](AccessRecord& r, const CompletionSession& s) {
    const CompletionSession::Summary summary = s.summary();
    r.prompt_tokens = summary.prompt_tokens;
    r.completion_tokens = summary.completion_tokens;
    r.ttft_ms = summary.ttft_ms;
    r.finish_reason = summary.finish_reason;
    if (r.error.empty()) r.error = summary.error;
  };

  if (!session->streaming()) {
    // The only way to see this client hang up before its answer is written (see peer_socket.h).
    const std::optional<PeerSocket> peer = PeerSocket::find(req.local_port, req.remote_addr, req.remote_port);
    ApiResult<nlohmann::json> body =
        session->wait_for_body([&peer] { return peer.has_value() && peer->peer_closed(); });
    fill_summary(record, *session);
    if (!body) return answer_error(res, body.error(), record, arrival);
    answer_json(res, 200, *body);
    record.status = 200;
    return finish(record, arrival);
  }

  res.status = 200;
  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");  // reverse proxies must pass events through unbuffered
  auto last_write = std::make_shared<Clock::time_point>(Clock::now());
  res.set_chunked_content_provider(
      "text/event-stream",
      [session, last_write](size_t, httplib::DataSink& sink) {
        std::string events = session->next_events(std::chrono::milliseconds(1000));
        // While the request waits or a long prompt runs, an SSE comment every second is how a
        // client that went away is noticed: writing to its closed socket fails.
        if (events.empty() && Clock::now() - *last_write >= std::chrono::seconds(1)) events = ": keep-alive\n\n";
        if (!events.empty()) {
          if (!sink.write(events.data(), events.size())) {
            session->cancel();
            return false;
          }
          *last_write = Clock::now();
        }
        if (session->finished()) sink.done();
        return true;
      },
      [this, session, record, arrival, fill_summary](bool success) mutable {
        const bool gone = !session->finished();
        if (gone) {
          session->cancel();
          record.error = "the client disconnected; request cancelled";
        }
        fill_summary(record, *session);
        // 200 went out with the headers; the log says 499 (client closed request) as for a
        // non-streaming request whose client left, so both read the same.
        record.status = gone ? 499 : 200;
        (void)success;
        finish(record, arrival);
      });
}

void HttpServer::Impl::install_routes() {
  http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res, ApiEndpoint::Completions);
  });
  http.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) {
    handle_completion(req, res, ApiEndpoint::ChatCompletions);
  });
  http.Post("/tokenize", [this](const httplib::Request& req, httplib::Response& res) {
    handle_json_route(req, res, [&] { return handle_tokenize(context, req.body); });
  });
  http.Post("/detokenize", [this](const httplib::Request& req, httplib::Response& res) {
    handle_json_route(req, res, [&] { return handle_detokenize(context, req.body); });
  });

  auto model_card = [this](const std::string& name) {
    return nlohmann::json{{"id", name},
                          {"object", "model"},
                          {"created", context.created},
                          {"owned_by", "anvil"},
                          {"root", context.model_path},
                          {"parent", nullptr},
                          {"max_model_len", context.limits.context_length}};
  };
  http.Get("/v1/models", [this, model_card](const httplib::Request& req, httplib::Response& res) {
    handle_json_route(req, res, [&]() -> ApiResult<nlohmann::json> {
      nlohmann::json data = nlohmann::json::array();
      for (const std::string& name : context.served_names) data.push_back(model_card(name));
      return nlohmann::json{{"object", "list"}, {"data", std::move(data)}};
    });
  });
  http.Get(R"(/v1/models/(.+))", [this, model_card](const httplib::Request& req, httplib::Response& res) {
    handle_json_route(req, res, [&]() -> ApiResult<nlohmann::json> {
      const std::string name = req.matches[1];
      if (std::optional<ApiError> error = check_model_name(name, context.served_names)) return *error;
      return model_card(name);
    });
  });

  http.Get("/health", [this](const httplib::Request& req, httplib::Response& res) {
    const Clock::time_point start = Clock::now();
    AccessRecord record = start_record(req);
    const bool up = ready.load(std::memory_order_acquire) && !stopping.load();
    record.status = up ? 200 : 503;
    answer_json(res, record.status,
                {{"status", up ? "ok" : stopping.load() ? "shutting_down" : "loading"}});
    if (!up) res.set_header("Retry-After", "1");
    finish(record, start);
  });
  http.Get("/metrics", [this](const httplib::Request& req, httplib::Response& res) {
    const Clock::time_point start = Clock::now();
    AccessRecord record = start_record(req);
    std::string text;
    if (ready.load(std::memory_order_acquire)) {
      const EngineMetrics engine_metrics = context.engine->metrics();
      text = metrics.render(&engine_metrics, admission.waiting());
    } else {
      text = metrics.render(nullptr, admission.waiting());
    }
    res.status = 200;
    res.set_content(text, kPrometheusContentType);
    record.status = 200;
    finish(record, start);
  });
}

HttpServer::HttpServer(HttpServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  impl_->configure();
}

HttpServer::~HttpServer() {
  if (impl_->thread.joinable()) {
    impl_->http.stop_accepting();
    impl_->http.end_connections();
    impl_->thread.join();
  }
}

Status HttpServer::bind() {
  Impl& s = *impl_;
  if (s.options.port == 0) {
    s.port = s.http.bind_to_any_port(s.options.host);
    if (s.port < 0) return Status::error(fmt::format("cannot listen on {} (any port)", s.options.host));
  } else {
    if (!s.http.bind_to_port(s.options.host, s.options.port))
      return Status::error(fmt::format("cannot listen on {}:{} (address in use, or not an address of this machine?)",
                                       s.options.host, s.options.port));
    s.port = s.options.port;
  }
  s.http.raise_backlog(1024);
  return Status::ok();
}

int HttpServer::port() const { return impl_->port; }

void HttpServer::start() {
  Impl& s = *impl_;
  s.thread = std::thread([&s] {
    s.http.listen_after_bind();
    std::lock_guard<std::mutex> lock(s.done_mutex);
    s.listener_done = true;
    s.done_changed.notify_all();
  });
}

void HttpServer::set_ready(ServingContext context) {
  Impl& s = *impl_;
  context.admission = &s.admission;
  context.metrics = &s.metrics;
  s.context = std::move(context);
  s.ready.store(true, std::memory_order_release);
}

void HttpServer::shutdown(std::chrono::milliseconds grace, const std::function<void()>& abort_all) {
  Impl& s = *impl_;
  s.stopping.store(true);  // requests still arriving on kept-alive connections get 503
  if (!s.thread.joinable()) return;
  s.http.stop_accepting();
  auto wait_for_listener = [&s](std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(s.done_mutex);
    return s.done_changed.wait_for(lock, timeout, [&] { return s.listener_done; });
  };
  if (!wait_for_listener(grace)) {
    if (abort_all) abort_all();  // every request ends now: its stream gets finish_reason "abort" and [DONE]
    // Then kept-alive idle connections, and clients that stopped reading, are closed.
    if (!wait_for_listener(std::chrono::milliseconds(2000))) s.http.end_connections();
  }
  s.thread.join();
}

}  // namespace anvil::server
