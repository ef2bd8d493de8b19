// The pre-tokenizer regexes of each family named by GGUF's tokenizer.ggml.pre.
#pragma once

#include <string>
#include <vector>

#include "anvil/status.h"

namespace anvil {

struct PreTokenizerSpec {
  std::vector<std::string> regexes;  // applied in order (see RegexSplitter)
  bool ignore_merges = false;        // Llama 3: a pre-token that is itself a token skips BPE
};

// Fails for an unknown family with a message naming it. An empty name gives llama.cpp's
// "default" list, which is what files converted without a tokenizer.ggml.pre get.
Result<PreTokenizerSpec> pretokenizer_for(const std::string& pre);

// The regexes as published in the families' tokenizer.json files, for tests and HF loading.
namespace pretokenizer_regex {
extern const char* const kGpt2;
extern const char* const kLlama3;
extern const char* const kQwen2;
}  // namespace pretokenizer_regex

}  // namespace anvil
