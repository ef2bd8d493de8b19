// Serving-benchmark workload: random prompts and lengths, datasets, request bodies, arrival times,
// and the flag parsers.
#include "bench/serve_workload.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>

#include "bench/serve_options.h"

namespace anvil {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::filesystem::path dir = std::filesystem::path(ANVIL_TEST_TMP) / "serve_workload";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(ServeWorkload, RandomTokenIdPromptsHaveTheLengthsAndVocabulary) {
  ServeBenchOptions o;
  o.input_len = 16;
  o.output_len = 8;
  o.random_vocab_size = 50;
  const std::vector<ServeRequestSpec> r = make_serve_requests(o, {}, 20, ServeStream::ServeStreamTimed, 0);
  ASSERT_EQ(r.size(), 20u);
  for (const ServeRequestSpec& spec : r) {
    ASSERT_TRUE(spec.prompt.is_array());
    EXPECT_EQ(spec.prompt.size(), 16u);
    EXPECT_EQ(spec.known_prompt_tokens, 16);
    EXPECT_EQ(spec.output_len, 8);
    for (const auto& id : spec.prompt) EXPECT_TRUE(id.get<int64_t>() >= 0 && id.get<int64_t>() < 50);
  }
  // Reproducible per seed, different per stream and per level (no prefix-cache hits across them).
  EXPECT_EQ(r[0].prompt, make_serve_requests(o, {}, 1, ServeStream::ServeStreamTimed, 0)[0].prompt);
  EXPECT_NE(r[0].prompt, make_serve_requests(o, {}, 1, ServeStream::ServeStreamWarmup, 0)[0].prompt);
  EXPECT_NE(r[0].prompt, make_serve_requests(o, {}, 1, ServeStream::ServeStreamTimed, 1)[0].prompt);
  o.seed = 1;
  EXPECT_NE(r[0].prompt, make_serve_requests(o, {}, 1, ServeStream::ServeStreamTimed, 0)[0].prompt);
}

TEST(ServeWorkload, RangeRatioSpreadsLengths) {
  ServeBenchOptions o;
  o.input_len = 100;
  o.output_len = 10;
  o.range_ratio = 0.5;
  std::set<int64_t> inputs, outputs;
  for (const ServeRequestSpec& s : make_serve_requests(o, {}, 400, ServeStream::ServeStreamTimed, 0)) {
    const auto n = static_cast<int64_t>(s.prompt.size());
    EXPECT_TRUE(n >= 50 && n <= 150) << n;
    EXPECT_TRUE(s.output_len >= 5 && s.output_len <= 15) << s.output_len;
    inputs.insert(n);
    outputs.insert(s.output_len);
  }
  EXPECT_GT(inputs.size(), 50u);
  EXPECT_EQ(outputs.size(), 11u);
}

TEST(ServeWorkload, ChatPromptsAreWords) {
  ServeBenchOptions o;
  o.endpoint = "/v1/chat/completions";
  o.input_len = 12;
  const ServeRequestSpec s = make_serve_requests(o, {}, 1, ServeStream::ServeStreamTimed, 0)[0];
  ASSERT_TRUE(s.prompt.is_string());
  const std::string text = s.prompt.get<std::string>();
  EXPECT_EQ(std::count(text.begin(), text.end(), ' '), 11);
  EXPECT_EQ(s.known_prompt_tokens, 0);  // the server's usage counts it
  EXPECT_TRUE(is_chat_endpoint("/v1/chat/completions"));
  EXPECT_TRUE(is_chat_endpoint("/openai/v1/chat/completions/"));
  EXPECT_FALSE(is_chat_endpoint("/v1/completions"));
}

TEST(ServeWorkload, RequestBodies) {
  ServeRequestSpec spec{nlohmann::json::array({1, 2, 3}), 8, 3};
  nlohmann::json body = serve_request_body(spec, "m", false, true, nlohmann::json::object());
  EXPECT_EQ(body["model"], "m");
  EXPECT_EQ(body["prompt"], nlohmann::json::array({1, 2, 3}));
  EXPECT_EQ(body["max_tokens"], 8);
  EXPECT_EQ(body["stream"], true);
  EXPECT_EQ(body["stream_options"]["include_usage"], true);
  EXPECT_EQ(body["ignore_eos"], true);
  EXPECT_FALSE(body.contains("messages"));
  ServeRequestSpec text{"hello there", 4, 0};
  body = serve_request_body(text, "m", true, false, {{"temperature", 0.7}, {"top_p", 0.9}});
  EXPECT_EQ(body["messages"][0]["role"], "user");
  EXPECT_EQ(body["messages"][0]["content"], "hello there");
  EXPECT_FALSE(body.contains("prompt"));
  EXPECT_FALSE(body.contains("ignore_eos"));
  EXPECT_EQ(body["temperature"], 0.7);  // --extra-body wins
  EXPECT_EQ(body["top_p"], 0.9);
}

TEST(ServeWorkload, TextAndJsonlDatasets) {
  const std::string text = write_temp("prompts.txt", "first prompt\n\nsecond prompt\r\n");
  Result<std::vector<ServeDatasetEntry>> lines = read_serve_dataset(text);
  ASSERT_TRUE(lines) << lines.status().message();
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_EQ((*lines)[1].prompt, "second prompt");
  EXPECT_FALSE((*lines)[0].output_len.has_value());

  const std::string jsonl =
      write_temp("prompts.jsonl", "{\"prompt\": \"tell a story\", \"output_len\": 32}\n{\"prompt\": [1, 2, 3]}\n");
  Result<std::vector<ServeDatasetEntry>> records = read_serve_dataset(jsonl);
  ASSERT_TRUE(records) << records.status().message();
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ(*(*records)[0].output_len, 32);
  ServeBenchOptions o;
  o.output_len = 5;
  const std::vector<ServeRequestSpec> specs = make_serve_requests(o, *records, 5, ServeStream::ServeStreamTimed, 0);
  ASSERT_EQ(specs.size(), 5u);  // reused in order
  EXPECT_EQ(specs[0].output_len, 32);
  EXPECT_EQ(specs[1].output_len, 5);
  EXPECT_EQ(specs[1].known_prompt_tokens, 3);
  EXPECT_EQ(specs[2].prompt, "tell a story");

  for (const auto& [content, expect] : std::vector<std::pair<std::string, std::string>>{
           {"{\"text\": \"x\"}\n", "no \"prompt\""},
           {"not json\n", "not a JSON object"},
           {"{\"prompt\": \"x\", \"output_len\": 0}\n", "output_len"},
           {"{\"prompt\": [1, -2]}\n", "token ids"},
           {"\n\n", "no prompts"}}) {
    const std::string bad = write_temp("bad.jsonl", content);
    Result<std::vector<ServeDatasetEntry>> r = read_serve_dataset(bad);
    ASSERT_FALSE(r) << content;
    EXPECT_NE(r.status().message().find(expect), std::string::npos) << r.status().message();
  }
  Result<std::vector<ServeDatasetEntry>> missing = read_serve_dataset("/nonexistent/prompts.txt");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.status().message().find("cannot open"), std::string::npos);
}

