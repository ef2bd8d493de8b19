// Paths the tests use: shared data beside the checkout and a scratch directory in the build tree.
#pragma once

#include <filesystem>
#include <string>

#include <unistd.h>

namespace anvil::testing {

inline std::string shared_data(const std::string& relative) { return std::string(ANVIL_SHARED_DATA) + "/" + relative; }

// A fresh directory under the build tree for this test. CTest runs tests as parallel
// processes, so the process id keeps two tests that use the same name apart.
inline std::string scratch_dir(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(ANVIL_TEST_TMP) / (name + "." + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace anvil::testing
