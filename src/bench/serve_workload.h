// What `bench serve` sends and when: prompts (random token ids, random words, or a dataset file),
// per-request lengths, the JSON request bodies, and the arrival schedule (Poisson / gamma).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "anvil/status.h"
#include "bench/serve_bench.h"

namespace anvil {

// /v1/chat/completions (and any path ending in chat/completions) sends `messages`; anything
// else is a completions endpoint and sends `prompt`.
bool is_chat_endpoint(const std::string& endpoint);

// One prompt of a --dataset file: text, or token ids (JSONL only), and its own output length.
struct ServeDatasetEntry {
  nlohmann::json prompt;              // a string, or an array of token ids
  std::optional<int64_t> output_len;  // else --output-len
};

// A `.jsonl` file holds one {"prompt": "..." | [ids], "output_len": N} object per line; any other
// file is text with one prompt per line. Blank lines are skipped. Errors name the file and line.
Result<std::vector<ServeDatasetEntry>> read_serve_dataset(const std::string& path);

// One request to send.
struct ServeRequestSpec {
  nlohmann::json prompt;        // completions: token ids or text; chat: the user message's text
  int64_t output_len = 0;       // max_tokens
  int64_t known_prompt_tokens = 0;  // the token-id prompt's length; 0 for text (usage counts it)
};

// Independent request streams of one benchmark, so the timed prompts of a run never repeat the
// test request's or the warm-up's (a prefix cache would flatter the run otherwise).
enum class ServeStream : uint64_t { ServeStreamTest = 0, ServeStreamWarmup = 1, ServeStreamTimed = 2 };

// `count` requests for stream `stream` of concurrency level `level`. Random prompts (no dataset):
// completions get `input_len`-long lists of ids uniform in [0, random_vocab_size); chat gets
// `input_len` random English words (about one token each; the server's usage has the true count).
// Lengths are uniform in [len * (1 - range_ratio), len * (1 + range_ratio)], at least 1. A dataset
// is used in order from its start, wrapping around, with its own output lengths where given.
std::vector<ServeRequestSpec> make_serve_requests(const ServeBenchOptions& options,
                                                  const std::vector<ServeDatasetEntry>& dataset, int64_t count,
                                                  ServeStream stream, size_t level);

// The JSON body of one streamed request: model, prompt or messages, max_tokens, temperature 0,
// stream with usage, ignore_eos (when set), then `extra_body`'s fields over these.
nlohmann::json serve_request_body(const ServeRequestSpec& request, const std::string& model, bool chat,
                                  bool ignore_eos, const nlohmann::json& extra_body);

// Send times (seconds from the run's start) of `count` requests: the first at 0, then gaps drawn
// from a gamma distribution with shape `burstiness` and mean 1 / rate (burstiness 1: Poisson
// arrivals; below 1 burstier, above 1 more regular). An infinite rate sends everything at 0.
std::vector<double> arrival_offsets_s(int64_t count, double request_rate, double burstiness, uint64_t seed);

}  // namespace anvil
