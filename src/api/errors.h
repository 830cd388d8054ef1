// Maps Status to the Managed Agents error envelope (spec section 0):
//   {"type":"error","error":{"type":...,"message":...[,"details":{...}]},"request_id":...}
#pragma once

#include <string_view>

#include "common/status.h"
#include "http/http_server.h"

namespace warren::api {

// HTTP status for a Status code.
int HttpStatusFor(Code code);
// error.type for an HTTP status.
std::string_view ErrorTypeFor(int http_status);

// Renders `status` (non-OK). A non-empty detail_code() becomes
// error.details.error_code.
http::HttpResponse ErrorResponse(const Status& status, std::string_view request_id);
// Renders a server-generated error (used by the HTTP layer for 413 etc.).
http::HttpResponse RenderError(int http_status, std::string_view type, std::string_view message,
                               std::string_view request_id);

}  // namespace warren::api
