// Access log lines: one JSON object per request, with the fields that apply.
#include "server/access_log.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace anvil::server {
namespace {

TEST(AccessLog, CompletionRecord) {
  AccessRecord r;
  r.id = "cmpl-1";
  r.method = "POST";
  r.path = "/v1/completions";
  r.remote = "127.0.0.1";
  r.status = 200;
  r.stream = true;
  r.prompt_tokens = 5;
  r.completion_tokens = 16;
  r.ttft_ms = 12.345;
  r.total_ms = 80.0;
  r.finish_reason = "length";
  const std::string line = format_access_record(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["id"], "cmpl-1");
  EXPECT_EQ(j["status"], 200);
  EXPECT_EQ(j["stream"], true);
  EXPECT_EQ(j["prompt_tokens"], 5);
  EXPECT_EQ(j["completion_tokens"], 16);
  EXPECT_DOUBLE_EQ(j["ttft_ms"].get<double>(), 12.35);
  EXPECT_EQ(j["finish_reason"], "length");
  EXPECT_EQ(j["ts"].get<std::string>().size(), 24u);  // 2025-01-31T12:00:00.123Z
  EXPECT_EQ(line.rfind("{\"ts\":", 0), 0u);            // the timestamp first, for humans reading the log
}

TEST(AccessLog, ErrorRecordLeavesOutWhatDoesNotApply) {
  AccessRecord r;
  r.method = "POST";
  r.path = "/v1/completions";
  r.status = 400;
  r.error = std::string("bad \xff byte");  // invalid UTF-8 must not throw
  const nlohmann::json j = nlohmann::json::parse(format_access_record(r));
  EXPECT_FALSE(j.contains("id"));
  EXPECT_FALSE(j.contains("prompt_tokens"));
  EXPECT_FALSE(j.contains("ttft_ms"));
  EXPECT_EQ(j["status"], 400);
  EXPECT_EQ(j["error"], "bad \xef\xbf\xbd byte");
}

TEST(AccessLog, WritesWholeLines) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  AccessLog log(true, out);
  AccessRecord r;
  r.method = "GET";
  r.path = "/health";
  r.status = 200;
  log.write(r);
  log.write(r);
  AccessLog disabled(false, out);
  disabled.write(r);
  std::rewind(out);
  char buffer[1024] = {};
  const size_t n = std::fread(buffer, 1, sizeof(buffer) - 1, out);
  std::fclose(out);
  const std::string text(buffer, n);
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 2);
}

}  // namespace
}  // namespace anvil::server
