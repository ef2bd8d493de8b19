// SentencePiece ModelProto (protobuf wire format) to Vocab, parsed by hand: every length is checked
// against the bytes that remain, so a truncated or corrupt file is an error, never a bad read.
#include "tokenizer/sentencepiece_model.h"

#include <fmt/format.h>

#include <cmath>
#include <cstring>

#include "core/mapped_file.h"

namespace anvil {
namespace {

// Field numbers of sentencepiece_model.proto (only those anvil reads; the rest are skipped).
namespace field {
constexpr uint32_t kPieces = 1, kTrainerSpec = 2, kNormalizerSpec = 3;                  // ModelProto
constexpr uint32_t kPieceText = 1, kPieceScore = 2, kPieceType = 3;                     // SentencePiece
constexpr uint32_t kModelType = 3, kTreatWhitespaceAsSuffix = 24, kUnkId = 40,         // TrainerSpec
    kBosId = 41, kEosId = 42, kPadId = 43;
constexpr uint32_t kNormalizerName = 1, kPrecompiledCharsmap = 2, kAddDummyPrefix = 3,  // NormalizerSpec
    kRemoveExtraWhitespaces = 4, kEscapeWhitespaces = 5;
}  // namespace field

enum WireType : uint32_t { kVarint = 0, kFixed64 = 1, kLengthDelimited = 2, kFixed32 = 5 };

struct Field {
  uint32_t number = 0;
  uint32_t wire_type = 0;
  uint64_t varint = 0;      // kVarint
  uint32_t fixed32 = 0;     // kFixed32
  std::string_view bytes;   // kLengthDelimited
  size_t offset = 0;        // of the field's key in the file, for messages
};

// The fields of one message, in file order.
class WireReader {
 public:
  WireReader(std::string_view data, size_t base) : data_(data), base_(base) {}
  bool done() const { return pos_ >= data_.size(); }

  // Reads the next field; the error text says what is wrong and where.
  Status next(Field& f) {
    f = Field();
    f.offset = base_ + pos_;
    uint64_t key = 0;
    if (!read_varint(&key)) return bad(f.offset, "a truncated or overlong field key");
    f.number = static_cast<uint32_t>(key >> 3);
    f.wire_type = static_cast<uint32_t>(key & 7);
    if (f.number == 0 || (key >> 3) > 0x1FFFFFFF) return bad(f.offset, "an invalid field number");
    switch (f.wire_type) {
      case kVarint:
        if (!read_varint(&f.varint)) return bad(f.offset, fmt::format("a truncated varint (field {})", f.number));
        return Status::ok();
      case kFixed64:
        if (data_.size() - pos_ < 8) return bad(f.offset, fmt::format("a truncated 64-bit value (field {})", f.number));
        pos_ += 8;
        return Status::ok();
      case kFixed32:
        if (data_.size() - pos_ < 4) return bad(f.offset, fmt::format("a truncated 32-bit value (field {})", f.number));
        std::memcpy(&f.fixed32, data_.data() + pos_, 4);  // little-endian on every target anvil builds for
        pos_ += 4;
        return Status::ok();
      case kLengthDelimited: {
        uint64_t length = 0;
        if (!read_varint(&length)) return bad(f.offset, fmt::format("a truncated length (field {})", f.number));
        if (length > data_.size() - pos_)
          return bad(f.offset, fmt::format("field {} of {} bytes, but only {} remain", f.number, length,
                                           data_.size() - pos_));
        f.bytes = data_.substr(pos_, length);
        pos_ += length;
        return Status::ok();
      }
      default:  // groups (3, 4) are not used by SentencePiece; 6 and 7 do not exist
        return bad(f.offset, fmt::format("unsupported wire type {} (field {})", f.wire_type, f.number));
    }
  }

  // Where the bytes of a length-delimited field start, for a nested reader's error offsets.
  size_t nested_base(const Field& f) const { return base_ + static_cast<size_t>(f.bytes.data() - data_.data()); }

 private:
  bool read_varint(uint64_t* value) {
    uint64_t result = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      if (pos_ >= data_.size()) return false;
      const auto byte = static_cast<uint8_t>(data_[pos_++]);
      result |= static_cast<uint64_t>(byte & 0x7F) << shift;
      if (!(byte & 0x80)) {
        *value = result;
        return true;
      }
    }
    return false;  // more than 10 bytes
  }
  static Status bad(size_t offset, const std::string& what) {
    return Status::error(fmt::format("{} at byte {}", what, offset));
  }

