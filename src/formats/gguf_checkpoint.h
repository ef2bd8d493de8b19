// Loading a GGUF file (llama.cpp's format) as a Checkpoint: config, vocabulary and mmapped weights.
#pragma once

#include <string>

#include "anvil/status.h"
#include "formats/gguf_reader.h"
#include "model/checkpoint.h"
#include "tokenizer/vocab.h"

namespace anvil {

// Maps the file and builds a Checkpoint whose tensors point into the mapping (kept alive by
// checkpoint.storage). Supports architectures "llama" and "qwen2"; checks every tensor the
// config implies is present with the expected shape.
Result<Checkpoint> load_gguf_checkpoint(const std::string& path);
// The same from an already-parsed file (e.g. GgufFile::open_memory); the tensors point into its
// bytes, which must outlive the Checkpoint when the file came from memory.
Result<Checkpoint> checkpoint_from_gguf(const GgufFile& file);

// Only the config (no tensor checks beyond what the config needs from token_embd).
Result<ModelConfig> config_from_gguf(const GgufFile& file);

// Checks that every tensor the config implies is present with the expected shape (see
// checkpoint.h); messages start with checkpoint.source. Used by the GGUF loader and writer.
Status check_checkpoint_tensors(const Checkpoint& checkpoint);

// The tokenizer.* metadata; an empty Vocab when the file has none. Works on vocab-only files.
Result<Vocab> load_gguf_vocab(const std::string& path);
Result<Vocab> vocab_from_gguf(const GgufFile& file);

}  // namespace anvil
