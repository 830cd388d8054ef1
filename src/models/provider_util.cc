#include "models/provider_util.h"

#include <cstdlib>

#include "common/json.h"

namespace warren::models::internal {

ModelError ErrorFromType(std::string_view type, std::string message) {
  ModelError e;
  e.upstream_type = std::string(type);
  e.message = std::move(message);
  if (type == "overloaded_error") {
    e.kind = ModelErrorKind::kOverloaded;
  } else if (type == "rate_limit_error" || type == "rate_limit_exceeded") {
    e.kind = ModelErrorKind::kRateLimited;
  } else if (type == "api_error" || type == "timeout_error" || type == "server_error") {
    e.kind = ModelErrorKind::kRequestFailed;
  } else if (type == "authentication_error") {
    e.kind = ModelErrorKind::kAuthentication;
  } else if (type == "permission_error") {
    e.kind = ModelErrorKind::kPermission;
  } else if (type == "billing_error" || type == "insufficient_quota") {
    e.kind = ModelErrorKind::kBilling;
  } else if (type == "request_too_large") {
    e.kind = ModelErrorKind::kRequestTooLarge;
  } else if (type == "invalid_request_error" || type == "not_found_error") {
    e.kind = ModelErrorKind::kInvalidRequest;
  } else {
    e.kind = ModelErrorKind::kRequestFailed;
  }
  e.retryable = e.kind == ModelErrorKind::kOverloaded || e.kind == ModelErrorKind::kRateLimited ||
                e.kind == ModelErrorKind::kRequestFailed;
  return e;
}

ModelError ErrorFromHttp(const HttpResponse& head, std::string_view body, Clock* clock) {
  std::string type;
  std::string message;
  if (auto j = ParseJson(body); j.ok() && j->is_object()) {
    auto it = j->find("error");
    if (it != j->end() && it->is_object()) {
      type = JsonStr(*it, "type");
      if (auto m = it->find("message"); m != it->end() && m->is_string()) message = m->get<std::string>();
      if (type.empty()) {
        if (auto c = it->find("code"); c != it->end() && c->is_string()) type = c->get<std::string>();
      }
    } else if (it != j->end() && it->is_string()) {
      message = it->get<std::string>();
    }
  }
  if (message.empty()) message = std::string(body.substr(0, 512));
  ModelError e;
  const int s = head.status;
  if (s == 429) {
    e = ErrorFromType("rate_limit_error", message);
  } else if (s == 529 || s == 503) {
    e = ErrorFromType("overloaded_error", message);
  } else if (s == 401) {
    e = ErrorFromType("authentication_error", message);
  } else if (s == 402) {
    e = ErrorFromType("billing_error", message);
  } else if (s == 403) {
    e = ErrorFromType("permission_error", message);
  } else if (s == 413) {
    e = ErrorFromType("request_too_large", message);
  } else if (s == 408 || s == 409 || s >= 500) {
    e = ErrorFromType("api_error", message);
  } else if (s >= 400) {
    e = ErrorFromType("invalid_request_error", message);
  } else {
    e = ErrorFromType("api_error", message.empty() ? "unexpected HTTP status" : message);
  }
  if (!type.empty()) e.upstream_type = type;
  e.http_status = s;
  e.request_id = head.Header("request-id").value_or(head.Header("x-request-id").value_or(""));
  e.retry_after_ms = head.RetryAfterMs((clock != nullptr ? clock : Clock::Real())->NowMicros());
  if (auto should = head.Header("x-should-retry")) {
    if (*should == "true") e.retryable = true;
    if (*should == "false") e.retryable = false;
  }
  return e;
}

ModelError ErrorFromTransport(const Status& status, bool mid_stream) {
  ModelError e;
  e.message = status.message();
  e.mid_stream = mid_stream;
  switch (status.code()) {
    case Code::kCancelled:
      e.kind = ModelErrorKind::kCancelled;
      break;
    case Code::kInvalidArgument:
      e.kind = ModelErrorKind::kInvalidRequest;
      break;
    default:
      e.kind = ModelErrorKind::kRequestFailed;
      e.retryable = true;
      break;
  }
  return e;
}

ModelError ProtocolError(std::string message) {
  ModelError e;
  e.kind = ModelErrorKind::kRequestFailed;
  e.retryable = true;
  e.mid_stream = true;
  e.message = std::move(message);
  return e;
}

std::string FromEnv(std::string_view value, const char* env, std::string_view fallback) {
  if (!value.empty()) return std::string(value);
  if (env != nullptr && env[0] != '\0') {
    const char* v = std::getenv(env);
    if (v != nullptr && v[0] != '\0') return v;
  }
  return std::string(fallback);
}

std::string TrimSlash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

}  // namespace warren::models::internal
