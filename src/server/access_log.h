// Access log: one JSON line per HTTP request on stderr (id, route, status, tokens, TTFT, total).
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>

namespace anvil::server {

struct AccessRecord {
  std::string id;      // the response id ("cmpl-..."); empty for routes that have none
  std::string method;
  std::string path;
  std::string remote;  // client address
  int status = 0;
  bool stream = false;
  int64_t prompt_tokens = -1;      // -1: not applicable (left out of the line)
  int64_t completion_tokens = -1;
  double ttft_ms = -1;
  double total_ms = 0;
  std::string finish_reason;       // of the first choice
  std::string error;               // the message of an error answer
};

// {"ts":"2025-01-31T12:00:00.123Z","id":...,"method":"POST","path":"/v1/completions",...}: a JSON
// object per line, so log shippers parse it without a custom grammar.
std::string format_access_record(const AccessRecord& record);

class AccessLog {
 public:
  explicit AccessLog(bool enabled, std::FILE* out = stderr) : enabled_(enabled), out_(out) {}
  void write(const AccessRecord& record);

 private:
  bool enabled_;
  std::FILE* out_;
  std::mutex mutex_;  // whole lines, never interleaved
};

}  // namespace anvil::server
