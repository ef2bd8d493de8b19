// Placeholders in a sweep's server command template: "{model}" -> a value, "{{" / "}}" -> a brace.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "anvil/status.h"

namespace anvil {

// The names used in `text`, in order of first appearance; an unclosed or empty `{` is an error.
Result<std::vector<std::string>> placeholder_names_in(const std::string& text);

// Replaces every {name} with values[name]; a name not in `values` is an error that lists the
// known names.
Result<std::string> substitute_placeholders(const std::string& text, const std::map<std::string, std::string>& values);

}  // namespace anvil
