// Typed, non-throwing readers for JSON fields at trust boundaries. Every
// failure is Status::InvalidArgument with a message that names the field
// path ("events[2].content[0].text: expected a string, got integer").
// These never call nlohmann's throwing accessors on unchecked types.
// Stateless; thread-safe. Depends only on src/common.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/status.h"

namespace warren::events {

std::string JoinPath(std::string_view base, std::string_view key);
std::string IndexPath(std::string_view base, size_t i);
Status Invalid(std::string_view path, std::string_view problem);

Status ExpectObject(const Json& j, std::string_view path);
// Rejects fields of `obj` not in `allowed`.
Status ExpectKnownFields(const Json& obj, std::initializer_list<std::string_view> allowed, std::string_view path);

struct StringRule {
  bool required = false;
  bool nullable = false;
  size_t min = 0;
  size_t max = 1 << 20;
};
// Reads obj[key]. Absent (or null when nullable) leaves *out empty.
Status ReadString(const Json& obj, std::string_view key, std::string_view path, const StringRule& rule,
                  std::optional<std::string>* out);
// Absent or null leaves *out empty; any other non-boolean is an error.
Status ReadBool(const Json& obj, std::string_view key, std::string_view path, std::optional<bool>* out);
// Absent or null leaves *out empty; non-integers and values outside
// [min, max] (including integers beyond int64) are errors.
Status ReadInt(const Json& obj, std::string_view key, std::string_view path, int64_t min, int64_t max,
               std::optional<int64_t>* out);

// Content blocks of the session variant (spec section 2). `allowed` lists
// the block types accepted in this position.
Status ValidateContent(const Json& content, std::string_view path, std::initializer_list<std::string_view> allowed,
                       size_t min_items = 1, size_t max_items = 10000);

// The "type" of an object as a string, or "" when absent or not a string.
// Never throws, whatever `j` is.
std::string TypeOf(const Json& j);
// obj[key] as a string, or "" when obj is not an object or the field is
// absent or not a string. For reading rows the service wrote itself.
std::string StringField(const Json& obj, std::string_view key);
// obj[key], or a null value when obj is not an object or has no such key
// (nlohmann's const operator[] on a missing key is undefined behaviour).
const Json& FieldOrNull(const Json& obj, std::string_view key);

}  // namespace warren::events
