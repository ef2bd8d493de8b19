// GGUF reader: validates a GGUF v2/v3 file and exposes its metadata and tensor table over an mmap.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/mapped_file.h"

namespace anvil {

// GGUF metadata value types (the ids are part of the file format).
enum class GgufType : uint32_t {
  UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
  String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12
};
const char* gguf_type_name(GgufType type);  // "uint32", "array", ...

// One metadata value. Strings and array elements point into the file's bytes, so a GgufValue is
// valid only while the GgufFile it came from (or a copy/move of it) is alive.
class GgufValue {
 public:
  GgufType type() const { return type_; }
  bool is_integer() const;
  bool is_float() const { return type_ == GgufType::Float32 || type_ == GgufType::Float64; }
  bool is_string() const { return type_ == GgufType::String; }
  bool is_array() const { return type_ == GgufType::Array; }

  // Scalar conversions; nullopt when the type does not convert (or the integer does not fit).
  std::optional<int64_t> to_int() const;     // any integer type
  std::optional<double> to_double() const;   // float32/float64 and integers
  std::optional<bool> to_bool() const;       // bool only
  std::optional<std::string_view> to_string() const;

  // Arrays: element type, length and elements (any type, including nested arrays).
  GgufType element_type() const { return element_type_; }
  uint64_t size() const { return is_array() ? count_ : 0; }
  GgufValue at(uint64_t i) const;  // i < size()

  // A short rendering for messages and `anvil info` ("uint32 4096", "array<string>[32000]").
  std::string describe() const;

 private:
  friend class GgufParser;
  GgufType type_ = GgufType::UInt8;
  uint64_t bits_ = 0;     // scalar payload: little-endian bits, zero-extended
  std::string_view str_;  // String
  // Array: fixed-size elements are decoded from `raw_` on access; strings and nested arrays
  // were located while parsing (each is at least 8 bytes in the file, so this is bounded).
  GgufType element_type_ = GgufType::UInt8;
  uint64_t count_ = 0;
  const std::byte* raw_ = nullptr;
  std::shared_ptr<const std::vector<std::string_view>> strings_;
  std::shared_ptr<const std::vector<GgufValue>> arrays_;
};

struct GgufKeyValue {
  std::string key;
  GgufValue value;
};

struct GgufTensorInfo {
  std::string name;
  uint32_t ggml_type = 0;
  DType dtype = DType::F32;
  std::vector<int64_t> ne;      // GGUF order: innermost (contiguous) dimension first
  uint64_t offset = 0;          // relative to the start of the data section
  size_t nbytes = 0;
  const std::byte* data = nullptr;

  std::vector<int64_t> shape() const { return {ne.rbegin(), ne.rend()}; }  // numpy order
  int64_t numel() const;
};

class GgufFile {
 public:
  // Maps and validates the file; every error message starts with the path.
  static Result<GgufFile> open(const std::string& path);
  // Parses bytes that the caller keeps alive (and unchanged) for the GgufFile's lifetime; `name`
  // stands in for the path in messages. For fuzzing and tests.
  static Result<GgufFile> open_memory(const void* data, size_t size, std::string name);

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  size_t file_size() const { return size_; }
  // The mapping behind tensor data and metadata strings (null for open_memory).
  const std::shared_ptr<MappedFile>& mapped_file() const { return file_; }

  const std::vector<GgufKeyValue>& metadata() const { return metadata_; }  // file order
  const GgufValue* find(std::string_view key) const;
  bool has(std::string_view key) const { return find(key) != nullptr; }

  // Typed lookups. The one-argument forms fail when the key is missing; the forms with a
  // default return it for a missing key. Both fail when the value has an incompatible type.
  Result<std::string> get_string(std::string_view key) const;
  Result<std::string> get_string(std::string_view key, std::string fallback) const;
  Result<int64_t> get_int(std::string_view key) const;
  Result<int64_t> get_int(std::string_view key, int64_t fallback) const;
  Result<double> get_float(std::string_view key) const;
  Result<double> get_float(std::string_view key, double fallback) const;
  Result<bool> get_bool(std::string_view key) const;
  Result<bool> get_bool(std::string_view key, bool fallback) const;
  // Arrays; a missing key fails (check has() for optional arrays).
  Result<GgufValue> get_array(std::string_view key) const;
  Result<std::vector<std::string>> get_string_array(std::string_view key) const;
  Result<std::vector<float>> get_float_array(std::string_view key) const;
  Result<std::vector<int64_t>> get_int_array(std::string_view key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }  // file order
  const GgufTensorInfo* find_tensor(std::string_view name) const;

 private:
  friend class GgufParser;
  Status error(const std::string& message) const;
  Result<const GgufValue*> require(std::string_view key) const;

  std::string path_;
  std::shared_ptr<MappedFile> file_;
  const std::byte* bytes_ = nullptr;
  size_t size_ = 0;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<GgufKeyValue> metadata_;
  std::map<std::string, size_t, std::less<>> metadata_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;
};

}  // namespace anvil
