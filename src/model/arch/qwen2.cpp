// Qwen2: the Llama graph with q/k/v biases and rotate-half RoPE (even in GGUF files).
#include "model/arch_registry.h"

namespace anvil {

const ArchSpec& qwen2_arch_spec() {
  static const ArchSpec spec = {"qwen2", "Qwen2 / Qwen2.5 (QKV bias)", RopeStyle::NeoX, llama_forward};
  return spec;
}

}  // namespace anvil
