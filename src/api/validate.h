// Request validation helpers. Every failure is Status::InvalidArgument with
// a message that names the field path ("agent.tools[2].name: ...").
// Stateless; thread-safe.
#pragma once

#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>

#include "common/json.h"
#include "common/status.h"

namespace warren::api {

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
Status ReadBool(const Json& obj, std::string_view key, std::string_view path, std::optional<bool>* out);
Status ReadInt(const Json& obj, std::string_view key, std::string_view path, int64_t min, int64_t max,
               std::optional<int64_t>* out);

// Metadata: map string->string, <=16 pairs, key 1..64, value <=512. With
// `patch`, null values are allowed (they delete a key).
Status ValidateMetadata(const Json& m, std::string_view path, bool patch);
// Applies a metadata patch (null or "" deletes) to `target`.
void ApplyMetadataPatch(Json* target, const Json& patch);

// Content blocks of the session variant (spec section 2). `allowed` lists
// the block types accepted in this position.
Status ValidateContent(const Json& content, std::string_view path, std::initializer_list<std::string_view> allowed,
                       size_t min_items = 1, size_t max_items = 10000);

// Parses an integer query parameter.
Status ParseIntParam(const std::string& s, std::string_view name, int64_t min, int64_t max, int64_t* out);
// "true"/"false"/"1"/"0".
Status ParseBoolParam(const std::string& s, std::string_view name, bool* out);

}  // namespace warren::api
