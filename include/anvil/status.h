// Status and Result<T>: the error type at every library boundary (no exceptions across them).
#pragma once

#include <cstdlib>
#include <string>
#include <utility>
#include <variant>

namespace anvil {

// A Status is ok or carries one human-readable message that names the file/object and the
// problem, e.g. "model.gguf: tensor blk.3.attn_q.weight has type Q5_1, which anvil cannot read yet".
class [[nodiscard]] Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message), true); }

  bool is_ok() const { return !failed_; }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const { return message_; }

  // Prefixes the message with context ("loading x.gguf: ...") and returns *this for chaining.
  Status with_context(const std::string& context) const {
    if (is_ok()) return *this;
    return Status::error(context + ": " + message_);
  }

 private:
  Status(std::string message, bool failed) : message_(std::move(message)), failed_(failed) {}
  std::string message_;
  bool failed_ = false;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : storage_(std::move(value)) {}            // NOLINT: implicit by design
  Result(Status status) : storage_(std::move(status)) {       // NOLINT: implicit by design
    if (std::get<Status>(storage_).is_ok()) storage_ = Status::error("internal: ok Status stored in Result");
  }

  bool is_ok() const { return std::holds_alternative<T>(storage_); }
  explicit operator bool() const { return is_ok(); }
  const Status& status() const {
    static const Status ok_status;
    return is_ok() ? ok_status : std::get<Status>(storage_);
  }
  T& value() & { return std::get<T>(storage_); }
  const T& value() const& { return std::get<T>(storage_); }
  T&& value() && { return std::get<T>(std::move(storage_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> storage_;
};

}  // namespace anvil

// Early-return helpers. They name no locals beyond the expression's own temporary.
#define ANVIL_RETURN_IF_ERROR(expr)                 \
  do {                                              \
    ::anvil::Status anvil_status_ = (expr);         \
    if (!anvil_status_.is_ok()) return anvil_status_; \
  } while (0)

#define ANVIL_CONCAT_INNER(a, b) a##b
#define ANVIL_CONCAT(a, b) ANVIL_CONCAT_INNER(a, b)
#define ANVIL_ASSIGN_OR_RETURN(lhs, expr) ANVIL_ASSIGN_OR_RETURN_IMPL(ANVIL_CONCAT(anvil_result_, __LINE__), lhs, expr)
#define ANVIL_ASSIGN_OR_RETURN_IMPL(result, lhs, expr) \
  auto result = (expr);                                \
  if (!result.is_ok()) return result.status();         \
  lhs = std::move(result).value()
