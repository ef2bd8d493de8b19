// JsonFields: typed reads of optional request fields, turning the first problem into an ApiError.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include "server/api_error.h"

namespace anvil::server {

// A JSON integer, or a float with no fractional part (pydantic's lax mode, which vLLM inherits,
// accepts 16.0 for an int); nullopt for anything else, booleans included.
std::optional<int64_t> json_integer(const nlohmann::json& value);
// "string", "integer", "number", "boolean", "array", "object" or "null", for messages.
const char* json_type_name(const nlohmann::json& value);

// Reads fields of one JSON object. A missing field and null both mean "not given". The first
// failure sticks: later reads return nullopt, and error() names the field that was wrong, so a
// parser can read every field in order and check once at the end.
class JsonFields {
 public:
  // `path` prefixes field names in messages ("messages[2]" -> "messages[2].role").
  explicit JsonFields(const nlohmann::json& object, std::string path = "");

  const nlohmann::json* get(const char* name) const;  // nullptr when absent or null
  std::optional<int64_t> integer(const char* name, int64_t min, int64_t max);
  std::optional<double> number(const char* name, double min, double max);
  std::optional<bool> boolean(const char* name);
  std::optional<std::string> string(const char* name);

  void fail(ApiError error);
  void fail(const std::string& message, const std::string& param) { fail(ApiError::invalid(message, param)); }
  bool ok() const { return !error_.has_value(); }
  const ApiError& error() const { return *error_; }
  std::string param(const char* name) const { return path_.empty() ? name : path_ + "." + name; }

 private:
  const nlohmann::json& object_;
  std::string path_;
  std::optional<ApiError> error_;
};

}  // namespace anvil::server
