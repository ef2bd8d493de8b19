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

// Per-token flags that only tokenizer.json carries (GGUF has no such key): whitespace that an added
// token swallows on its left or right when it is matched in the input.
enum TokenAttr : uint8_t { kTokenAttrNone = 0, kTokenAttrLstrip = 1, kTokenAttrRstrip = 2 };

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
  int32_t eot_id = -1;               // end of turn (<|eot_id|>, <|im_end|>); found by text when unset
  int32_t sep_id = -1;               // BERT's [SEP]
  bool add_bos = true;
  bool add_eos = false;
  bool add_sep = false;              // BERT appends [SEP] (with add_bos it frames the text as [CLS] ... [SEP])
  bool add_space_prefix = true;
  bool remove_extra_whitespaces = false;
  std::string chat_template;

  // Settings that tokenizer.json states explicitly and GGUF implies by model/pre. Left at their
  // defaults for GGUF vocabularies.
  std::vector<std::string> split_regexes;  // pre-tokenizer regexes applied in order; overrides `pre`
  bool bpe_byte_level = true;        // gpt2: pieces are GPT-2 byte-to-unicode strings
  bool bpe_byte_fallback = false;    // gpt2 over raw UTF-8: unknown characters become <0xXX> tokens
  bool bpe_ignore_merges = false;    // a whole pre-token that is in the vocabulary is taken as is
  bool escape_whitespace = false;    // BPE over raw UTF-8 that writes spaces as "▁" (Llama-2 style tokenizer.json)
  // BERT normalizer. GGUF bert vocabularies are lowercased and accent-stripped unless they say
  // otherwise (llama.cpp's default); tokenizer.json states both.
  bool lowercase = true;
  bool strip_accents = true;         // NFD, then drop nonspacing marks
  // tokenizer.json's NFC/NFD/NFKC/NFKD normalizer, applied to text between special tokens before
  // encoding; empty for none (GGUF vocabularies carry no normalizer).
  std::string unicode_normal_form;
  std::vector<uint8_t> token_attrs;  // TokenAttr bits per token; may be empty

  bool empty() const { return tokens.empty(); }
  int64_t size() const { return static_cast<int64_t>(tokens.size()); }
  TokenType type(int32_t id) const {
    return token_types.empty() ? TokenType::Normal : static_cast<TokenType>(token_types[id]);
  }
};

}  // namespace anvil
