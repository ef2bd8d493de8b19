// Placeholder parsing and substitution for server command templates.
#include "bench/sweep_placeholders.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

namespace anvil {
namespace {

// Walks `text`, handing literal runs and placeholder names to the callbacks.
template <typename Literal, typename Name>
Status scan(const std::string& text, Literal&& on_literal, Name&& on_name) {
  size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == '{' && i + 1 < text.size() && text[i + 1] == '{') {
      on_literal('{');
      i += 2;
    } else if (ch == '}' && i + 1 < text.size() && text[i + 1] == '}') {
      on_literal('}');
      i += 2;
    } else if (ch == '{') {
      const size_t close = text.find('}', i + 1);
      if (close == std::string::npos)
        return Status::error(fmt::format("'{{' at offset {} is never closed (write {{{{ for a literal brace)", i));
      const std::string name = text.substr(i + 1, close - i - 1);
      if (name.empty() || name.find('{') != std::string::npos)
        return Status::error(fmt::format("bad placeholder '{}' at offset {} (write {{{{ for a literal brace)",
                                         text.substr(i, close - i + 1), i));
      ANVIL_RETURN_IF_ERROR(on_name(name));
      i = close + 1;
    } else if (ch == '}') {
      return Status::error(fmt::format("unmatched '}}' at offset {} (write }}}} for a literal brace)", i));
    } else {
      on_literal(ch);
      ++i;
    }
  }
  return Status::ok();
}

}  // namespace

Result<std::vector<std::string>> placeholder_names_in(const std::string& text) {
  std::vector<std::string> names;
  ANVIL_RETURN_IF_ERROR(scan(
      text, [](char) {},
      [&](const std::string& name) {
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
        return Status::ok();
      }));
  return names;
}

Result<std::string> substitute_placeholders(const std::string& text, const std::map<std::string, std::string>& values) {
  std::string out;
  ANVIL_RETURN_IF_ERROR(scan(
      text, [&](char ch) { out += ch; },
      [&](const std::string& name) {
        auto it = values.find(name);
        if (it == values.end()) {
          std::vector<std::string> known;
          for (const auto& [key, value] : values) known.push_back("{" + key + "}");
          return Status::error(fmt::format("unknown placeholder {{{}}} (known: {})", name, fmt::join(known, ", ")));
        }
        out += it->second;
        return Status::ok();
      }));
  return out;
}

}  // namespace anvil
