// Unigram (SentencePiece UNIGRAM, GGUF tokenizer.ggml.model = t5) encoder factory.
#pragma once

#include <memory>

#include "anvil/status.h"
#include "tokenizer/encoder.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Viterbi segmentation that maximizes the sum of piece scores, as SentencePiece's unigram model
// does; characters no piece covers become byte tokens (byte fallback) or <unk>.
Result<std::unique_ptr<Encoder>> make_unigram_encoder(const Vocab& vocab);

}  // namespace anvil
