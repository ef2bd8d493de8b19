// Base log-probability file: writer and reader (format in logprob_file.h and docs/EVAL.md).
#include "eval/logprob_file.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

namespace anvil {
namespace {

constexpr char kMagic[8] = {'A', 'N', 'V', 'I', 'L', 'L', 'P', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint32_t kMaxLabelBytes = 4096;
constexpr size_t kFixedHeaderBytes = 8 + 6 * 4 + 8 + 4;  // magic, six u32, fingerprint, label length

uint32_t dtype_code(DType dtype) { return dtype == DType::F16 ? 1 : 0; }

template <typename T>
void put(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));
  out.append(bytes, sizeof(T));
}

template <typename T>
T get(const char*& cursor) {
  T value;
  std::memcpy(&value, cursor, sizeof(T));
  cursor += sizeof(T);
  return value;
}

}  // namespace

ChunkPlan LogprobFileHeader::plan() const {
  ChunkPlan p;
  p.n_ctx = n_ctx;
  p.n_chunks = n_chunks;
  p.first = n_ctx / 2;
  return p;
}

uint64_t LogprobFileHeader::chunk_bytes() const {
  return static_cast<uint64_t>(plan().scored_per_chunk()) * static_cast<uint64_t>(vocab_size) *
         (dtype == DType::F16 ? 2u : 4u);
}

uint64_t vocab_fingerprint(const Vocab& vocab) {
  if (vocab.empty()) return 0;
  uint64_t hash = 1469598103934665603ull;
  auto mix = [&hash](unsigned char byte) {
    hash ^= byte;
    hash *= 1099511628211ull;
  };
  for (const std::string& piece : vocab.tokens) {
    for (char ch : piece) mix(static_cast<unsigned char>(ch));
    mix(0xFF);  // not valid UTF-8, so it cannot be part of a piece: separates "ab","c" from "a","bc"
  }
  return hash == 0 ? 1 : hash;
}

// ---- writer ------------------------------------------------------------------------------------

Result<std::unique_ptr<LogprobFileWriter>> LogprobFileWriter::create(const std::string& path,
                                                                     const LogprobFileHeader& header,
                                                                     std::span<const int32_t> tokens) {
  if (header.dtype != DType::F32 && header.dtype != DType::F16)
    return Status::error(fmt::format("{}: base log-probs are stored as f32 or f16, not {}", path,
                                     dtype_name(header.dtype)));
  if (header.vocab_size <= 0 || header.n_ctx < 4 || header.n_chunks <= 0 || header.vocab_size > UINT32_MAX ||
      header.n_ctx > UINT32_MAX || header.n_chunks > UINT32_MAX)
    return Status::error(fmt::format("{}: internal: implausible header (vocab {}, n_ctx {}, chunks {})", path,
                                     header.vocab_size, header.n_ctx, header.n_chunks));
  if (static_cast<int64_t>(tokens.size()) != header.n_chunks * header.n_ctx)
    return Status::error(fmt::format("{}: internal: {} tokens for {} chunks of {}", path, tokens.size(),
                                     header.n_chunks, header.n_ctx));
  const std::string label = header.model.substr(0, kMaxLabelBytes);

  std::unique_ptr<LogprobFileWriter> writer(new LogprobFileWriter(path, header));
  writer->out_.open(path, std::ios::binary | std::ios::trunc);
  if (!writer->out_) return Status::error(fmt::format("{}: cannot create the base log-probability file", path));
  std::string bytes(kMagic, sizeof(kMagic));
  put<uint32_t>(bytes, kVersion);
  put<uint32_t>(bytes, dtype_code(header.dtype));
  put<uint32_t>(bytes, static_cast<uint32_t>(header.vocab_size));
  put<uint32_t>(bytes, static_cast<uint32_t>(header.n_ctx));
  put<uint32_t>(bytes, static_cast<uint32_t>(header.n_chunks));
  put<uint32_t>(bytes, static_cast<uint32_t>(header.n_ctx / 2));
  put<uint64_t>(bytes, header.vocab_fingerprint);
  put<uint32_t>(bytes, static_cast<uint32_t>(label.size()));
  bytes += label;
  writer->out_.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  writer->out_.write(reinterpret_cast<const char*>(tokens.data()), static_cast<std::streamsize>(tokens.size_bytes()));
  if (!writer->out_) return Status::error(fmt::format("{}: cannot write the header (disk full?)", path));
  return writer;
}

Status LogprobFileWriter::write_chunk(std::span<const float> rows) {
  const uint64_t expected = static_cast<uint64_t>(header_.plan().scored_per_chunk()) * header_.vocab_size;
  if (rows.size() != expected)
    return Status::error(fmt::format("{}: internal: chunk of {} log-probs, expected {}", path_, rows.size(), expected));
  if (chunks_written_ >= header_.n_chunks)
    return Status::error(fmt::format("{}: internal: more chunks than the header's {}", path_, header_.n_chunks));
  if (header_.dtype == DType::F16) {
    half_.resize(rows.size());
    // f16's largest finite value is 65504: clamp so a vanishing probability stays finite, not -inf.
    for (size_t i = 0; i < rows.size(); ++i) half_[i] = float_to_fp16(std::max(rows[i], -65504.0f));
    out_.write(reinterpret_cast<const char*>(half_.data()), static_cast<std::streamsize>(half_.size() * 2));
  } else {
    out_.write(reinterpret_cast<const char*>(rows.data()), static_cast<std::streamsize>(rows.size_bytes()));
  }
  if (!out_) return Status::error(fmt::format("{}: cannot write chunk {} (disk full?)", path_, chunks_written_ + 1));
  ++chunks_written_;
  return Status::ok();
}

