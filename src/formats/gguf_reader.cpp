// GGUF parsing: every read is bounds-checked and every count is checked against the bytes left,
// so a corrupt or hostile file gives an error message, never a crash or a huge allocation.
#include "formats/gguf_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <limits>

namespace anvil {
namespace {

constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr int kMaxDims = 4;                  // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;          // deeper nesting is never legitimate; bounds recursion
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;

// Size in the file of one value of a fixed-size type, 0 for string/array.
size_t fixed_size(GgufType type) {
  switch (type) {
    case GgufType::UInt8: case GgufType::Int8: case GgufType::Bool: return 1;
    case GgufType::UInt16: case GgufType::Int16: return 2;
    case GgufType::UInt32: case GgufType::Int32: case GgufType::Float32: return 4;
    case GgufType::UInt64: case GgufType::Int64: case GgufType::Float64: return 8;
    case GgufType::String: case GgufType::Array: return 0;
  }
  return 0;
}

bool is_integer_type(GgufType type) {
  switch (type) {
    case GgufType::UInt8: case GgufType::Int8: case GgufType::UInt16: case GgufType::Int16:
    case GgufType::UInt32: case GgufType::Int32: case GgufType::UInt64: case GgufType::Int64:
      return true;
    default:
      return false;
  }
}

bool is_numeric_type(GgufType type) {
  return is_integer_type(type) || type == GgufType::Float32 || type == GgufType::Float64;
}

bool valid_type(uint32_t type) { return type <= static_cast<uint32_t>(GgufType::Float64); }

// Smallest number of file bytes one element of `type` can occupy (for plausibility checks).
uint64_t min_encoded_size(GgufType type) {
  if (type == GgufType::String) return 8;  // length prefix
  if (type == GgufType::Array) return 12;  // element type + count
  return fixed_size(type);
}

uint64_t load_le(const std::byte* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(std::to_integer<uint8_t>(p[i])) << (8 * i);
  return v;
}

std::string quoted_preview(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 60)) out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
  if (s.size() > 60) out += "...";
  return out + "'";
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::UInt8: return "uint8";
    case GgufType::Int8: return "int8";
    case GgufType::UInt16: return "uint16";
    case GgufType::Int16: return "int16";
    case GgufType::UInt32: return "uint32";
    case GgufType::Int32: return "int32";
    case GgufType::Float32: return "float32";
    case GgufType::Bool: return "bool";
    case GgufType::String: return "string";
    case GgufType::Array: return "array";
    case GgufType::UInt64: return "uint64";
    case GgufType::Int64: return "int64";
    case GgufType::Float64: return "float64";
  }
  return "unknown";
}

// ---- GgufValue -------------------------------------------------------------------------------

bool GgufValue::is_integer() const { return is_integer_type(type_); }

