// HttpServer: the OpenAI-compatible HTTP front of `anvil serve` (cpp-httplib): routes, API-key
// check, streaming, access log, readiness and graceful shutdown.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "anvil/status.h"
#include "server/serving_context.h"

namespace anvil::server {

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8000;            // 0: any free port (port() tells which)
  std::string api_key;        // "": no authentication
  int threads = 512;          // connection threads: every open connection (a stream, an idle keep-alive) holds one
  int64_t max_waiting = 256;  // engine requests admitted but not started; beyond it: 429
  size_t max_body_bytes = size_t{64} << 20;
  bool access_log = true;
  int keep_alive_timeout_seconds = 5;
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket. Done before the model loads, so /health can answer 503 meanwhile.
  Status bind();
  int port() const;
  // Serves on a thread of its own. Until set_ready, /health answers 503 and the API routes too.
  void start();
  // The model is loaded: the API routes open. The context's engine must outlive shutdown().
  void set_ready(ServingContext context);

  // Stops accepting connections and waits for the requests in flight. After `grace`, calls
  // abort_all (which must end them: Engine::stop() aborts every request) and waits for the rest.
  void shutdown(std::chrono::milliseconds grace, const std::function<void()>& abort_all);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace anvil::server
