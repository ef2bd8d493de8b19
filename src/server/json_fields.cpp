// Typed, range-checked reads of request fields with messages that name the field and the value.
#include "server/json_fields.h"

#include <fmt/format.h>

#include <cmath>

namespace anvil::server {

std::optional<int64_t> json_integer(const nlohmann::json& value) {
  if (value.is_number_integer() && !value.is_number_unsigned()) return value.get<int64_t>();
  if (value.is_number_unsigned()) {
    const uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
    return static_cast<int64_t>(u);
  }
  if (value.is_number_float()) {
    const double d = value.get<double>();
    // 2^63 itself is out of range; every double below it converts exactly.
    if (std::isfinite(d) && d == std::floor(d) && d >= -9.2233720368547758e18 && d < 9.2233720368547758e18)
      return static_cast<int64_t>(d);
  }
  return std::nullopt;
}

const char* json_type_name(const nlohmann::json& value) {
  switch (value.type()) {
    case nlohmann::json::value_t::string: return "string";
    case nlohmann::json::value_t::number_integer:
    case nlohmann::json::value_t::number_unsigned: return "integer";
    case nlohmann::json::value_t::number_float: return "number";
    case nlohmann::json::value_t::boolean: return "boolean";
    case nlohmann::json::value_t::array: return "array";
    case nlohmann::json::value_t::object: return "object";
    case nlohmann::json::value_t::null: return "null";
    default: return "unknown";
  }
}

JsonFields::JsonFields(const nlohmann::json& object, std::string path) : object_(object), path_(std::move(path)) {}

const nlohmann::json* JsonFields::get(const char* name) const {
  if (!object_.is_object()) return nullptr;
  auto it = object_.find(name);
  if (it == object_.end() || it->is_null()) return nullptr;
  return &*it;
}

void JsonFields::fail(ApiError error) {
  if (!error_) error_ = std::move(error);
}

std::optional<int64_t> JsonFields::integer(const char* name, int64_t min, int64_t max) {
  const nlohmann::json* value = get(name);
  if (!ok() || value == nullptr) return std::nullopt;
  const std::optional<int64_t> n = json_integer(*value);
  const bool integral = value->is_number() && std::isfinite(value->get<double>()) &&
                        value->get<double>() == std::floor(value->get<double>());
  if (!integral) {
    if (value->is_number())
      fail(fmt::format("{} must be an integer, got {}", param(name), value->dump()), param(name));
    else
      fail(fmt::format("{} must be an integer, got a {}", param(name), json_type_name(*value)), param(name));
    return std::nullopt;
  }
  if (!n) {
    fail(fmt::format("{} is out of range (beyond 64 bits), got {}", param(name), value->dump()), param(name));
    return std::nullopt;
  }
  if (*n < min || *n > max) {
    // Open-ended ranges read better as one bound ("at least 1") than as a 19-digit limit.
    const std::string range = max == INT64_MAX   ? fmt::format("at least {}", min)
                              : min == INT64_MIN ? fmt::format("at most {}", max)
                                                 : fmt::format("between {} and {}", min, max);
    fail(fmt::format("{} must be {}, got {}", param(name), range, value->dump()), param(name));
    return std::nullopt;
  }
  return n;
}

std::optional<double> JsonFields::number(const char* name, double min, double max) {
  const nlohmann::json* value = get(name);
  if (!ok() || value == nullptr) return std::nullopt;
  if (!value->is_number()) {
    fail(fmt::format("{} must be a number, got a {}", param(name), json_type_name(*value)), param(name));
    return std::nullopt;
  }
  const double d = value->get<double>();
  if (!(d >= min && d <= max)) {
    fail(fmt::format("{} must be between {} and {}, got {}", param(name), min, max, value->dump()), param(name));
    return std::nullopt;
  }
  return d;
}

std::optional<bool> JsonFields::boolean(const char* name) {
  const nlohmann::json* value = get(name);
  if (!ok() || value == nullptr) return std::nullopt;
  if (!value->is_boolean()) {
    fail(fmt::format("{} must be true or false, got a {}", param(name), json_type_name(*value)), param(name));
    return std::nullopt;
  }
  return value->get<bool>();
}

std::optional<std::string> JsonFields::string(const char* name) {
  const nlohmann::json* value = get(name);
  if (!ok() || value == nullptr) return std::nullopt;
  if (!value->is_string()) {
    fail(fmt::format("{} must be a string, got a {}", param(name), json_type_name(*value)), param(name));
    return std::nullopt;
  }
  return value->get<std::string>();
}

}  // namespace anvil::server
