// RegexSplitter over PCRE2 (UTF + UCP, JIT-compiled when the platform allows).
#include "tokenizer/regex_splitter.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <fmt/format.h>

namespace anvil {

namespace {

struct CodeDeleter {
  void operator()(pcre2_code* code) const { pcre2_code_free(code); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* data) const { pcre2_match_data_free(data); }
};

}  // namespace

struct RegexSplitter::Impl {
  std::vector<std::unique_ptr<pcre2_code, CodeDeleter>> codes;
  std::vector<bool> jit;
};

RegexSplitter::RegexSplitter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
RegexSplitter::RegexSplitter(RegexSplitter&&) noexcept = default;
RegexSplitter& RegexSplitter::operator=(RegexSplitter&&) noexcept = default;
RegexSplitter::~RegexSplitter() = default;

bool RegexSplitter::empty() const { return impl_->codes.empty(); }

Result<RegexSplitter> RegexSplitter::create(const std::vector<std::string>& patterns) {
  auto impl = std::make_unique<Impl>();
  for (const std::string& pattern : patterns) {
    int error = 0;
    PCRE2_SIZE offset = 0;
    // MATCH_INVALID_UTF: arbitrary bytes are allowed in the subject and simply never match.
    pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                     PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
    if (!code) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(error, message, sizeof(message));
      return Status::error(fmt::format("pre-tokenizer regex '{}' does not compile at offset {}: {}", pattern, offset,
                                       reinterpret_cast<const char*>(message)));
    }
    impl->codes.emplace_back(code);
    impl->jit.push_back(pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0);
  }
  return RegexSplitter(std::move(impl));
}

void RegexSplitter::split(std::string_view text, std::vector<std::string_view>& out) const {
  const size_t first = out.size();
  out.push_back(text);
  std::vector<std::string_view> next;
  for (size_t r = 0; r < impl_->codes.size(); ++r) {
    pcre2_code* code = impl_->codes[r].get();
    const bool jit = impl_->jit[r];
    thread_local std::unique_ptr<pcre2_match_data, MatchDataDeleter> match_data(pcre2_match_data_create(4, nullptr));
    next.clear();
    for (size_t p = first; p < out.size(); ++p) {
      const std::string_view piece = out[p];
      const auto* subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t start = 0;   // end of the last piece emitted
      size_t search = 0;  // where the next match attempt starts
      while (search < piece.size()) {
        const int rc = jit ? pcre2_jit_match(code, subject, piece.size(), search, 0, match_data.get(), nullptr)
                           : pcre2_match(code, subject, piece.size(), search, 0, match_data.get(), nullptr);
        if (rc < 0) break;  // no match (or a matcher limit): the rest stays one piece
        const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
        const size_t match_begin = ovector[0], match_end = ovector[1];
        if (match_end <= match_begin) {  // an empty match splits nothing; step over one character
          search = match_begin + 1;
          while (search < piece.size() && (static_cast<unsigned char>(piece[search]) & 0xC0) == 0x80) ++search;
          continue;
        }
        if (match_begin > start) next.push_back(piece.substr(start, match_begin - start));
        next.push_back(piece.substr(match_begin, match_end - match_begin));
        start = search = match_end;
      }
      if (start < piece.size()) next.push_back(piece.substr(start));
    }
    out.resize(first);
    out.insert(out.end(), next.begin(), next.end());
  }
}

}  // namespace anvil
