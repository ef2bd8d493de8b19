// Tokenizer construction, token-to-bytes decoding and streaming decode.
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>

namespace anvil {
namespace {

constexpr std::string_view kSentencePieceSpace = "\xE2\x96\x81";  // "▁"

// GPT-2 byte-level BPE maps each byte to a printable code point; this is the inverse map.
const std::unordered_map<uint32_t, uint8_t>& gpt2_codepoint_to_byte() {
  static const std::unordered_map<uint32_t, uint8_t> table = [] {
    std::unordered_map<uint32_t, uint8_t> t;
    uint32_t next = 256;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      t[printable ? b : next++] = static_cast<uint8_t>(b);
    }
    return t;
  }();
  return table;
}

// Decodes one UTF-8 code point at s[i]; returns its length (0 if invalid or incomplete).
size_t utf8_sequence_length(std::string_view s, size_t i, uint32_t* codepoint) {
  const auto c = static_cast<unsigned char>(s[i]);
  size_t length;
  uint32_t cp;
  if (c < 0x80) return *codepoint = c, 1;
  if ((c & 0xE0) == 0xC0) length = 2, cp = c & 0x1F;
  else if ((c & 0xF0) == 0xE0) length = 3, cp = c & 0x0F;
  else if ((c & 0xF8) == 0xF0) length = 4, cp = c & 0x07;
  else return 0;
  if (i + length > s.size()) return 0;
  for (size_t k = 1; k < length; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3F);
  }
  *codepoint = cp;
  return length;
}

}  // namespace

Tokenizer::Tokenizer(const Vocab& vocab) : vocab_(vocab), byte_to_id_(256, -1) {
  for (int32_t id = 0; id < static_cast<int32_t>(vocab_.tokens.size()); ++id) {
    piece_to_id_.emplace(vocab_.tokens[id], id);
    const std::string& piece = vocab_.tokens[id];
    if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>') {
      const int value = std::stoi(piece.substr(3, 2), nullptr, 16);
      if (byte_to_id_[value] < 0) byte_to_id_[value] = id;
    }
  }
}

Result<std::unique_ptr<Tokenizer>> Tokenizer::create(const Vocab& vocab) {
  if (vocab.empty())
    return Status::error("this model file carries no tokenizer; give token ids with --prompt-tokens");
  if (vocab.model != "llama" && vocab.model != "gpt2")
    return Status::error(fmt::format("tokenizer model '{}' is not supported yet; give token ids with --prompt-tokens",
                                     vocab.model));
  for (const std::string& piece : vocab.tokens)
    if (piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>' &&
        !std::isxdigit(static_cast<unsigned char>(piece[3])))
      return Status::error(fmt::format("malformed byte token '{}' in the vocabulary", piece));
  return std::unique_ptr<Tokenizer>(new Tokenizer(vocab));
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool add_bos) const {
  if (vocab_.model != "llama")
    return Status::error(fmt::format("encoding text with tokenizer model '{}' is not supported yet; give token ids "
                                     "with --prompt-tokens", vocab_.model));
  std::vector<int32_t> ids;
  if (add_bos && vocab_.bos_id >= 0) ids.push_back(vocab_.bos_id);
  std::vector<int32_t> body = encode_sentencepiece(text);
  ids.insert(ids.end(), body.begin(), body.end());
  if (vocab_.add_eos && vocab_.eos_id >= 0) ids.push_back(vocab_.eos_id);
  return ids;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= vocab_.size()) return "";
  const std::string& piece = vocab_.tokens[id];
  const auto type = vocab_.token_types.empty() ? TokenType::Normal : static_cast<TokenType>(vocab_.token_types[id]);
  if (type == TokenType::Control || type == TokenType::Unused) return "";
  if (vocab_.model == "llama") {
    if (type == TokenType::Byte) return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSentencePieceSpace.size(), kSentencePieceSpace) == 0) {
        out += ' ';
        i += kSentencePieceSpace.size();
      } else {
        out += piece[i++];
      }
    }
    return out;
  }
  // gpt2: map each code point back to its byte.
  if (type == TokenType::UserDefined) return piece;
  std::string out;
  const auto& table = gpt2_codepoint_to_byte();
  for (size_t i = 0; i < piece.size();) {
    uint32_t cp = 0;
    const size_t length = utf8_sequence_length(piece, i, &cp);
    if (length == 0) return piece;
    auto it = table.find(cp);
    if (it == table.end()) return piece;
    out += static_cast<char>(it->second);
    i += length;
  }
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  StreamingDecoder decoder(*this);
  std::string out;
  for (int32_t id : ids) out += decoder.push(id);
  return out + decoder.flush();
}

std::string StreamingDecoder::push(int32_t id) {
  pending_ += tokenizer_.token_bytes(id);
  // Release the longest prefix that ends on a complete character; an invalid byte is
  // replaced so that garbage never blocks the stream forever.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    uint32_t cp;
    const size_t length = utf8_sequence_length(pending_, i, &cp);
    if (length > 0) {
      out.append(pending_, i, length);
      i += length;
      continue;
    }
    const auto c = static_cast<unsigned char>(pending_[i]);
    const size_t expected = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    bool incomplete = expected > 0 && i + expected > pending_.size();
    for (size_t k = i + 1; incomplete && k < pending_.size(); ++k)
      incomplete = (static_cast<unsigned char>(pending_[k]) & 0xC0) == 0x80;
    if (incomplete) break;
    out += "\xEF\xBF\xBD";
    ++i;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out;
  for (size_t i = 0; i < pending_.size(); ++i) out += "\xEF\xBF\xBD";
  pending_.clear();
  return out;
}

}  // namespace anvil
