// safetensors reading (validated header, tensors viewed in place) and streaming writing.
#include "formats/safetensors.h"

#include "core/json_error.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <numeric>
#include <set>

#include <nlohmann/json.hpp>

namespace anvil {
namespace {

using json = nlohmann::json;

// Every dtype the safetensors spec names. `anvil` is set where anvil can compute with the type;
// adding a quantized type (I8 weights, F8_E4M3 with scales) starts with a DType here.
struct SafetensorsDTypeRow {
  const char* name;
  int bits;
  std::optional<DType> anvil;
};

const SafetensorsDTypeRow kDTypeRows[] = {
    {"BOOL", 8, std::nullopt},    {"U8", 8, std::nullopt},      {"I8", 8, std::nullopt},
    {"F8_E5M2", 8, std::nullopt}, {"F8_E4M3", 8, std::nullopt}, {"F8_E8M0", 8, std::nullopt},
    {"F4", 4, std::nullopt},      {"F6_E2M3", 6, std::nullopt}, {"F6_E3M2", 6, std::nullopt},
    {"I16", 16, std::nullopt},    {"U16", 16, std::nullopt},    {"F16", 16, DType::F16},
    {"BF16", 16, DType::BF16},    {"I32", 32, std::nullopt},    {"U32", 32, std::nullopt},
    {"F32", 32, DType::F32},      {"F64", 64, std::nullopt},    {"I64", 64, std::nullopt},
    {"U64", 64, std::nullopt},    {"C64", 64, std::nullopt},
};

const SafetensorsDTypeRow* find_dtype_row(const std::string& name) {
  for (const SafetensorsDTypeRow& row : kDTypeRows)
    if (name == row.name) return &row;
  return nullptr;
}

// Nested JSON deeper than this is not a safetensors header; refusing it keeps recursive helpers
// (dump of a metadata value) away from stack exhaustion on hostile input.
constexpr int kMaxJsonDepth = 64;
struct JsonTooDeep {};

std::string format_shape(const std::vector<int64_t>& shape) {
  Tensor view;
  view.shape = shape;
  return view.shape_string();
}

std::string format_offsets(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
}

// The reader's hot-path views assume natural alignment (a float* must be 4-byte aligned).
size_t required_alignment(int bits) { return bits >= 8 ? std::min<size_t>(bits / 8, 8) : 1; }

Status error(const std::string& message) { return Status::error(message); }


}  // namespace

int64_t SafetensorsEntry::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

int safetensors_dtype_bits(const std::string& dtype) {
  const SafetensorsDTypeRow* row = find_dtype_row(dtype);
  return row ? row->bits : 0;
}

std::optional<DType> safetensors_dtype_to_anvil(const std::string& dtype) {
  const SafetensorsDTypeRow* row = find_dtype_row(dtype);
  return row ? row->anvil : std::nullopt;
}

const char* safetensors_dtype_name(DType dtype) {
  for (const SafetensorsDTypeRow& row : kDTypeRows)
    if (row.anvil == dtype) return row.name;
  return nullptr;
}

Result<std::shared_ptr<const SafetensorsFile>> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  ANVIL_ASSIGN_OR_RETURN(file->file_, MappedFile::open(path));
  ANVIL_RETURN_IF_ERROR(file->parse_header());
  return std::shared_ptr<const SafetensorsFile>(std::move(file));
}

