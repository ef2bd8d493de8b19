// Prompts, request bodies and arrival times for the serving benchmark, all seeded and reproducible.
#include "bench/serve_workload.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>

namespace anvil {

bool is_chat_endpoint(const std::string& endpoint) {
  const std::string suffix = "chat/completions";
  std::string path = endpoint;
  while (!path.empty() && path.back() == '/') path.pop_back();
  return path.size() >= suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// ---- --dataset ----------------------------------------------------------------------------------

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Result<ServeDatasetEntry> parse_jsonl_entry(const std::string& line, const std::string& where) {
  const nlohmann::json record = nlohmann::json::parse(line, nullptr, false);
  if (record.is_discarded() || !record.is_object())
    return Status::error(where + ": not a JSON object (a .jsonl dataset holds {\"prompt\": ..., \"output_len\": N} "
                                 "per line)");
  auto prompt = record.find("prompt");
  if (prompt == record.end()) return Status::error(where + ": no \"prompt\" field");
  ServeDatasetEntry entry;
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty()) return Status::error(where + ": \"prompt\" is empty");
  } else if (prompt->is_array()) {
    if (prompt->empty()) return Status::error(where + ": \"prompt\" is an empty list");
    for (const nlohmann::json& id : *prompt)
      if (!id.is_number_integer() || id.get<int64_t>() < 0)
        return Status::error(where + ": \"prompt\" must be a string or a list of non-negative token ids");
  } else {
    return Status::error(where + ": \"prompt\" must be a string or a list of token ids");
  }
  entry.prompt = *prompt;
  auto output_len = record.find("output_len");
  if (output_len != record.end() && !output_len->is_null()) {
    if (!output_len->is_number_integer() || output_len->get<int64_t>() < 1)
      return Status::error(where + ": \"output_len\" must be a positive integer");
    entry.output_len = output_len->get<int64_t>();
  }
  return entry;
}

}  // namespace

Result<std::vector<ServeDatasetEntry>> read_serve_dataset(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::error(path + ": cannot open the dataset");
  const bool jsonl = ends_with(path, ".jsonl");
  std::vector<ServeDatasetEntry> entries;
  std::string line;
  for (int64_t number = 1; std::getline(in, line); ++number) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    if (jsonl) {
      ANVIL_ASSIGN_OR_RETURN(ServeDatasetEntry entry, parse_jsonl_entry(line, fmt::format("{}:{}", path, number)));
      entries.push_back(std::move(entry));
    } else {
      entries.push_back({nlohmann::json(line), std::nullopt});
    }
  }
  if (in.bad()) return Status::error(path + ": read error");
  if (entries.empty()) return Status::error(path + ": the dataset has no prompts");
  return entries;
}

// ---- Requests -----------------------------------------------------------------------------------

namespace {

// Short common English words: nearly every BPE vocabulary has each (with its leading space) as
// one token, so N words make a prompt of about N tokens.
const char* const kWords[] = {
    "the",   "of",    "and",   "to",    "in",    "is",    "you",   "that",  "it",    "he",    "was",   "for",
    "on",    "are",   "as",    "with",  "his",   "they",  "at",    "be",    "this",  "have",  "from",  "or",
    "one",   "had",   "by",    "word",  "but",   "not",   "what",  "all",   "were",  "we",    "when",  "your",
    "can",   "said",  "there", "use",   "an",    "each",  "which", "she",   "do",    "how",   "their", "if",
    "will",  "up",    "other", "about", "out",   "many",  "then",  "them",  "these", "so",    "some",  "her",
    "would", "make",  "like",  "him",   "into",  "time",  "has",   "look",  "two",   "more",  "write", "go",
    "see",   "number", "no",   "way",   "could", "people", "my",   "than",  "first", "water", "been",  "call",
    "who",   "oil",   "its",   "now",   "find",  "long",  "down",  "day",   "did",   "get",   "come",  "made",
    "may",   "part",  "over",  "new",   "sound", "take",  "only",  "little", "work", "know",  "place", "year",
    "live",  "me",    "back",  "give",  "most",  "very",  "after", "thing", "our",   "just",  "name",  "good",
};

int64_t draw_length(std::mt19937_64& rng, int64_t length, double range_ratio) {
  if (range_ratio <= 0) return length;
  const auto low = static_cast<int64_t>(std::floor(static_cast<double>(length) * (1.0 - range_ratio)));
  const auto high = static_cast<int64_t>(std::floor(static_cast<double>(length) * (1.0 + range_ratio)));
  return std::max<int64_t>(1, std::uniform_int_distribution<int64_t>(std::max<int64_t>(1, low), std::max<int64_t>(1, high))(rng));
}

}  // namespace