Status LogprobFileWriter::close() {
  out_.close();
  if (!out_) return Status::error(fmt::format("{}: cannot finish writing (disk full?)", path_));
  if (chunks_written_ != header_.n_chunks)
    return Status::error(fmt::format("{}: only {} of {} chunks were written", path_, chunks_written_,
                                     header_.n_chunks));
  return Status::ok();
}

// ---- reader ------------------------------------------------------------------------------------

Result<std::unique_ptr<LogprobFileReader>> LogprobFileReader::open(const std::string& path) {
  std::error_code ec;
  const uint64_t file_size = std::filesystem::file_size(path, ec);
  if (ec) return Status::error(fmt::format("{}: cannot read the base log-probability file ({})", path, ec.message()));
  std::unique_ptr<LogprobFileReader> reader(new LogprobFileReader(path));
  reader->in_.open(path, std::ios::binary);
  if (!reader->in_) return Status::error(fmt::format("{}: cannot open the base log-probability file", path));

  const std::string not_ours = fmt::format(
      "{}: not an anvil base log-probability file (write one with anvil perplexity --kl-divergence-base FILE)", path);
  char fixed[kFixedHeaderBytes];
  if (file_size < kFixedHeaderBytes || !reader->in_.read(fixed, sizeof(fixed))) return Status::error(not_ours);
  if (std::memcmp(fixed, kMagic, 7) != 0) return Status::error(not_ours);
  const char* cursor = fixed + sizeof(kMagic);
  const uint32_t version = get<uint32_t>(cursor);
  if (fixed[7] != kMagic[7] || version != kVersion)
    return Status::error(fmt::format("{}: base log-probability file version {}, this anvil reads version {}", path,
                                     version, kVersion));
  const uint32_t dtype = get<uint32_t>(cursor);
  LogprobFileHeader& h = reader->header_;
  h.vocab_size = get<uint32_t>(cursor);
  h.n_ctx = get<uint32_t>(cursor);
  h.n_chunks = get<uint32_t>(cursor);
  const uint32_t first = get<uint32_t>(cursor);
  h.vocab_fingerprint = get<uint64_t>(cursor);
  const uint32_t label_bytes = get<uint32_t>(cursor);
  if (dtype > 1 || h.vocab_size <= 0 || h.vocab_size > (1 << 24) || h.n_ctx < 4 || h.n_ctx > (1 << 24) ||
      h.n_chunks <= 0 || first != h.n_ctx / 2 || label_bytes > kMaxLabelBytes)
    return Status::error(fmt::format("{}: corrupt header (dtype code {}, vocab {}, n_ctx {}, chunks {}, first {})", path,
                                     dtype, h.vocab_size, h.n_ctx, h.n_chunks, first));
  h.dtype = dtype == 1 ? DType::F16 : DType::F32;

  const uint64_t n_tokens = static_cast<uint64_t>(h.n_chunks) * h.n_ctx;
  reader->rows_offset_ = kFixedHeaderBytes + label_bytes + n_tokens * sizeof(int32_t);
  const uint64_t expected = reader->rows_offset_ + h.chunk_bytes() * h.n_chunks;
  if (file_size != expected)
    return Status::error(fmt::format("{}: {} bytes, but its header ({} chunks of {} tokens, vocab {}, {}) implies {} "
                                     "(truncated: was the base run interrupted?)",
                                     path, file_size, h.n_chunks, h.n_ctx, h.vocab_size, dtype_name(h.dtype), expected));
  h.model.resize(label_bytes);
  reader->tokens_.resize(n_tokens);
  reader->in_.read(h.model.data(), label_bytes);
  reader->in_.read(reinterpret_cast<char*>(reader->tokens_.data()), static_cast<std::streamsize>(n_tokens * 4));
  if (!reader->in_) return Status::error(fmt::format("{}: cannot read the tokens", path));
  for (int32_t id : reader->tokens_)
    if (id < 0 || id >= h.vocab_size)
      return Status::error(fmt::format("{}: token id {} outside the vocabulary of {} (corrupt file)", path, id,
                                       h.vocab_size));
  return reader;
}

Status LogprobFileReader::read_chunk(int64_t chunk, std::vector<float>& rows) {
  if (chunk < 0 || chunk >= header_.n_chunks)
    return Status::error(fmt::format("{}: internal: chunk {} of {}", path_, chunk, header_.n_chunks));
  const uint64_t count = static_cast<uint64_t>(header_.plan().scored_per_chunk()) * header_.vocab_size;
  rows.resize(count);
  in_.seekg(static_cast<std::streamoff>(rows_offset_ + header_.chunk_bytes() * chunk));
  if (header_.dtype == DType::F16) {
    half_.resize(count);
    in_.read(reinterpret_cast<char*>(half_.data()), static_cast<std::streamsize>(count * 2));
    for (uint64_t i = 0; i < count; ++i) rows[i] = fp16_to_float(half_[i]);
  } else {
    in_.read(reinterpret_cast<char*>(rows.data()), static_cast<std::streamsize>(count * 4));
  }
  if (!in_) return Status::error(fmt::format("{}: cannot read chunk {}", path_, chunk + 1));
  return Status::ok();
}

}  // namespace anvil
