// JSON helpers for trust boundaries: parsing never throws, nesting depth is
// bounded before the (recursive) parser runs, and typed field accessors
// return Status with the field's path in the message.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace warren {

using Json = nlohmann::json;

inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as JSON. Errors: InvalidArgument with the byte offset, or if
// nesting exceeds `max_depth`.
Result<Json> ParseJson(std::string_view text, int max_depth = kMaxJsonDepth);

// Serialises compactly; invalid UTF-8 in strings is replaced, never thrown.
std::string DumpJson(const Json& j);

// Human name of a JSON value's type, for error messages ("string", ...).
std::string_view JsonTypeName(const Json& j);

}  // namespace warren
