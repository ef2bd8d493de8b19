// json_error_text: nlohmann::json exception text without its "[json.exception.x.y] " prefix.
#pragma once

#include <exception>
#include <string>

namespace anvil {

// nlohmann's what() starts with "[json.exception.parse_error.101] "; users need only the rest.
inline std::string json_error_text(const std::exception& e) {
  std::string text = e.what();
  if (text.rfind("[json.exception.", 0) == 0) {
    const size_t close = text.find("] ");
    if (close != std::string::npos) text = text.substr(close + 2);
  }
  return text;
}

}  // namespace anvil
