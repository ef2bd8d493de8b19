// YAML/JSON configuration text to one JSON document (yaml-cpp for YAML, nlohmann for JSON).
#include "bench/sweep_config_file.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <cmath>
#include <fstream>
#include <limits>
#include <regex>
#include <sstream>

#include "core/json_error.h"

namespace anvil {
namespace {

std::string location(const std::string& name, const YAML::Mark& mark) {
  if (mark.is_null()) return name;
  return fmt::format("{}:{}:{}", name, mark.line + 1, mark.column + 1);
}

// YAML 1.2 core schema for plain (unquoted) scalars.
nlohmann::json plain_scalar(const std::string& text) {
  static const std::regex null_re("~|null|Null|NULL|");
  static const std::regex bool_true_re("true|True|TRUE");
  static const std::regex bool_false_re("false|False|FALSE");
  static const std::regex int_re("[-+]?[0-9]+");
  static const std::regex hex_re("0x[0-9a-fA-F]+");
  static const std::regex float_re("[-+]?(\\.[0-9]+|[0-9]+(\\.[0-9]*)?)([eE][-+]?[0-9]+)?");
  static const std::regex inf_re("[-+]?\\.(inf|Inf|INF)");
  static const std::regex nan_re("\\.(nan|NaN|NAN)");
  if (std::regex_match(text, null_re)) return nullptr;
  if (std::regex_match(text, bool_true_re)) return true;
  if (std::regex_match(text, bool_false_re)) return false;
  try {
    if (std::regex_match(text, int_re)) return std::stoll(text);
    if (std::regex_match(text, hex_re)) return std::stoll(text, nullptr, 16);
    if (std::regex_match(text, float_re)) return std::stod(text);
  } catch (const std::out_of_range&) {
    return text;  // too large for a number: keep the text, the validator names the key
  }
  if (std::regex_match(text, inf_re))
    return text[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  if (std::regex_match(text, nan_re)) return std::numeric_limits<double>::quiet_NaN();
  return text;
}

Result<nlohmann::json> convert(const YAML::Node& node, const std::string& name) {
  switch (node.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null:
      return nlohmann::json(nullptr);
    case YAML::NodeType::Scalar:
      // yaml-cpp tags plain scalars "?" and quoted ones "!".
      if (node.Tag() == "!") return nlohmann::json(node.Scalar());
      return plain_scalar(node.Scalar());
    case YAML::NodeType::Sequence: {
      nlohmann::json out = nlohmann::json::array();
      for (const YAML::Node& item : node) {
        ANVIL_ASSIGN_OR_RETURN(nlohmann::json value, convert(item, name));
        out.push_back(std::move(value));
      }
      return out;
    }
    case YAML::NodeType::Map: {
      nlohmann::json out = nlohmann::json::object();
      for (const auto& entry : node) {
        if (!entry.first.IsScalar())
          return Status::error(fmt::format("{}: a mapping key must be a plain name", location(name, entry.first.Mark())));
        const std::string key = entry.first.Scalar();
        if (out.contains(key))
          return Status::error(fmt::format("{}: key '{}' appears twice", location(name, entry.first.Mark()), key));
        ANVIL_ASSIGN_OR_RETURN(out[key], convert(entry.second, name));
      }
      return out;
    }
  }
  return Status::error(name + ": unsupported YAML node");
}

bool looks_like_json(const std::string& path, const std::string& text) {
  if (path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0) return true;
  for (char ch : text) {
    if (std::isspace(static_cast<unsigned char>(ch))) continue;
    return ch == '{';
  }
  return false;
}

}  // namespace

Result<nlohmann::json> yaml_to_json(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return Status::error(fmt::format("{}: {}", location(name, e.mark), e.msg));
  }
  return convert(root, name);
}

Result<nlohmann::json> read_config_document(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::error(path + ": cannot open the file");
  std::stringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return Status::error(path + ": read failed");
  const std::string text = buffer.str();
  if (looks_like_json(path, text)) {
    try {
      return nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      return Status::error(fmt::format("{}: not valid JSON: {}", path, json_error_text(e)));
    }
  }
  return yaml_to_json(text, path);
}

}  // namespace anvil
