// MappedFile: a read-only memory map of a whole file (weights are used in place, not copied).
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "anvil/status.h"

namespace anvil {

class MappedFile {
 public:
  static Result<std::shared_ptr<MappedFile>> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

// Reads a whole (small) file into a string; for config.json and friends.
Result<std::string> read_text_file(const std::string& path);

}  // namespace anvil