  std::string_view data_;
  size_t base_;  // offset of data_ in the file
  size_t pos_ = 0;
};

// Values as the proto declares them, with the proto's defaults.
struct Piece {
  std::string_view text;
  float score = 0.0f;
  int32_t type = 1;  // NORMAL
};
struct TrainerSpec {
  int32_t model_type = 1;  // UNIGRAM
  bool treat_whitespace_as_suffix = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;
};
struct NormalizerSpec {
  std::string_view name;
  std::string_view precompiled_charsmap;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;
};

Status expect(const Field& f, WireType type, const char* what) {
  if (f.wire_type == type) return Status::ok();
  return Status::error(fmt::format("{} (field {}) has wire type {}, expected {}, at byte {}", what, f.number,
                                   f.wire_type, static_cast<uint32_t>(type), f.offset));
}
// int32 and enum values travel as varints, negative ones sign-extended to 64 bits.
int32_t as_int32(const Field& f) { return static_cast<int32_t>(static_cast<uint32_t>(f.varint)); }

Status read_piece(const WireReader& parent, const Field& message, Piece& piece) {
  WireReader r(message.bytes, parent.nested_base(message));
  Field f;
  while (!r.done()) {
    ANVIL_RETURN_IF_ERROR(r.next(f));
    if (f.number == field::kPieceText) {
      ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "piece text"));
      piece.text = f.bytes;
    } else if (f.number == field::kPieceScore) {
      ANVIL_RETURN_IF_ERROR(expect(f, kFixed32, "piece score"));
      std::memcpy(&piece.score, &f.fixed32, sizeof(float));
    } else if (f.number == field::kPieceType) {
      ANVIL_RETURN_IF_ERROR(expect(f, kVarint, "piece type"));
      piece.type = as_int32(f);
    }
  }
  return Status::ok();
}

Status read_trainer_spec(const WireReader& parent, const Field& message, TrainerSpec& spec) {
  WireReader r(message.bytes, parent.nested_base(message));
  Field f;
  while (!r.done()) {
    ANVIL_RETURN_IF_ERROR(r.next(f));
    int32_t* target = nullptr;
    bool* flag = nullptr;
    switch (f.number) {
      case field::kModelType: target = &spec.model_type; break;
      case field::kUnkId: target = &spec.unk_id; break;
      case field::kBosId: target = &spec.bos_id; break;
      case field::kEosId: target = &spec.eos_id; break;
      case field::kPadId: target = &spec.pad_id; break;
      case field::kTreatWhitespaceAsSuffix: flag = &spec.treat_whitespace_as_suffix; break;
      default: continue;
    }
    ANVIL_RETURN_IF_ERROR(expect(f, kVarint, "trainer_spec value"));
    if (target) *target = as_int32(f);
    if (flag) *flag = f.varint != 0;
  }
  return Status::ok();
}

Status read_normalizer_spec(const WireReader& parent, const Field& message, NormalizerSpec& spec) {
  WireReader r(message.bytes, parent.nested_base(message));
  Field f;
  while (!r.done()) {
    ANVIL_RETURN_IF_ERROR(r.next(f));
    switch (f.number) {
      case field::kNormalizerName:
        ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "normalizer name"));
        spec.name = f.bytes;
        break;
      case field::kPrecompiledCharsmap:
        ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "precompiled_charsmap"));
        spec.precompiled_charsmap = f.bytes;
        break;
      case field::kAddDummyPrefix:
      case field::kRemoveExtraWhitespaces:
      case field::kEscapeWhitespaces: {
        ANVIL_RETURN_IF_ERROR(expect(f, kVarint, "normalizer flag"));
        const bool value = f.varint != 0;
        if (f.number == field::kAddDummyPrefix) spec.add_dummy_prefix = value;
        else if (f.number == field::kRemoveExtraWhitespaces) spec.remove_extra_whitespaces = value;
        else spec.escape_whitespaces = value;
        break;
      }
      default: break;
    }
  }
  return Status::ok();
}

bool is_byte_piece(std::string_view piece) {
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(piece[3])) && std::isxdigit(static_cast<unsigned char>(piece[4]));
}