std::vector<ServeRequestSpec> make_serve_requests(const ServeBenchOptions& options,
                                                  const std::vector<ServeDatasetEntry>& dataset, int64_t count,
                                                  ServeStream stream, size_t level) {
  std::vector<ServeRequestSpec> requests;
  requests.reserve(static_cast<size_t>(std::max<int64_t>(0, count)));
  if (!dataset.empty()) {
    for (int64_t i = 0; i < count; ++i) {
      const ServeDatasetEntry& entry = dataset[static_cast<size_t>(i) % dataset.size()];
      ServeRequestSpec spec;
      spec.prompt = entry.prompt;
      spec.output_len = entry.output_len.value_or(options.output_len);
      if (entry.prompt.is_array()) spec.known_prompt_tokens = static_cast<int64_t>(entry.prompt.size());
      requests.push_back(std::move(spec));
    }
    return requests;
  }
  std::seed_seq seed{static_cast<uint32_t>(options.seed), static_cast<uint32_t>(options.seed >> 32),
                     static_cast<uint32_t>(stream), static_cast<uint32_t>(level)};
  std::mt19937_64 rng(seed);
  const bool chat = is_chat_endpoint(options.endpoint);
  std::uniform_int_distribution<int64_t> token(0, std::max<int64_t>(1, options.random_vocab_size) - 1);
  std::uniform_int_distribution<size_t> word(0, std::size(kWords) - 1);
  for (int64_t i = 0; i < count; ++i) {
    ServeRequestSpec spec;
    const int64_t input_len = draw_length(rng, options.input_len, options.range_ratio);
    spec.output_len = draw_length(rng, options.output_len, options.range_ratio);
    if (chat) {
      std::string text;
      for (int64_t t = 0; t < input_len; ++t) {
        if (t > 0) text += ' ';
        text += kWords[word(rng)];
      }
      spec.prompt = std::move(text);
    } else {
      std::vector<int64_t> ids(static_cast<size_t>(input_len));
      for (int64_t& id : ids) id = token(rng);
      spec.prompt = std::move(ids);
      spec.known_prompt_tokens = input_len;
    }
    requests.push_back(std::move(spec));
  }
  return requests;
}

nlohmann::json serve_request_body(const ServeRequestSpec& request, const std::string& model, bool chat,
                                  bool ignore_eos, const nlohmann::json& extra_body) {
  nlohmann::json body = {{"model", model},
                         {"max_tokens", request.output_len},
                         {"temperature", 0.0},
                         {"stream", true},
                         {"stream_options", {{"include_usage", true}}}};
  if (chat) {
    body["messages"] = nlohmann::json::array({{{"role", "user"}, {"content", request.prompt}}});
  } else {
    body["prompt"] = request.prompt;
  }
  if (ignore_eos) body["ignore_eos"] = true;
  if (extra_body.is_object())
    for (auto it = extra_body.begin(); it != extra_body.end(); ++it) body[it.key()] = it.value();
  return body;
}

std::vector<double> arrival_offsets_s(int64_t count, double request_rate, double burstiness, uint64_t seed) {
  std::vector<double> offsets(static_cast<size_t>(std::max<int64_t>(0, count)), 0.0);
  if (!std::isfinite(request_rate) || offsets.empty()) return offsets;
  // Gamma(shape k, scale 1 / (rate k)) has mean 1 / rate whatever k: the rate is kept and only
  // the spread changes (vLLM's burstiness).
  std::mt19937_64 rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::gamma_distribution<double> gap(burstiness, 1.0 / (request_rate * burstiness));
  double t = 0;
  for (size_t i = 1; i < offsets.size(); ++i) {
    t += gap(rng);
    offsets[i] = t;
  }
  return offsets;
}

}  // namespace anvil
