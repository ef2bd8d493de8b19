// anvil serve: the OpenAI-compatible HTTP server over the continuous-batching engine.
#include <fmt/format.h>
#include <unistd.h>

#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "commands.h"
#include "core/dtype.h"
#include "core/progress.h"
#include "core/thread_pool.h"
#include "engine/engine.h"
#include "engine/memory_plan.h"
#include "model/decoder_model.h"
#include "model/kv_store.h"
#include "model/load_checkpoint.h"
#include "quantize_at_load.h"
#include "server/http_server.h"
#include "server/openai_response.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

namespace anvil::cli {
namespace {

struct ServeOptions {
  std::string model;
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;
  std::vector<std::string> served_model_names;
  int threads = 0;
  int http_threads = 512;
  int64_t max_num_seqs = 0;
  int64_t max_num_batched_tokens = 0;
  std::string kv_cache_memory;
  std::string kv_dtype = "f16";
  int64_t max_waiting = 256;
  std::string chat_template;
  bool no_prefix_caching = false;
  std::string quantization;
  bool no_chunked_prefill = false;
  std::string scheduling_policy = "fcfs";
  double shutdown_grace = 10.0;
  bool no_access_log = false;
};

// Set once by the signal thread; the main thread waits on it.
class ShutdownRequest {
 public:
  void request(int signal) {
    std::lock_guard<std::mutex> lock(mutex_);
    signal_ = signal;
    changed_.notify_all();
  }
  int wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait(lock, [&] { return signal_ != 0; });
    return signal_;
  }
  bool requested() {
    std::lock_guard<std::mutex> lock(mutex_);
    return signal_ != 0;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  int signal_ = 0;
};

Result<EngineOptions> engine_options(const ServeOptions& o) {
  EngineOptions e;
  if (o.max_num_seqs > 0) e.max_num_seqs = o.max_num_seqs;
  if (o.max_num_batched_tokens > 0) e.max_num_batched_tokens = o.max_num_batched_tokens;
  std::optional<DType> kv = kv_cache_dtype_from_name(o.kv_dtype);
  if (!kv)
    return Status::error(fmt::format("--kv-dtype '{}' is not a KV cache dtype the engine runs (f32, f16, bf16, fp8, int8)",
                                     o.kv_dtype));
  e.kv_dtype = *kv;
  if (!o.kv_cache_memory.empty()) {
    Result<int64_t> bytes = parse_byte_size(o.kv_cache_memory);
    if (!bytes) return bytes.status().with_context("--kv-cache-memory");
    if (*bytes < 1) return Status::error("--kv-cache-memory must be positive");
    e.kv_cache_bytes = *bytes;
  }
  e.enable_prefix_caching = !o.no_prefix_caching;
  e.enable_chunked_prefill = !o.no_chunked_prefill;
  e.scheduling_policy = o.scheduling_policy;
  ANVIL_RETURN_IF_ERROR(e.validate());
  return e;
}

int g_signal_pipe[2] = {-1, -1};

extern "C" void on_shutdown_signal(int signal) {
  const unsigned char byte = static_cast<unsigned char>(signal);
  const ssize_t written = ::write(g_signal_pipe[1], &byte, 1);  // async-signal-safe
  (void)written;
}

const char* signal_name(int signal) { return signal == SIGINT ? "SIGINT" : signal == SIGTERM ? "SIGTERM" : "a signal"; }

int serve(const ServeOptions& o) {
  // Everything that needs no model is checked first, so a typo fails before a long load.
  Result<EngineOptions> engine_opts = engine_options(o);
  if (!engine_opts) return fail(engine_opts.status().message());
  Result<std::optional<QuantizeOptions>> quantization = parse_quantization_flag(o.quantization);
  if (!quantization) return fail(quantization.status().message());
  if (!o.chat_template.empty()) {
    const auto& names = chat_template_names();
    if (std::find(names.begin(), names.end(), o.chat_template) == names.end()) {
      std::string known;
      for (const std::string& n : names) known += (known.empty() ? "" : ", ") + n;
      return fail(fmt::format("--chat-template '{}' is not a known chat format (known: {})", o.chat_template, known));
    }
  }

  // SIGINT/SIGTERM: the handler (on whatever thread the kernel picks) only writes the signal
  // number to a pipe; a thread of ours reads it and starts the shutdown. A second signal quits at
  // once. A client that hangs up must not kill the process with SIGPIPE.
  if (::pipe(g_signal_pipe) != 0) return fail("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_shutdown_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  auto shutdown = std::make_shared<ShutdownRequest>();
  std::thread([shutdown] {
    unsigned char signal = 0;
    for (int received = 0;; ++received) {
      if (::read(g_signal_pipe[0], &signal, 1) != 1) return;
      if (received > 0) {
        fmt::print(stderr, "anvil: {} again: exiting now\n", signal_name(signal));
        std::_Exit(1);
      }
      shutdown->request(signal);
    }
  }).detach();

  server::HttpServerOptions http_options;
  http_options.host = o.host;
  http_options.port = o.port;
  http_options.api_key = o.api_key;
  if (http_options.api_key.empty())
    if (const char* key = std::getenv("ANVIL_API_KEY")) http_options.api_key = key;
  http_options.threads = o.http_threads;
  http_options.max_waiting = o.max_waiting;
  http_options.access_log = !o.no_access_log;
  server::HttpServer http(http_options);
  // Listen before loading: /health answers 503 while the model loads.
  Status bound = http.bind();
  if (!bound) return fail(bound.message());
  http.start();
  fmt::print(stderr, "anvil: listening on http://{}:{} (loading {})\n", o.host, http.port(), o.model);

  const auto load_start = std::chrono::steady_clock::now();
  TerminalProgress load_progress("loading " + o.model, true);
  Result<Checkpoint> checkpoint = load_checkpoint(o.model, load_progress.callback());
  load_progress.finish();
  if (!checkpoint) return fail(checkpoint.status().message());
  if (*quantization) {
    Status quantized = apply_online_quantization(*checkpoint, **quantization, o.threads);
    if (!quantized) return fail(quantized.message());
  }
  repack_for_decode(*checkpoint, o.threads);
  auto shared_checkpoint = std::make_shared<const Checkpoint>(std::move(checkpoint).value());
  Result<std::unique_ptr<DecoderModel>> model = DecoderModel::create(shared_checkpoint);
  if (!model) return fail(model.status().message());
  std::unique_ptr<Tokenizer> tokenizer;
  if (!shared_checkpoint->vocab.empty()) {
    Result<std::unique_ptr<Tokenizer>> created = Tokenizer::create(shared_checkpoint->vocab);
    if (created) tokenizer = std::move(created).value();
    else fmt::print(stderr, "anvil: warning: {}; prompts must be token ids\n", created.status().message());
  } else {
    fmt::print(stderr, "anvil: warning: {} carries no tokenizer; prompts must be token ids\n", o.model);
  }
  if (tokenizer && o.chat_template.empty() && tokenizer->vocab().chat_template.empty())
    fmt::print(stderr, "anvil: warning: {} carries no chat template; /v1/chat/completions answers 400 unless "
                       "--chat-template names one\n", o.model);

  ThreadPool pool(o.threads > 0 ? o.threads : default_thread_count());
  Result<std::unique_ptr<Engine>> engine = Engine::create(**model, tokenizer.get(), pool, *engine_opts);
  if (!engine) return fail(engine.status().message());
  (*engine)->start();

  server::ServingContext context;
  context.engine = engine->get();
  context.tokenizer = tokenizer.get();
  context.served_names = o.served_model_names.empty() ? std::vector<std::string>{o.model} : o.served_model_names;
  context.model_path = o.model;
  context.chat_template = o.chat_template;
  const ModelConfig& config = (*model)->config();
  // What one sequence may hold here: the context length, or less when the KV cache is smaller.
  context.limits = {std::min(config.context_length, (*engine)->kv_cache_capacity_tokens()), config.vocab_size};
  context.created = server::unix_seconds_now();
  if (shutdown->requested()) {  // a signal during the load: nothing is in flight yet
    http.shutdown(std::chrono::milliseconds(0), {});
    return 0;
  }
  http.set_ready(context);
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
  fmt::print(stderr,
             "anvil: ready in {:.2f} s: serving '{}' ({}, {} parameters) at http://{}:{}; max_model_len {}, "
             "KV cache {} tokens ({}), {} threads\n",
             load_seconds, context.display_name(), config.arch, format_count(config.parameter_count()), o.host,
             http.port(), context.limits.context_length, (*engine)->kv_cache_capacity_tokens(),
             dtype_name(engine_opts->kv_dtype), pool.thread_count());

  const int signal = shutdown->wait();
  fmt::print(stderr, "anvil: {}: no new connections; finishing the requests in flight (at most {:.0f} s)\n",
             signal_name(signal), o.shutdown_grace);
  http.shutdown(std::chrono::milliseconds(static_cast<int64_t>(o.shutdown_grace * 1000.0)), [&] {
    fmt::print(stderr, "anvil: grace period over: cancelling the requests still running\n");
    (*engine)->stop();  // every live request ends with finish_reason "abort"
  });
  (*engine)->stop();
  fmt::print(stderr, "anvil: stopped\n");
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<ServeOptions>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions)");
  cmd->add_option("-m,--model", o->model,
                  "GGUF file, Hugging Face directory, llama2.c checkpoint, or dummy:<preset>[:dtype]")
      ->required();
  cmd->add_option("--host", o->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "Port to listen on (0: any free port)")->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--api-key", o->api_key,
                  "Require 'Authorization: Bearer KEY' on every route but /health and /metrics "
                  "(default: $ANVIL_API_KEY)");
  cmd->add_option("--served-model-name", o->served_model_names,
                  "Name(s) clients use for the model (repeatable; default: the --model text)");
  cmd->add_option("-t,--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::Range(0, 1024));
  cmd->add_option("--http-threads", o->http_threads,
                  "Connection threads; each open connection (a stream, an idle keep-alive) holds one")
      ->capture_default_str()->check(CLI::Range(4, 65536));
  cmd->add_option("--max-num-seqs", o->max_num_seqs, "Sequences per engine step at most (default: 64)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  cmd->add_option("--max-num-batched-tokens", o->max_num_batched_tokens,
                  "Tokens per engine step at most (default: 512)")
      ->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  cmd->add_option("--kv-cache-memory", o->kv_cache_memory,
                  "KV cache size, e.g. 2GiB or 500MiB (default: 40% of the available memory, capped at what "
                  "max-num-seqs full-context sequences use)");
  cmd->add_option("--quantization,-q", o->quantization, kOnlineQuantizationHelp);
  cmd->add_option("--kv-dtype", o->kv_dtype, "KV cache dtype: f32, f16, bf16, fp8 (E4M3) or int8")->capture_default_str();
  cmd->add_option("--max-waiting", o->max_waiting,
                  "Requests admitted but not yet running at most; beyond it the server answers 429 with Retry-After")
      ->capture_default_str()->check(CLI::Range(int64_t{1}, int64_t{1} << 30));
  cmd->add_option("--chat-template", o->chat_template,
                  "Chat format for /v1/chat/completions; overrides the model's own template (needed when it has none or an unrecognized one)");
  cmd->add_flag("--no-prefix-caching", o->no_prefix_caching, "Turn the engine's prefix cache off");
  cmd->add_flag("--no-chunked-prefill", o->no_chunked_prefill,
                "Run each prompt whole in one step (it must fit --max-num-batched-tokens)");
  cmd->add_option("--scheduling-policy", o->scheduling_policy,
                  "Admission order: fcfs (arrival) or sjf (shortest prompt first)")->capture_default_str();
  cmd->add_option("--shutdown-grace", o->shutdown_grace,
                  "Seconds SIGTERM/SIGINT waits for requests in flight before cancelling them")
      ->capture_default_str()->check(CLI::Range(0.0, 3600.0));
  cmd->add_flag("--no-access-log", o->no_access_log, "Do not write one JSON line per request on stderr");
  cmd->callback([o, &exit_code] { exit_code = serve(*o); });
}

}  // namespace anvil::cli