std::optional<int64_t> GgufValue::to_int() const {
  switch (type_) {
    case GgufType::UInt8: case GgufType::UInt16: case GgufType::UInt32: return static_cast<int64_t>(bits_);
    case GgufType::UInt64:
      if (bits_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      return static_cast<int64_t>(bits_);
    case GgufType::Int8: return static_cast<int8_t>(bits_);
    case GgufType::Int16: return static_cast<int16_t>(bits_);
    case GgufType::Int32: return static_cast<int32_t>(bits_);
    case GgufType::Int64: return static_cast<int64_t>(bits_);
    default: return std::nullopt;
  }
}

std::optional<double> GgufValue::to_double() const {
  if (type_ == GgufType::Float32) {
    const auto bits = static_cast<uint32_t>(bits_);
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (type_ == GgufType::Float64) {
    double d;
    std::memcpy(&d, &bits_, 8);
    return d;
  }
  if (type_ == GgufType::UInt64) return static_cast<double>(bits_);
  if (auto i = to_int()) return static_cast<double>(*i);
  return std::nullopt;
}

std::optional<bool> GgufValue::to_bool() const {
  if (type_ != GgufType::Bool) return std::nullopt;
  return bits_ != 0;
}

std::optional<std::string_view> GgufValue::to_string() const {
  if (type_ != GgufType::String) return std::nullopt;
  return str_;
}

GgufValue GgufValue::at(uint64_t i) const {
  GgufValue v;
  if (!is_array() || i >= count_) return v;
  v.type_ = element_type_;
  if (element_type_ == GgufType::String) {
    v.str_ = (*strings_)[i];
  } else if (element_type_ == GgufType::Array) {
    v = (*arrays_)[i];
  } else {
    const size_t n = fixed_size(element_type_);
    v.bits_ = load_le(raw_ + i * n, n);
  }
  return v;
}

std::string GgufValue::describe() const {
  switch (type_) {
    case GgufType::String: return "string " + quoted_preview(str_);
    case GgufType::Array: {
      std::string s = std::string("array<") + gguf_type_name(element_type_) + ">[" + std::to_string(count_) + "]";
      if (element_type_ == GgufType::String && count_ > 0 && count_ <= 4) {
        for (uint64_t i = 0; i < count_; ++i) s += (i ? ", " : " ") + quoted_preview((*strings_)[i]);
      }
      return s;
    }
    case GgufType::Bool: return bits_ ? "bool true" : "bool false";
    case GgufType::Float32: case GgufType::Float64: {
      char buf[64];
      std::snprintf(buf, sizeof(buf), "%s %g", gguf_type_name(type_), *to_double());
      return buf;
    }
    case GgufType::UInt64: return "uint64 " + std::to_string(bits_);
    default: return std::string(gguf_type_name(type_)) + " " + std::to_string(to_int().value_or(0));
  }
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

// ---- Parser ----------------------------------------------------------------------------------

class GgufParser {
 public:
  GgufParser(GgufFile& file) : f_(file), base_(file.bytes_), size_(file.size_) {}

  Status parse() {
    if (size_ < 4) return error("file is " + std::to_string(size_) + " bytes, too small to be a GGUF file");
    const auto magic = static_cast<uint32_t>(load_le(base_, 4));
    if (magic != kGgufMagic) {
      std::string seen;
      for (size_t i = 0; i < 4; ++i) {
        const auto c = std::to_integer<unsigned char>(base_[i]);
        seen += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c)) : "\\x" + hex_byte(c);
      }
      return error("not a GGUF file (starts with '" + seen + "', expected 'GGUF')");
    }
    pos_ = 4;
    uint32_t version = 0;
    ANVIL_RETURN_IF_ERROR(read_u32(version, "the version"));
    if (version == 1)
      return error("GGUF version 1 is not supported (anvil reads versions 2 and 3); convert the model again "
                   "with a current llama.cpp");
    if (version == 0x02000000 || version == 0x03000000)
      return error("big-endian GGUF files are not supported");
    if (version != 2 && version != 3)
      return error("unsupported GGUF version " + std::to_string(version) + " (anvil reads versions 2 and 3)");
    f_.version_ = version;

    uint64_t n_tensors = 0, n_kv = 0;
    ANVIL_RETURN_IF_ERROR(read_u64(n_tensors, "the tensor count"));
    ANVIL_RETURN_IF_ERROR(read_u64(n_kv, "the metadata count"));
    // Each tensor info takes at least 32 bytes and each key/value pair at least 13.
    if (n_tensors > remaining() / 32)
      return error("header claims " + std::to_string(n_tensors) + " tensors, more than a " +
                   std::to_string(size_) + "-byte file can hold");
    if (n_kv > remaining() / 13)
      return error("header claims " + std::to_string(n_kv) + " metadata entries, more than a " +
                   std::to_string(size_) + "-byte file can hold");

    // Reserve only a little: a corrupt count in a large file would otherwise still be "plausible".
    f_.metadata_.reserve(std::min<uint64_t>(n_kv, 1024));
    for (uint64_t i = 0; i < n_kv; ++i) ANVIL_RETURN_IF_ERROR(parse_key_value(i));
    ANVIL_RETURN_IF_ERROR(read_alignment());

    f_.tensors_.reserve(std::min<uint64_t>(n_tensors, 4096));
    for (uint64_t i = 0; i < n_tensors; ++i) ANVIL_RETURN_IF_ERROR(parse_tensor_info(i));

    // The data section starts at the next multiple of the alignment. Vocab-only files may end
    // right after the header without that padding.
    const uint64_t align = f_.alignment_;
    f_.data_offset_ = (pos_ + align - 1) / align * align;
    if (n_tensors > 0 && f_.data_offset_ > size_)
      return error("truncated: the tensor data section would start at byte " + std::to_string(f_.data_offset_) +
                   " but the file has " + std::to_string(size_) + " bytes");
    for (GgufTensorInfo& t : f_.tensors_) ANVIL_RETURN_IF_ERROR(place_tensor(t));
    return Status::ok();
  }

 private:
  Status error(const std::string& message) const { return f_.error(message); }
  size_t remaining() const { return size_ - pos_; }

  static std::string hex_byte(unsigned c) {
    const char* digits = "0123456789abcdef";
    return {digits[c >> 4], digits[c & 15]};
  }

  Status need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      return error("truncated: " + what + " at byte " + std::to_string(pos_) + " needs " + std::to_string(n) +
                   " bytes but the file has " + std::to_string(size_));
    return Status::ok();
  }
  Status read_u32(uint32_t& out, const std::string& what) {
    ANVIL_RETURN_IF_ERROR(need(4, what));
    out = static_cast<uint32_t>(load_le(base_ + pos_, 4));
    pos_ += 4;
    return Status::ok();
  }
  Status read_u64(uint64_t& out, const std::string& what) {
    ANVIL_RETURN_IF_ERROR(need(8, what));
    out = load_le(base_ + pos_, 8);
    pos_ += 8;
    return Status::ok();
  }
  Status read_string(std::string_view& out, const std::string& what) {
    uint64_t len = 0;
    ANVIL_RETURN_IF_ERROR(read_u64(len, "the length of " + what));
    if (len > remaining())
      return error("truncated: " + what + " at byte " + std::to_string(pos_) + " claims " + std::to_string(len) +
                   " bytes but the file has " + std::to_string(size_));
    out = std::string_view(reinterpret_cast<const char*>(base_ + pos_), len);
    pos_ += len;
    return Status::ok();
  }

  Status parse_key_value(uint64_t index) {
    std::string_view key;
    ANVIL_RETURN_IF_ERROR(read_string(key, "metadata key #" + std::to_string(index)));
    const std::string what = "metadata key " + std::string(key);
    if (f_.metadata_index_.count(key)) return error("duplicate " + what);
    uint32_t type = 0;
    ANVIL_RETURN_IF_ERROR(read_u32(type, "the type of " + what));
    GgufKeyValue kv;
    kv.key = std::string(key);
    ANVIL_RETURN_IF_ERROR(parse_value(type, kv.value, what, 0));
    f_.metadata_index_.emplace(kv.key, f_.metadata_.size());
    f_.metadata_.push_back(std::move(kv));
    return Status::ok();
  }

  Status parse_value(uint32_t type_id, GgufValue& v, const std::string& what, int depth) {
    if (!valid_type(type_id)) return error(what + " has unknown value type " + std::to_string(type_id));
    v.type_ = static_cast<GgufType>(type_id);
    if (v.type_ == GgufType::String) return read_string(v.str_, what);
    if (v.type_ != GgufType::Array) {
      const size_t n = fixed_size(v.type_);
      ANVIL_RETURN_IF_ERROR(need(n, what));
      v.bits_ = load_le(base_ + pos_, n);
      pos_ += n;
      if (v.type_ == GgufType::Bool && v.bits_ > 1)
        return error(what + " is a bool with value " + std::to_string(v.bits_));
      return Status::ok();
    }

    if (depth >= kMaxArrayNesting) return error(what + " nests arrays more than " + std::to_string(kMaxArrayNesting) + " deep");
    uint32_t element_type = 0;
    ANVIL_RETURN_IF_ERROR(read_u32(element_type, "the element type of " + what));
    if (!valid_type(element_type))
      return error(what + " is an array of unknown value type " + std::to_string(element_type));
    v.element_type_ = static_cast<GgufType>(element_type);
    ANVIL_RETURN_IF_ERROR(read_u64(v.count_, "the length of " + what));
    const uint64_t min_size = min_encoded_size(v.element_type_);
    if (v.count_ > remaining() / min_size)
      return error("truncated: " + what + " claims " + std::to_string(v.count_) + " elements of type " +
                   gguf_type_name(v.element_type_) + " but only " + std::to_string(remaining()) +
                   " bytes remain in the file");
    // Strings and nested arrays grow as they are parsed (not reserved up front from the claimed
    // count), so memory stays proportional to the bytes actually consumed even when nested
    // arrays each claim as many elements as the rest of the file could hold.
    if (v.element_type_ == GgufType::String) {
      auto strings = std::make_shared<std::vector<std::string_view>>();
      for (uint64_t i = 0; i < v.count_; ++i) {
        // Fast path for vocabularies of 100k+ tokens: no message is built unless a read fails.
        if (remaining() >= 8) {
          const uint64_t len = load_le(base_ + pos_, 8);
          if (len <= remaining() - 8) {
            strings->emplace_back(reinterpret_cast<const char*>(base_ + pos_ + 8), len);
            pos_ += 8 + len;
            continue;
          }
        }
        std::string_view s;
        ANVIL_RETURN_IF_ERROR(read_string(s, what + "[" + std::to_string(i) + "]"));
        strings->push_back(s);  // not reached: the fast path only falls through on a failing read
      }
      v.strings_ = std::move(strings);
    } else if (v.element_type_ == GgufType::Array) {
      auto arrays = std::make_shared<std::vector<GgufValue>>();
      for (uint64_t i = 0; i < v.count_; ++i) {
        GgufValue element;
        ANVIL_RETURN_IF_ERROR(parse_value(element_type, element, what + "[" + std::to_string(i) + "]", depth + 1));
        arrays->push_back(std::move(element));
      }
      v.arrays_ = std::move(arrays);
    } else {
      v.raw_ = base_ + pos_;  // the plausibility check above proved the elements are in the file
      pos_ += v.count_ * min_size;
      if (v.element_type_ == GgufType::Bool) {
        for (uint64_t i = 0; i < v.count_; ++i)
          if (std::to_integer<uint8_t>(v.raw_[i]) > 1) return error(what + "[" + std::to_string(i) + "] is not a valid bool");
      }
    }
    return Status::ok();
  }

  Status read_alignment() {
    const GgufValue* value = f_.find("general.alignment");
    if (!value) return Status::ok();
    const std::optional<int64_t> align = value->to_int();
    if (!align || *align <= 0 || static_cast<uint64_t>(*align) > kMaxAlignment || (*align & (*align - 1)) != 0)
      return error("general.alignment must be a power of two, got " + value->describe());
    f_.alignment_ = static_cast<uint64_t>(*align);
    return Status::ok();
  }

  Status parse_tensor_info(uint64_t index) {
    std::string_view name;
    ANVIL_RETURN_IF_ERROR(read_string(name, "the name of tensor #" + std::to_string(index)));
    GgufTensorInfo t;
    t.name = std::string(name);
    const std::string what = "tensor " + t.name;
    if (f_.tensor_index_.count(t.name)) return error("duplicate " + what);

    uint32_t n_dims = 0;
    ANVIL_RETURN_IF_ERROR(read_u32(n_dims, "the dimension count of " + what));
    if (n_dims < 1 || n_dims > kMaxDims)
      return error(what + " has " + std::to_string(n_dims) + " dimensions (expected 1 to 4)");
    int64_t numel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t ne = 0;
      ANVIL_RETURN_IF_ERROR(read_u64(ne, "the dimensions of " + what));
      if (ne == 0 || ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        return error(what + " has invalid dimension " + std::to_string(ne));
      if (__builtin_mul_overflow(numel, static_cast<int64_t>(ne), &numel))
        return error(what + " has too many elements (dimensions overflow)");
      t.ne.push_back(static_cast<int64_t>(ne));
    }
    ANVIL_RETURN_IF_ERROR(read_u32(t.ggml_type, "the type of " + what));
    const std::optional<DType> dtype = dtype_from_ggml(t.ggml_type);
    if (!dtype)
      return error(what + " has type " + ggml_type_name(t.ggml_type) + ", which anvil cannot read yet");
    t.dtype = *dtype;
    const DTypeInfo& info = dtype_info(t.dtype);
    if (t.ne[0] % info.block_elems != 0)
      return error(what + " has rows of " + std::to_string(t.ne[0]) + " elements, not a multiple of the " +
                   info.name + " block size " + std::to_string(info.block_elems));
    uint64_t nbytes = 0;
    if (__builtin_mul_overflow(static_cast<uint64_t>(numel / info.block_elems), static_cast<uint64_t>(info.block_bytes),
                               &nbytes) ||
        nbytes > size_)
      return error(what + " " + shape_of(t) + " needs more bytes than the file has (" + std::to_string(size_) + ")");
    t.nbytes = static_cast<size_t>(nbytes);
    ANVIL_RETURN_IF_ERROR(read_u64(t.offset, "the data offset of " + what));
    f_.tensor_index_.emplace(t.name, f_.tensors_.size());
    f_.tensors_.push_back(std::move(t));
    return Status::ok();
  }

  // Checks the tensor's data lies inside the file (and is aligned) and points at it.
  Status place_tensor(GgufTensorInfo& t) {
    if (t.offset % f_.alignment_ != 0)
      return error("tensor " + t.name + " has data offset " + std::to_string(t.offset) + ", not a multiple of the alignment " +
                   std::to_string(f_.alignment_));
    const uint64_t data_bytes = size_ - f_.data_offset_;
    if (t.offset > data_bytes || t.nbytes > data_bytes - t.offset)
      return error("tensor " + t.name + " " + shape_of(t) + " (" + std::to_string(t.nbytes) + " bytes at data offset " +
                   std::to_string(t.offset) + ") extends past the end of the file (truncated?)");
    t.data = base_ + f_.data_offset_ + t.offset;
    return Status::ok();
  }

  static std::string shape_of(const GgufTensorInfo& t) {
    std::string s = "[";
    for (size_t i = 0; i < t.ne.size(); ++i) s += (i ? ", " : "") + std::to_string(t.ne[i]);
    return s + "] " + dtype_name(t.dtype);
  }

  GgufFile& f_;
  const std::byte* base_;
  size_t size_;
  size_t pos_ = 0;
};