Status SafetensorsFile::parse_header() {
  const size_t file_size = file_->size();
  const std::byte* base = file_->data();
  if (file_size < 8)
    return error(path_ + ": file is " + std::to_string(file_size) +
                 " bytes, too short for a safetensors header");
  uint64_t header_len = 0;
  for (int i = 0; i < 8; ++i) header_len |= static_cast<uint64_t>(base[i]) << (8 * i);
  if (header_len > kSafetensorsMaxHeaderBytes)
    return error(path_ + ": header length " + std::to_string(header_len) +
                 " is over the 100 MB limit (not a safetensors file, or corrupt)");
  if (header_len > file_size - 8)
    return error(path_ + ": header length " + std::to_string(header_len) +
                 " runs past the end of the file (" + std::to_string(file_size) + " bytes; truncated?)");
  data_start_ = 8 + static_cast<size_t>(header_len);
  const size_t data_size = file_size - data_start_;

  const char* text = reinterpret_cast<const char*>(base + 8);
  json header;
  try {
    auto depth_guard = [](int depth, json::parse_event_t, json&) {
      if (depth > kMaxJsonDepth) throw JsonTooDeep{};
      return true;
    };
    header = json::parse(text, text + header_len, depth_guard);
  } catch (const json::exception& e) {
    return error(path_ + ": header is not valid JSON (" + json_error_text(e) + ")");
  } catch (const JsonTooDeep&) {
    return error(path_ + ": header JSON is nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  }
  if (!header.is_object()) return error(path_ + ": header is JSON but not an object");

  for (const auto& [name, desc] : header.items()) {
    if (name == "__metadata__") {
      if (!desc.is_object()) return error(path_ + ": __metadata__ is not a JSON object");
      // The spec says string values only; other writers sometimes store numbers, kept as JSON text.
      try {
        for (const auto& [key, value] : desc.items())
          metadata_[key] = value.is_string() ? value.get<std::string>() : value.dump();
      } catch (const json::exception& e) {
        return error(path_ + ": __metadata__ cannot be read (" + json_error_text(e) + ")");
      }
      continue;
    }
    const std::string where = path_ + ": tensor " + name;
    if (!desc.is_object()) return error(where + " is not described by a JSON object");

    auto dtype_it = desc.find("dtype");
    if (dtype_it == desc.end() || !dtype_it->is_string()) return error(where + " has no string 'dtype'");
    SafetensorsEntry entry;
    entry.name = name;
    entry.dtype = dtype_it->get<std::string>();
    const int bits = safetensors_dtype_bits(entry.dtype);
    if (bits == 0) return error(where + " has unknown dtype '" + entry.dtype + "'");

    auto shape_it = desc.find("shape");
    if (shape_it == desc.end() || !shape_it->is_array())
      return error(where + " has no 'shape' array");
    uint64_t numel = 1;
    for (const json& dim : *shape_it) {
      if (!dim.is_number_unsigned() || dim.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        return error(where + " has a shape entry that is not a non-negative integer: " + dim.dump());
      const uint64_t d = dim.get<uint64_t>();
      if (__builtin_mul_overflow(numel, d, &numel) || numel > static_cast<uint64_t>(INT64_MAX))
        return error(where + " has a shape whose element count overflows");
      entry.shape.push_back(static_cast<int64_t>(d));
    }

    auto offsets_it = desc.find("data_offsets");
    if (offsets_it == desc.end() || !offsets_it->is_array() || offsets_it->size() != 2 ||
        !(*offsets_it)[0].is_number_unsigned() || !(*offsets_it)[1].is_number_unsigned())
      return error(where + " has no 'data_offsets' pair of non-negative integers");
    const uint64_t begin = (*offsets_it)[0].get<uint64_t>();
    const uint64_t end = (*offsets_it)[1].get<uint64_t>();
    if (begin > end) return error(where + " has reversed data_offsets " + format_offsets(begin, end));
    if (end > data_size)
      return error(where + " has data_offsets " + format_offsets(begin, end) +
                   " past the end of the data section (" + std::to_string(data_size) +
                   " bytes; truncated file?)");
    uint64_t total_bits = 0;
    if (__builtin_mul_overflow(numel, static_cast<uint64_t>(bits), &total_bits) || total_bits % 8 != 0)
      return error(where + " has dtype " + entry.dtype + " and shape " + format_shape(entry.shape) +
                   ", which is not a whole number of bytes");
    if (end - begin != total_bits / 8)
      return error(where + " has dtype " + entry.dtype + " and shape " + format_shape(entry.shape) +
                   ", which need " + std::to_string(total_bits / 8) + " bytes, but data_offsets " +
                   format_offsets(begin, end) + " hold " + std::to_string(end - begin));

    entry.file_offset = data_start_ + static_cast<size_t>(begin);
    entry.nbytes = static_cast<size_t>(end - begin);
    entry.data = base + entry.file_offset;
    if (reinterpret_cast<uintptr_t>(entry.data) % required_alignment(bits) != 0 && entry.nbytes > 0) {
      // operator new[] returns memory aligned for any scalar type, so the copy is aligned.
      auto copy = std::make_unique<std::byte[]>(entry.nbytes);
      std::memcpy(copy.get(), entry.data, entry.nbytes);
      entry.data = copy.get();
      aligned_copies_.push_back(std::move(copy));
    }
    entries_.push_back(std::move(entry));
  }

  // Overlapping tensors are no memory hazard for a read-only map, but they mean a broken writer.
  std::vector<size_t> by_offset(entries_.size());
  std::iota(by_offset.begin(), by_offset.end(), 0);
  std::sort(by_offset.begin(), by_offset.end(),
            [&](size_t a, size_t b) { return entries_[a].file_offset < entries_[b].file_offset; });
  const SafetensorsEntry* previous = nullptr;
  for (size_t i : by_offset) {
    const SafetensorsEntry& entry = entries_[i];
    if (entry.nbytes == 0) continue;
    if (previous && entry.file_offset < previous->file_offset + previous->nbytes)
      return error(path_ + ": tensors " + previous->name + " and " + entry.name + " overlap in the data section");
    previous = &entry;
  }

  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].name] = i;
  return Status::ok();
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &entries_[it->second];
}

Result<Tensor> SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry* entry = find(name);
  if (!entry) return Status::error(path_ + ": no tensor named " + name);
  return tensor(*entry);
}