TEST(ServeWorkload, ArrivalsKeepTheRate) {
  const std::vector<double> all_at_once =
      arrival_offsets_s(5, std::numeric_limits<double>::infinity(), 1.0, 0);
  EXPECT_EQ(all_at_once, std::vector<double>(5, 0.0));
  for (double burstiness : {0.5, 1.0, 4.0}) {
    const std::vector<double> t = arrival_offsets_s(20000, 10.0, burstiness, 3);
    EXPECT_EQ(t.front(), 0.0);
    EXPECT_TRUE(std::is_sorted(t.begin(), t.end()));
    EXPECT_NEAR(t.back() / 19999.0, 0.1, 0.005) << burstiness;  // mean gap 1 / rate
    // Gap variance: shape k, scale 1/(rate k) -> variance 1 / (rate^2 k).
    double sum_sq = 0;
    for (size_t i = 1; i < t.size(); ++i) sum_sq += (t[i] - t[i - 1] - 0.1) * (t[i] - t[i - 1] - 0.1);
    EXPECT_NEAR(sum_sq / 19999.0, 0.01 / burstiness, 0.15 * 0.01 / burstiness) << burstiness;
  }
  EXPECT_EQ(arrival_offsets_s(10, 5.0, 1.0, 7), arrival_offsets_s(10, 5.0, 1.0, 7));
}

TEST(ServeOptions, ListsAndRates) {
  EXPECT_EQ(*parse_concurrency_list("1,5, 10,inf,0"), (std::vector<int64_t>{1, 5, 10, 0, 0}));
  EXPECT_EQ(*parse_percentile_list("50,90,99.9"), (std::vector<double>{50, 90, 99.9}));
  EXPECT_EQ(*parse_request_rate("2.5"), 2.5);
  EXPECT_TRUE(std::isinf(*parse_request_rate("inf")));
  for (const char* bad : {"", "1,,2", "-1", "x", "1.5"}) EXPECT_FALSE(parse_concurrency_list(bad)) << bad;
  for (const char* bad : {"", "101", "-1", "50,50", "p99"}) EXPECT_FALSE(parse_percentile_list(bad)) << bad;
  for (const char* bad : {"0", "-2", "fast", "nan", ""}) EXPECT_FALSE(parse_request_rate(bad)) << bad;
}

}  // namespace
}  // namespace anvil
