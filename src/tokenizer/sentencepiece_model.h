// Loading a SentencePiece tokenizer.model (the protobuf ModelProto of Llama 1/2 and Mistral checkpoints) into a Vocab.
#pragma once

#include <string>
#include <string_view>

#include "anvil/status.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Reads the pieces (text, score, type), the special ids of the trainer spec and the normalizer's
// whitespace settings. BPE models become model "llama", unigram models model "t5" (GGUF's names).
// Truncated or corrupt files, and settings anvil cannot reproduce exactly (WORD/CHAR models, a
// precompiled normalization map, suffix whitespace), are errors that name the file.
Result<Vocab> load_sentencepiece_model(const std::string& path);

// The same from the file's bytes; `source` names the input in errors.
Result<Vocab> parse_sentencepiece_model(std::string_view bytes, const std::string& source);

}  // namespace anvil