Result<Tensor> SafetensorsFile::tensor(const SafetensorsEntry& entry) const {
  std::optional<DType> dtype = safetensors_dtype_to_anvil(entry.dtype);
  if (!dtype)
    return Status::error(path_ + ": tensor " + entry.name + " has dtype " + entry.dtype +
                         ", which anvil cannot load yet");
  Tensor tensor;
  tensor.name = entry.name;
  tensor.dtype = *dtype;
  tensor.shape = entry.shape;
  tensor.data = entry.data;
  tensor.nbytes = entry.nbytes;
  return tensor;
}

Status write_safetensors(const std::string& path, const std::vector<Tensor>& tensors,
                         const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const Tensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__")
      return error(path + ": cannot write a tensor named '" + t.name + "'");
    if (!names.insert(t.name).second) return error(path + ": tensor " + t.name + " is given twice");
    if (!safetensors_dtype_name(t.dtype))
      return error(path + ": tensor " + t.name + " has type " + dtype_name(t.dtype) +
                   "; safetensors files are written from F32, F16 or BF16 tensors only");
    for (int64_t d : t.shape)
      if (d < 0) return error(path + ": tensor " + t.name + " has negative shape " + t.shape_string());
    const size_t expected = dtype_bytes(t.dtype, t.numel());
    if (t.nbytes != expected)
      return error(path + ": tensor " + t.name + " has " + std::to_string(t.nbytes) + " bytes, but " +
                   dtype_name(t.dtype) + " " + t.shape_string() + " needs " + std::to_string(expected));
    if (expected > 0 && !t.data) return error(path + ": tensor " + t.name + " has no data");
  }

  // Widest elements first: with the data section 8-aligned, every tensor stays aligned to its
  // element size without the holes the format forbids.
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return dtype_info(tensors[a].dtype).block_bytes > dtype_info(tensors[b].dtype).block_bytes;
  });

  std::string header_text;
  try {
    json header = json::object();
    uint64_t offset = 0;
    for (size_t i : order) {
      const Tensor& t = tensors[i];
      header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                        {"shape", t.shape},
                        {"data_offsets", {offset, offset + t.nbytes}}};
      offset += t.nbytes;
    }
    if (!metadata.empty()) header["__metadata__"] = metadata;
    header_text = header.dump();
  } catch (const json::exception& e) {
    return error(path + ": cannot encode the header (" + json_error_text(e) + ")");
  }
  while ((8 + header_text.size()) % 8 != 0) header_text += ' ';

  const std::string tmp_path = path + ".tmp";
  std::FILE* out = std::fopen(tmp_path.c_str(), "wb");
  if (!out) return error(tmp_path + ": cannot create: " + std::strerror(errno));
  auto fail = [&](const std::string& what) {
    const std::string reason = std::strerror(errno);
    std::fclose(out);
    std::remove(tmp_path.c_str());
    return error(tmp_path + ": " + what + ": " + reason);
  };
  unsigned char length_bytes[8];
  const uint64_t header_len = header_text.size();
  for (int i = 0; i < 8; ++i) length_bytes[i] = static_cast<unsigned char>(header_len >> (8 * i));
  if (std::fwrite(length_bytes, 1, 8, out) != 8) return fail("write failed");
  if (std::fwrite(header_text.data(), 1, header_text.size(), out) != header_text.size())
    return fail("write failed");
  for (size_t i : order) {
    const Tensor& t = tensors[i];
    if (t.nbytes > 0 && std::fwrite(t.data, 1, t.nbytes, out) != t.nbytes) return fail("write failed");
  }
  if (std::fflush(out) != 0) return fail("write failed");
  if (std::fclose(out) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path.c_str());
    return error(tmp_path + ": close failed: " + reason);
  }
  if (std::rename(tmp_path.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    std::remove(tmp_path.c_str());
    return error(path + ": cannot rename " + tmp_path + " into place: " + reason);
  }
  return Status::ok();
}

}  // namespace anvil
