// Internal helpers shared by the HTTP model providers (not a public API).
#pragma once

#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/http_client.h"
#include "models/model_provider.h"

namespace warren::models::internal {

// The error for an HTTP response with a non-2xx status. Understands the
// Anthropic envelope {"type":"error","error":{"type","message"}}, the OpenAI
// one {"error":{"message","type","code"}} and {"error":"text"} (Ollama).
// Honours retry-after(-ms) and x-should-retry.
ModelError ErrorFromHttp(const HttpResponse& head, std::string_view body, Clock* clock);

// The error for an upstream error type string ("overloaded_error", ...) seen
// in a body or mid-stream.
ModelError ErrorFromType(std::string_view type, std::string message);

// The error for a transport failure (connect, timeout, cancel, dropped).
ModelError ErrorFromTransport(const Status& status, bool mid_stream);

// A protocol violation in a 200 stream (bad JSON, unknown block index, ...).
ModelError ProtocolError(std::string message);

// `value` if non-empty, else getenv(env) if set and non-empty, else `fallback`.
std::string FromEnv(std::string_view value, const char* env, std::string_view fallback = "");

// Strips trailing slashes.
std::string TrimSlash(std::string url);

}  // namespace warren::models::internal
