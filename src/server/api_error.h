// ApiError: an OpenAI-style error object plus the HTTP status it is answered with.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <variant>

namespace anvil::server {

// {"error": {"message", "type", "param", "code"}}: what OpenAI and vLLM answer, so SDKs raise
// their usual exception classes (BadRequestError, NotFoundError, ...).
struct ApiError {
  int http_status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param;  // the request field at fault; "" -> null
  std::string code;   // a machine-readable reason; "" -> null

  static ApiError invalid(std::string message, std::string param = "", std::string code = "") {
    return ApiError{400, std::move(message), "invalid_request_error", std::move(param), std::move(code)};
  }
  nlohmann::json to_json() const;
};

// The server's Result<T>: a Status carries only a message, but an HTTP answer needs a status too.
template <typename T>
class [[nodiscard]] ApiResult {
 public:
  ApiResult(T value) : storage_(std::move(value)) {}       // NOLINT: implicit by design
  ApiResult(ApiError error) : storage_(std::move(error)) {} // NOLINT: implicit by design

  bool is_ok() const { return std::holds_alternative<T>(storage_); }
  explicit operator bool() const { return is_ok(); }
  const ApiError& error() const { return std::get<ApiError>(storage_); }
  T& value() & { return std::get<T>(storage_); }
  const T& value() const& { return std::get<T>(storage_); }
  T&& value() && { return std::get<T>(std::move(storage_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, ApiError> storage_;
};

// JSON text that never throws: invalid UTF-8 (a token that is half a character) becomes U+FFFD.
std::string dump_json(const nlohmann::json& value);

}  // namespace anvil::server
