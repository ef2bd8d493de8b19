// Tokenizer facade: algorithm choice, special tokens, BOS/EOS, and decoding.
#include "tokenizer/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>

#include "tokenizer/byte_level.h"
#include "tokenizer/encoder.h"
#include "tokenizer/sentencepiece_text.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/unigram_encoder.h"
#include "tokenizer/utf8.h"

namespace anvil {
namespace {


std::string unescape_spaces(std::string_view piece) {
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpaceMark.size(), kSpaceMark) == 0) {
      out += ' ';
      i += kSpaceMark.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

bool is_byte_piece(const std::string& piece) {
  return piece.size() == 6 && piece.rfind("<0x", 0) == 0 && piece.back() == '>' &&
         std::isxdigit(static_cast<unsigned char>(piece[3])) && std::isxdigit(static_cast<unsigned char>(piece[4]));
}

bool is_whitespace_byte(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

Tokenizer::Tokenizer(const Vocab& vocab) : vocab_(vocab) {}
Tokenizer::~Tokenizer() = default;

Result<std::unique_ptr<Tokenizer>> Tokenizer::create(const Vocab& vocab) {
  if (vocab.empty())
    return Status::error("this model file carries no tokenizer; give token ids with --prompt-tokens");
  const auto n = static_cast<int32_t>(vocab.tokens.size());
  if (!vocab.token_types.empty() && vocab.token_types.size() != vocab.tokens.size())
    return Status::error(fmt::format("the vocabulary has {} token types for {} tokens", vocab.token_types.size(), n));
  if (!vocab.scores.empty() && vocab.scores.size() != vocab.tokens.size())
    return Status::error(fmt::format("the vocabulary has {} scores for {} tokens", vocab.scores.size(), n));
  for (int32_t id : {vocab.bos_id, vocab.eos_id, vocab.unk_id, vocab.pad_id, vocab.eot_id, vocab.sep_id})
    if (id >= n) return Status::error(fmt::format("special token id {} is outside the vocabulary of {}", id, n));
  for (int32_t id = 0; id < n; ++id)
    if (vocab.type(id) == TokenType::Byte && vocab.model != "gpt2" && !is_byte_piece(vocab.tokens[id]))
      return Status::error(fmt::format("malformed byte token '{}' (id {}) in the vocabulary", vocab.tokens[id], id));

  std::unique_ptr<Tokenizer> t(new Tokenizer(vocab));
  const Vocab& v = t->vocab_;
  if (!v.unicode_normal_form.empty()) {
    static const std::pair<const char*, UnicodeNormalForm> kForms[] = {
        {"NFC", UnicodeNormalForm::NFC}, {"NFD", UnicodeNormalForm::NFD},
        {"NFKC", UnicodeNormalForm::NFKC}, {"NFKD", UnicodeNormalForm::NFKD}};
    for (const auto& [name, form] : kForms)
      if (v.unicode_normal_form == name) t->normal_form_ = form;
    if (!t->normal_form_)
      return Status::error(fmt::format("unknown Unicode normal form '{}'", v.unicode_normal_form));
  }
  if (v.model == "llama") {
    ANVIL_ASSIGN_OR_RETURN(t->encoder_, make_sentencepiece_encoder(v));
    t->strip_leading_space_ = v.add_space_prefix;
  } else if (v.model == "t5") {  // SentencePiece unigram (llama.cpp's UGM)
    ANVIL_ASSIGN_OR_RETURN(t->encoder_, make_unigram_encoder(v));
    t->strip_leading_space_ = v.add_space_prefix;
  } else if (v.model == "gpt2") {
    ANVIL_ASSIGN_OR_RETURN(t->encoder_, make_bpe_encoder(v));
    t->strip_leading_space_ = v.escape_whitespace && v.add_space_prefix;
  } else if (v.model == "bert") {
    // GGUF files may name [UNK] and [SEP] only by their text.
    for (int32_t id = 0; id < n && (t->vocab_.unk_id < 0 || t->vocab_.sep_id < 0); ++id) {
      if (t->vocab_.unk_id < 0 && v.tokens[id] == "[UNK]") t->vocab_.unk_id = id;
      if (t->vocab_.sep_id < 0 && v.tokens[id] == "[SEP]") t->vocab_.sep_id = id;
    }
    ANVIL_ASSIGN_OR_RETURN(t->encoder_, make_wordpiece_encoder(v));
    t->strip_leading_space_ = true;  // every word piece that starts a word carries "▁"
  } else {
    return Status::error(fmt::format(
        "tokenizer model '{}' is not supported (anvil supports llama, t5, gpt2, bert); give token ids with --prompt-tokens",
        v.model));
  }
  t->specials_ = std::make_unique<SpecialTokenMatcher>(v);

  // Token bytes, computed once: decoding is then a lookup.
  t->token_bytes_.resize(n);
  for (int32_t id = 0; id < n; ++id) {
    const std::string& piece = v.tokens[id];
    const TokenType type = v.type(id);
    std::string& bytes = t->token_bytes_[id];
    if (type == TokenType::Control || type == TokenType::Unknown || type == TokenType::Unused) continue;
    if (type == TokenType::UserDefined) {
      bytes = piece;
    } else if (type == TokenType::Byte && is_byte_piece(piece)) {
      bytes.assign(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    } else if (v.model == "gpt2" && v.bpe_byte_level) {
      std::optional<std::string> raw = byte_level::decode(piece);
      bytes = raw ? std::move(*raw) : piece;
    } else {
      bytes = unescape_spaces(piece);
    }
  }

  // End of generation: EOS, EOT, and the turn-ending tokens of common chat formats.
  for (int32_t id : {v.eos_id, v.eot_id})
    if (id >= 0) t->end_of_generation_.push_back(id);
  static constexpr std::string_view kEndTokens[] = {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>",
                                                    "<|endoftext|>", "<|eom_id|>", "<|end_of_text|>", "<EOT>"};
  for (int32_t id = 0; id < n; ++id) {
    if (v.type(id) != TokenType::Control && v.type(id) != TokenType::UserDefined) continue;
    for (std::string_view end : kEndTokens)
      if (v.tokens[id] == end) t->end_of_generation_.push_back(id);
  }
  return t;
}

bool Tokenizer::is_end_of_generation(int32_t id) const {
  return id >= 0 && std::find(end_of_generation_.begin(), end_of_generation_.end(), id) != end_of_generation_.end();
}

void Tokenizer::encode_text(std::string_view text, bool after_special, std::vector<int32_t>& ids) const {
  if (!normal_form_) {
    encoder_->encode(text, after_special, ids);
    return;
  }
  const std::string normalized = normalize_unicode(text, *normal_form_);
  encoder_->encode(normalized, after_special, ids);
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  if (add_special && vocab_.add_bos) {
    if (vocab_.bos_id < 0) return Status::error("the vocabulary asks for a BOS token but names none");
    ids.push_back(vocab_.bos_id);
  }
  bool after_special = true;
  size_t start = 0;
  if (!specials_->empty(parse_special)) {
    for (;;) {
      const SpecialTokenMatcher::Match m = specials_->find(text, start, parse_special);
      if (m.id < 0) break;
      size_t text_end = m.begin;
      const uint8_t attrs = vocab_.token_attrs.empty() ? 0 : vocab_.token_attrs[m.id];
      if (attrs & kTokenAttrLstrip)
        while (text_end > start && is_whitespace_byte(text[text_end - 1])) --text_end;
      if (text_end > start) encode_text(text.substr(start, text_end - start), after_special, ids);
      ids.push_back(m.id);
      after_special = true;
      start = m.end;
      if (attrs & kTokenAttrRstrip)
        while (start < text.size() && is_whitespace_byte(text[start])) ++start;
    }
  }
  if (start < text.size()) encode_text(text.substr(start), after_special, ids);
  if (add_special && vocab_.add_eos) {
    if (vocab_.eos_id < 0) return Status::error("the vocabulary asks for an EOS token but names none");
    ids.push_back(vocab_.eos_id);
  }
  if (add_special && vocab_.add_sep) {
    if (vocab_.sep_id < 0) return Status::error("the vocabulary asks for a SEP token but names none");
    ids.push_back(vocab_.sep_id);
  }
  return ids;
}

const std::string& Tokenizer::token_bytes(int32_t id) const {
  static const std::string kNone;
  if (id < 0 || id >= static_cast<int32_t>(token_bytes_.size())) return kNone;
  return token_bytes_[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string out;
  bool first_text = true;
  for (int32_t id : ids) {
    const std::string& bytes = token_bytes(id);
    if (bytes.empty()) continue;
    // The space prefix goes only on text that encoding produced, not on added tokens.
    if (first_text && strip_leading_space_ && bytes[0] == ' ' && vocab_.type(id) != TokenType::UserDefined)
      out.append(bytes, 1);
    else
      out += bytes;
    first_text = false;
  }
  if (utf8::find_invalid(out) == std::string::npos) return out;
  return utf8::sanitize(out);
}

std::string StreamingDecoder::push(int32_t id) {
  pending_ += tokenizer_.token_bytes(id);
  // Release the longest prefix that ends on a complete character; an invalid byte is replaced
  // so that garbage never blocks the stream forever.
  std::string out;
  size_t i = 0;
  while (i < pending_.size()) {
    uint32_t cp;
    const size_t length = utf8::decode(pending_, i, &cp);
    if (length > 0) {
      out.append(pending_, i, length);
      i += length;
      continue;
    }
    if (utf8::is_incomplete_prefix(pending_, i)) break;
    utf8::append(out, utf8::kReplacement);
    ++i;
  }
  pending_.erase(0, i);
  return out;
}

std::string StreamingDecoder::flush() {
  std::string out = utf8::sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace anvil
