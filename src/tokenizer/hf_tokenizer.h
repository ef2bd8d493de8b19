// Loading a Hugging Face tokenizer.json (+ tokenizer_config.json) into a Vocab.
#pragma once

#include <string>

#include "anvil/status.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Reads DIR/tokenizer.json, or without it SentencePiece's DIR/tokenizer.model, and, when present,
// DIR/tokenizer_config.json (BOS/EOS flags, chat template). Returns an empty Vocab (ok) when the
// directory has neither tokenizer file.
Result<Vocab> load_hf_tokenizer(const std::string& dir);

// The same from the files' text; `config_json` may be empty. `source` names the input in errors.
Result<Vocab> parse_hf_tokenizer(const std::string& tokenizer_json, const std::string& config_json,
                                 const std::string& source);

}  // namespace anvil
