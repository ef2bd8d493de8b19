// safetensors: a zero-copy reader over a memory map, and a streaming writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "anvil/status.h"
#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/tensor.h"

namespace anvil {

// File layout: u64 little-endian header length N, N bytes of JSON
//   {"__metadata__": {"k": "v"}, "name": {"dtype": "F16", "shape": [..], "data_offsets": [b, e]}}
// then the data section; offsets are relative to its start (byte 8 + N).

// The largest header accepted; real headers are a few MB, and the reference reader uses 100 MB.
inline constexpr uint64_t kSafetensorsMaxHeaderBytes = 100ull << 20;

// One tensor as listed in the header. The dtype is kept as spelled in the file, so tensors anvil
// cannot compute with yet (I8, I32, U8, F8_E4M3 scales and weights) are still listed, validated
// and reachable as raw bytes: quantization loaders read them from here.
struct SafetensorsEntry {
  std::string name;
  std::string dtype;                 // "F32", "BF16", "F8_E4M3", ... as stored
  std::vector<int64_t> shape;        // numpy order
  size_t file_offset = 0;            // absolute offset of the first byte in the file
  size_t nbytes = 0;
  const std::byte* data = nullptr;   // nbytes long: into the map, or into an aligned copy

  int64_t numel() const;
};

// Bits per element of a safetensors dtype name ("F8_E4M3" -> 8, "F4" -> 4), 0 when unknown.
int safetensors_dtype_bits(const std::string& dtype);
// The DType a safetensors dtype loads as, when anvil can compute with it (F32, F16, BF16 today).
// New rows go in the table in safetensors.cpp.
std::optional<DType> safetensors_dtype_to_anvil(const std::string& dtype);
// The safetensors spelling of a DType, or nullptr when safetensors cannot carry it (GGML blocks).
const char* safetensors_dtype_name(DType dtype);

class SafetensorsFile {
 public:
  // Maps `path` and validates the header: length, JSON, dtypes, sizes and bounds of every tensor.
  // Tensors whose bytes are not aligned to their element size (writers that do not pad the header)
  // are copied once into aligned buffers owned by this object; all others stay in the map.
  static Result<std::shared_ptr<const SafetensorsFile>> open(const std::string& path);

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }  // sorted by name
  const SafetensorsEntry* find(const std::string& name) const;
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Byte offset of the data section (8 + header length).
  size_t data_start() const { return data_start_; }
  // The read-only mapping the tensor views point into (Checkpoint::file_mappings).
  const MappedFile& mapped_file() const { return *file_; }

  // A Tensor view named `name` (F32/F16/BF16); other dtypes give "PATH: tensor NAME has dtype
  // F8_E4M3, which anvil cannot load yet". The view lives as long as this object.
  Result<Tensor> tensor(const std::string& name) const;
  Result<Tensor> tensor(const SafetensorsEntry& entry) const;

 private:
  SafetensorsFile() = default;
  Status parse_header();

  std::string path_;
  std::shared_ptr<const MappedFile> file_;
  size_t data_start_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;  // name -> position in entries_
  std::map<std::string, std::string> metadata_;
  std::vector<std::unique_ptr<std::byte[]>> aligned_copies_;
};

// Writes `tensors` (F32/F16/BF16; unique, non-empty names) and `metadata` to `path`, streaming each
// tensor's bytes after the header. The header is padded with spaces so that the data section starts
// on an 8-byte boundary, and tensors are laid out widest element first so every tensor stays
// aligned to its element size. Writes PATH.tmp and renames it, so a failed write leaves no file.
Status write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata);

}  // namespace anvil
