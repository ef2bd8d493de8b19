// Access log lines as JSON objects.
#include "server/access_log.h"

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <ctime>
#include <nlohmann/json.hpp>

#include "server/api_error.h"

namespace anvil::server {
namespace {

std::string utc_timestamp() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  const int64_t millis =
      std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

double round_ms(double ms) { return std::round(ms * 100.0) / 100.0; }

}  // namespace

std::string format_access_record(const AccessRecord& r) {
  nlohmann::ordered_json line;
  line["ts"] = utc_timestamp();
  if (!r.id.empty()) line["id"] = r.id;
  line["method"] = r.method;
  line["path"] = r.path;
  line["status"] = r.status;
  if (!r.remote.empty()) line["remote"] = r.remote;
  if (r.prompt_tokens >= 0) {
    line["stream"] = r.stream;
    line["prompt_tokens"] = r.prompt_tokens;
    line["completion_tokens"] = std::max<int64_t>(r.completion_tokens, 0);
  }
  if (r.ttft_ms >= 0) line["ttft_ms"] = round_ms(r.ttft_ms);
  line["total_ms"] = round_ms(r.total_ms);
  if (!r.finish_reason.empty()) line["finish_reason"] = r.finish_reason;
  if (!r.error.empty()) line["error"] = r.error;
  return line.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void AccessLog::write(const AccessRecord& record) {
  if (!enabled_) return;
  const std::string line = format_access_record(record) + "\n";
  std::lock_guard<std::mutex> lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

}  // namespace anvil::server
