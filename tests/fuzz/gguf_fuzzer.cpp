// libFuzzer target: GGUF parsing, metadata access, config/vocab/checkpoint mapping and
// dequantization of the first row of every tensor, all from memory (no filesystem).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "formats/gguf_checkpoint.h"
#include "formats/gguf_reader.h"

namespace {

// Visits every value (nested arrays included) so out-of-bounds element access would show up.
void touch(const anvil::GgufValue& v, size_t& budget) {
  if (budget == 0) return;
  --budget;
  (void)v.describe();
  (void)v.to_int();
  (void)v.to_double();
  (void)v.to_bool();
  (void)v.to_string();
  for (uint64_t i = 0; i < v.size() && budget > 0; ++i) touch(v.at(i), budget);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto file = anvil::GgufFile::open_memory(data, size, "fuzz.gguf");
  if (!file.is_ok()) return 0;

  size_t budget = 1 << 16;
  for (const anvil::GgufKeyValue& kv : file->metadata()) touch(kv.value, budget);

  for (const anvil::GgufTensorInfo& t : file->tensors()) {
    const anvil::DTypeInfo& info = anvil::dtype_info(t.dtype);
    const int64_t row = t.ne[0];
    std::vector<float> out(static_cast<size_t>(row));
    info.to_float(t.data, out.data(), row);
    if (t.nbytes > 0) {
      volatile std::byte last = t.data[t.nbytes - 1];  // the whole extent must be inside the input
      (void)last;
    }
  }

  (void)anvil::config_from_gguf(*file);
  (void)anvil::vocab_from_gguf(*file);
  auto checkpoint = anvil::checkpoint_from_gguf(*file);
  if (checkpoint.is_ok()) {
    for (const auto& [name, tensor] : checkpoint->tensors) (void)tensor.row(tensor.rows() - 1);
  }
  return 0;
}
