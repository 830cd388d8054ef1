#include "api/errors.h"

#include "common/json.h"

namespace warren::api {

int HttpStatusFor(Code code) {
  switch (code) {
    case Code::kOk: return 200;
    case Code::kInvalidArgument: return 400;
    case Code::kUnauthenticated: return 401;
    case Code::kPermissionDenied: return 403;
    case Code::kNotFound: return 404;
    case Code::kConflict: return 409;
    case Code::kFailedPrecondition: return 412;
    case Code::kTooLarge: return 413;
    case Code::kResourceExhausted: return 429;
    case Code::kUnavailable: return 529;
    case Code::kTimeout: return 504;
    case Code::kUnimplemented: return 501;
    case Code::kCancelled: return 499;
    case Code::kInternal:
    case Code::kIOError: return 500;
  }
  return 500;
}

std::string_view ErrorTypeFor(int s) {
  switch (s) {
    case 400: case 409: case 412: case 431: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 408: case 504: return "timeout_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: case 529: return "overloaded_error";
    default: return "api_error";
  }
}

http::HttpResponse RenderError(int http_status, std::string_view type, std::string_view message,
                               std::string_view request_id) {
  Json body = {{"type", "error"},
               {"error", {{"type", type}, {"message", message}}},
               {"request_id", request_id}};
  http::HttpResponse r;
  r.status = http_status;
  r.body = DumpJson(body);
  return r;
}

http::HttpResponse ErrorResponse(const Status& status, std::string_view request_id) {
  int code = HttpStatusFor(status.code());
  // Storage and internal failures never leak internals to clients.
  std::string message = status.message();
  if (status.code() == Code::kIOError || status.code() == Code::kInternal) message = "internal server error";
  http::HttpResponse r = RenderError(code, ErrorTypeFor(code), message, request_id);
  if (!status.detail_code().empty()) {
    Json body = Json::parse(r.body);
    body["error"]["details"] = {{"error_code", status.detail_code()}};
    r.body = DumpJson(body);
  }
  if (code == 429) r.headers.Add("retry-after", "1");
  return r;
}

}  // namespace warren::api
