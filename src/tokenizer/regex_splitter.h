// RegexSplitter: pre-tokenization by a sequence of PCRE2 regexes with Unicode properties.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "anvil/status.h"

namespace anvil {

// Applies each regex in turn to every piece the previous one produced, keeping both the matches
// and the text between them as pieces (Hugging Face's Split with behavior "Isolated", which is
// also how llama.cpp applies its lists). The pieces always cover the input exactly, so no byte is
// lost; invalid UTF-8 is never matched and ends up in pieces of its own.
class RegexSplitter {
 public:
  static Result<RegexSplitter> create(const std::vector<std::string>& patterns);
  RegexSplitter(RegexSplitter&&) noexcept;
  RegexSplitter& operator=(RegexSplitter&&) noexcept;
  ~RegexSplitter();

  bool empty() const;
  // Appends the pieces of `text` (views into it) to `out`.
  void split(std::string_view text, std::vector<std::string_view>& out) const;

 private:
  struct Impl;
  explicit RegexSplitter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace anvil
