// The table of architectures anvil runs.
#include "model/arch_registry.h"

#include <array>

namespace anvil {
namespace {

std::array<const ArchSpec*, 2> all_archs() { return {&llama_arch_spec(), &qwen2_arch_spec()}; }

}  // namespace

const ArchSpec* find_arch(const std::string& name) {
  for (const ArchSpec* spec : all_archs())
    if (name == spec->name) return spec;
  return nullptr;
}

std::string supported_arch_names() {
  std::string names;
  for (const ArchSpec* spec : all_archs()) names += (names.empty() ? "" : ", ") + std::string(spec->name);
  return names;
}

}  // namespace anvil
