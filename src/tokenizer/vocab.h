// Vocab: the token table a model file carries (GGUF tokenizer.* metadata or tokenizer.json).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace anvil {

// Values are GGUF's tokenizer.ggml.token_type codes.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6
};

struct Vocab {
  std::string model;                 // tokenizer.ggml.model: "llama" (SentencePiece), "gpt2", "bert", ...
  std::string pre;                   // tokenizer.ggml.pre (pre-tokenizer family), may be empty
  std::vector<std::string> tokens;   // id -> piece as stored ("▁the", "<0x0A>", "Ġthe")
  std::vector<float> scores;         // may be empty
  std::vector<int32_t> token_types;  // TokenType values; may be empty
  std::vector<std::string> merges;   // BPE merges "a b"; may be empty
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t pad_id = -1;
  bool add_bos = true;
  bool add_eos = false;
  bool add_space_prefix = true;
  std::string chat_template;

  bool empty() const { return tokens.empty(); }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
};

}  // namespace anvil
