// Status and Result<T>: error values with a code, a message and context.
//
// Modelled on leveldb::Status. A Status is cheap to copy when OK (no
// allocation). Functions that can fail return Status or Result<T>; exceptions
// are not used across module boundaries. Thread-safety: values, no shared
// state.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace warren {

// Canonical error codes. Each maps to one HTTP status and error.type of the
// Managed Agents error envelope (see api/errors.h).
enum class Code {
  kOk = 0,
  kInvalidArgument,     // 400 invalid_request_error
  kUnauthenticated,     // 401 authentication_error
  kPermissionDenied,    // 403 permission_error
  kNotFound,            // 404 not_found_error
  kConflict,            // 409 invalid_request_error
  kFailedPrecondition,  // 412
  kTooLarge,            // 413 request_too_large
  kResourceExhausted,   // 429 rate_limit_error
  kInternal,            // 500 api_error
  kUnavailable,         // 503/529 overloaded_error
  kIOError,             // 500 api_error (disk, syscalls)
  kTimeout,             // 504 / timeout_error
  kCancelled,
  kUnimplemented,       // 501
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK

  static Status Ok() { return Status(); }
  static Status InvalidArgument(std::string msg) { return Status(Code::kInvalidArgument, std::move(msg)); }
  static Status Unauthenticated(std::string msg) { return Status(Code::kUnauthenticated, std::move(msg)); }
  static Status PermissionDenied(std::string msg) { return Status(Code::kPermissionDenied, std::move(msg)); }
  static Status NotFound(std::string msg) { return Status(Code::kNotFound, std::move(msg)); }
  static Status Conflict(std::string msg) { return Status(Code::kConflict, std::move(msg)); }
  static Status FailedPrecondition(std::string msg) { return Status(Code::kFailedPrecondition, std::move(msg)); }
  static Status TooLarge(std::string msg) { return Status(Code::kTooLarge, std::move(msg)); }
  static Status ResourceExhausted(std::string msg) { return Status(Code::kResourceExhausted, std::move(msg)); }
  static Status Internal(std::string msg) { return Status(Code::kInternal, std::move(msg)); }
  static Status Unavailable(std::string msg) { return Status(Code::kUnavailable, std::move(msg)); }
  static Status IOError(std::string msg) { return Status(Code::kIOError, std::move(msg)); }
  static Status Timeout(std::string msg) { return Status(Code::kTimeout, std::move(msg)); }
  static Status Cancelled(std::string msg) { return Status(Code::kCancelled, std::move(msg)); }
  static Status Unimplemented(std::string msg) { return Status(Code::kUnimplemented, std::move(msg)); }
  // An IOError carrying strerror(err): "what: strerror".
  static Status FromErrno(int err, std::string_view what);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // Returns a copy whose message is "context: message". OK stays OK.
  Status WithContext(std::string_view context) const;

  // "OK" or "<CodeName>: <message>".
  std::string ToString() const;

  // Additional machine-readable detail (e.g. "heartbeat_precondition_failed").
  const std::string& detail_code() const { return detail_code_; }
  Status WithDetailCode(std::string detail) const {
    Status s = *this;
    s.detail_code_ = std::move(detail);
    return s;
  }

  bool operator==(const Status& o) const { return code_ == o.code_ && message_ == o.message_; }

 private:
  Status(Code code, std::string msg) : code_(code), message_(std::move(msg)) {}
  Code code_ = Code::kOk;
  std::string message_;
  std::string detail_code_;
};

// Result<T> holds either a value or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT
    assert(!std::get<Status>(v_).ok() && "Result from OK status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T value_or(T fallback) const& { return ok() ? std::get<T>(v_) : std::move(fallback); }

  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace warren

#define WARREN_CONCAT_INNER(a, b) a##b
#define WARREN_CONCAT(a, b) WARREN_CONCAT_INNER(a, b)

// Returns the Status from the enclosing function if `expr` is not OK.
#define WARREN_RETURN_IF_ERROR(expr)              \
  do {                                            \
    ::warren::Status _st = (expr);                \
    if (!_st.ok()) return _st;                    \
  } while (0)

// `lhs = value of expr` or return its Status.
#define WARREN_ASSIGN_OR_RETURN(lhs, expr) \
  WARREN_ASSIGN_OR_RETURN_IMPL(WARREN_CONCAT(_res_, __LINE__), lhs, expr)
#define WARREN_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