Result<Vocab> parse(std::string_view bytes) {
  if (bytes.empty()) return Status::error("the file is empty");
  std::vector<Piece> pieces;
  TrainerSpec trainer;
  NormalizerSpec normalizer;
  WireReader r(bytes, 0);
  Field f;
  while (!r.done()) {
    ANVIL_RETURN_IF_ERROR(r.next(f));
    // Repeated occurrences of a message field merge into one, as protobuf specifies.
    if (f.number == field::kPieces) {
      ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "piece"));
      ANVIL_RETURN_IF_ERROR(read_piece(r, f, pieces.emplace_back()));
    } else if (f.number == field::kTrainerSpec) {
      ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "trainer_spec"));
      ANVIL_RETURN_IF_ERROR(read_trainer_spec(r, f, trainer));
    } else if (f.number == field::kNormalizerSpec) {
      ANVIL_RETURN_IF_ERROR(expect(f, kLengthDelimited, "normalizer_spec"));
      ANVIL_RETURN_IF_ERROR(read_normalizer_spec(r, f, normalizer));
    }
  }
  if (pieces.empty()) return Status::error("no pieces (not a SentencePiece model?)");

  Vocab v;
  switch (trainer.model_type) {
    case 1: v.model = "t5"; break;     // UNIGRAM; GGUF (llama.cpp) calls it t5/UGM
    case 2: v.model = "llama"; break;  // BPE
    case 3: return Status::error("the model type is WORD, which anvil does not support");
    case 4: return Status::error("the model type is CHAR, which anvil does not support");
    default: return Status::error(fmt::format("unknown model type {}", trainer.model_type));
  }
  // Settings whose encoding anvil cannot reproduce exactly are refused rather than approximated.
  if (!normalizer.precompiled_charsmap.empty())
    return Status::error(fmt::format(
        "the normalizer '{}' rewrites text with a precompiled character map, which anvil cannot apply yet "
        "(only 'identity' normalization, as in Llama and Mistral, is supported)",
        normalizer.name));
  if (!normalizer.escape_whitespaces)
    return Status::error("the normalizer does not escape whitespace, which anvil does not support");
  if (trainer.treat_whitespace_as_suffix)
    return Status::error("the model puts whitespace at the end of pieces (treat_whitespace_as_suffix), "
                         "which anvil does not support");

  const auto n = static_cast<int32_t>(pieces.size());
  v.tokens.reserve(n);
  v.scores.reserve(n);
  v.token_types.reserve(n);
  for (int32_t id = 0; id < n; ++id) {
    const Piece& p = pieces[id];
    if (p.text.empty()) return Status::error(fmt::format("piece {} is empty", id));
    if (std::isnan(p.score)) return Status::error(fmt::format("piece {} has a score that is not a number", id));
    TokenType type;
    switch (p.type) {
      case 1: type = TokenType::Normal; break;
      case 2: type = TokenType::Unknown; break;
      case 3: type = TokenType::Control; break;
      case 4: type = TokenType::UserDefined; break;
      case 5: type = TokenType::Unused; break;
      case 6: type = TokenType::Byte; break;
      default: return Status::error(fmt::format("piece {} has unknown type {}", id, p.type));
    }
    if (type == TokenType::Byte && !is_byte_piece(p.text))
      return Status::error(fmt::format("byte piece {} is not of the form <0xXX>", id));
    v.tokens.emplace_back(p.text);
    v.scores.push_back(p.score);
    v.token_types.push_back(static_cast<int32_t>(type));
  }
  struct Special {
    const char* name;
    int32_t id;
    int32_t* target;
  };
  for (const Special& s : {Special{"unk_id", trainer.unk_id, &v.unk_id}, Special{"bos_id", trainer.bos_id, &v.bos_id},
                           Special{"eos_id", trainer.eos_id, &v.eos_id}, Special{"pad_id", trainer.pad_id, &v.pad_id}}) {
    if (s.id < -1 || s.id >= n)
      return Status::error(fmt::format("trainer_spec.{} is {}, outside the {} pieces", s.name, s.id, n));
    *s.target = s.id;
  }
  // SentencePiece itself adds nothing; these are the conventions of the checkpoints that ship such
  // files (Llama/Mistral prepend <s>; T5-style unigram models append </s>). tokenizer_config.json
  // overrides them when present.
  if (v.model == "llama") {
    v.add_bos = v.bos_id >= 0;
    v.add_eos = false;
  } else {
    v.add_bos = false;
    v.add_eos = v.eos_id >= 0;
  }
  v.add_space_prefix = normalizer.add_dummy_prefix;
  v.remove_extra_whitespaces = normalizer.remove_extra_whitespaces;
  return v;
}

}  // namespace

Result<Vocab> parse_sentencepiece_model(std::string_view bytes, const std::string& source) {
  Result<Vocab> vocab = parse(bytes);
  if (!vocab) return vocab.status().with_context(source);
  return vocab;
}

Result<Vocab> load_sentencepiece_model(const std::string& path) {
  ANVIL_ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::open(path));
  return parse_sentencepiece_model(
      std::string_view(reinterpret_cast<const char*>(file->data()), file->size()), path);
}

}  // namespace anvil
