// Dispatches a model spec to the reader of its format.
#include "model/load_checkpoint.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <cstring>
#include <fstream>

#include "formats/gguf_checkpoint.h"
#include "formats/hf_checkpoint.h"
#include "formats/llama2c.h"
#include "model/presets.h"

namespace anvil {

Result<Checkpoint> load_checkpoint(const std::string& spec, const ProgressCallback& progress) {
  if (spec.rfind("dummy:", 0) == 0) return create_dummy_checkpoint(spec, progress);
  struct stat st {};
  if (::stat(spec.c_str(), &st) != 0)
    return Status::error(fmt::format("{}: no such file or directory (expected a GGUF file, a Hugging Face "
                                     "directory, a llama2.c checkpoint or dummy:<preset>)", spec));
  if (S_ISDIR(st.st_mode)) return load_hf_checkpoint(spec, progress);
  char magic[4] = {};
  std::ifstream in(spec, std::ios::binary);
  in.read(magic, 4);
  if (in.gcount() == 4 && std::memcmp(magic, "GGUF", 4) == 0) return load_gguf_checkpoint(spec);
  if (spec.size() > 5 && spec.compare(spec.size() - 5, 5, ".gguf") == 0)
    return Status::error(fmt::format("{}: not a GGUF file (bad magic)", spec));
  return load_llama2c_checkpoint(spec);
}

}  // namespace anvil