// ---- GgufFile --------------------------------------------------------------------------------

Status GgufFile::error(const std::string& message) const { return Status::error(path_ + ": " + message); }

Result<GgufFile> GgufFile::open(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> mapped, MappedFile::open(path));
  GgufFile file;
  file.path_ = path;
  file.bytes_ = mapped->data();
  file.size_ = mapped->size();
  file.file_ = std::move(mapped);
  GgufParser parser(file);
  ANVIL_RETURN_IF_ERROR(parser.parse());
  return file;
}

Result<GgufFile> GgufFile::open_memory(const void* data, size_t size, std::string name) {
  GgufFile file;
  file.path_ = std::move(name);
  file.bytes_ = static_cast<const std::byte*>(data);
  file.size_ = data ? size : 0;
  GgufParser parser(file);
  ANVIL_RETURN_IF_ERROR(parser.parse());
  return file;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufValue*> GgufFile::require(std::string_view key) const {
  const GgufValue* v = find(key);
  if (!v) return error("missing required metadata key " + std::string(key));
  return v;
}

namespace {
Status wrong_type(const std::string& path, std::string_view key, const GgufValue& v, const char* expected) {
  return Status::error(path + ": metadata key " + std::string(key) + " is " + v.describe() + ", expected " + expected);
}
}  // namespace

Result<std::string> GgufFile::get_string(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(const GgufValue* v, require(key));
  if (!v->is_string()) return wrong_type(path_, key, *v, "a string");
  return std::string(*v->to_string());
}
Result<std::string> GgufFile::get_string(std::string_view key, std::string fallback) const {
  if (!has(key)) return fallback;
  return get_string(key);
}

Result<int64_t> GgufFile::get_int(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(const GgufValue* v, require(key));
  const std::optional<int64_t> i = v->to_int();
  if (!i) return wrong_type(path_, key, *v, "an integer");
  return *i;
}
Result<int64_t> GgufFile::get_int(std::string_view key, int64_t fallback) const {
  if (!has(key)) return fallback;
  return get_int(key);
}

Result<double> GgufFile::get_float(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(const GgufValue* v, require(key));
  const std::optional<double> d = v->to_double();
  if (!d) return wrong_type(path_, key, *v, "a number");
  return *d;
}
Result<double> GgufFile::get_float(std::string_view key, double fallback) const {
  if (!has(key)) return fallback;
  return get_float(key);
}

Result<bool> GgufFile::get_bool(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(const GgufValue* v, require(key));
  const std::optional<bool> b = v->to_bool();
  if (!b) return wrong_type(path_, key, *v, "a bool");
  return *b;
}
Result<bool> GgufFile::get_bool(std::string_view key, bool fallback) const {
  if (!has(key)) return fallback;
  return get_bool(key);
}

Result<GgufValue> GgufFile::get_array(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(const GgufValue* v, require(key));
  if (!v->is_array()) return wrong_type(path_, key, *v, "an array");
  return *v;
}

Result<std::vector<std::string>> GgufFile::get_string_array(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(GgufValue v, get_array(key));
  if (v.element_type() != GgufType::String) return wrong_type(path_, key, v, "an array of strings");
  std::vector<std::string> out;
  out.reserve(v.size());
  for (uint64_t i = 0; i < v.size(); ++i) out.emplace_back(*v.at(i).to_string());
  return out;
}

Result<std::vector<float>> GgufFile::get_float_array(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(GgufValue v, get_array(key));
  if (!is_numeric_type(v.element_type())) return wrong_type(path_, key, v, "an array of numbers");
  std::vector<float> out;
  out.reserve(v.size());
  for (uint64_t i = 0; i < v.size(); ++i) out.push_back(static_cast<float>(*v.at(i).to_double()));
  return out;
}

Result<std::vector<int64_t>> GgufFile::get_int_array(std::string_view key) const {
  ANVIL_ASSIGN_OR_RETURN(GgufValue v, get_array(key));
  if (!is_integer_type(v.element_type())) return wrong_type(path_, key, v, "an array of integers");
  std::vector<int64_t> out;
  out.reserve(v.size());
  for (uint64_t i = 0; i < v.size(); ++i) {
    const std::optional<int64_t> x = v.at(i).to_int();
    if (!x) return error("metadata key " + std::string(key) + "[" + std::to_string(i) + "] does not fit in int64");
    out.push_back(*x);
  }
  return out;
}

}  // namespace anvil
