// Reading a sweep configuration file: YAML or JSON text into one JSON document, so a single
// validator (bench/sweep_config.h) checks both spellings the same way.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "anvil/status.h"

namespace anvil {

// YAML text to JSON. Plain scalars follow YAML 1.2's core schema (null, true/false, integers,
// floats, else strings); quoted scalars are always strings. A repeated mapping key or a
// non-scalar key is an error. `name` stands for the source in messages ("sweep.yaml:3:5: ...").
Result<nlohmann::json> yaml_to_json(const std::string& text, const std::string& name);

// Reads `path`: `.json` files (or text that starts with '{') parse as JSON, anything else as YAML
// (YAML is a superset of JSON, but JSON's parser gives better messages for JSON).
Result<nlohmann::json> read_config_document(const std::string& path);

}  // namespace anvil
