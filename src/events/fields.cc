#include "events/fields.h"

#include <algorithm>
#include <cstdint>

namespace warren::events {

std::string JoinPath(std::string_view base, std::string_view key) {
  if (base.empty()) return std::string(key);
  return std::string(base) + "." + std::string(key);
}

std::string IndexPath(std::string_view base, size_t i) { return std::string(base) + "[" + std::to_string(i) + "]"; }

Status Invalid(std::string_view path, std::string_view problem) {
  if (path.empty()) return Status::InvalidArgument(std::string(problem));
  return Status::InvalidArgument(std::string(path) + ": " + std::string(problem));
}

Status ExpectObject(const Json& j, std::string_view path) {
  if (!j.is_object())
    return Invalid(path.empty() ? "body" : path, "expected an object, got " + std::string(JsonTypeName(j)));
  return Status::Ok();
}

Status ExpectKnownFields(const Json& obj, std::initializer_list<std::string_view> allowed, std::string_view path) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end())
      return Invalid(JoinPath(path, it.key()), "unknown field (extra inputs are not permitted)");
  }
  return Status::Ok();
}

static size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}

Status ReadString(const Json& obj, std::string_view key, std::string_view path, const StringRule& rule,
                  std::optional<std::string>* out) {
  out->reset();
  std::string p = JoinPath(path, key);
  auto it = obj.find(std::string(key));
  if (it == obj.end() || (it->is_null() && rule.nullable)) {
    if (rule.required && it == obj.end()) return Invalid(p, "field required");
    return Status::Ok();
  }
  if (!it->is_string()) return Invalid(p, "expected a string, got " + std::string(JsonTypeName(*it)));
  const std::string& s = it->get_ref<const std::string&>();
  size_t len = Utf8Length(s);
  if (len < rule.min)
    return Invalid(p, rule.min == 1 ? "must not be empty" : "must be at least " + std::to_string(rule.min) + " characters");
  if (len > rule.max) return Invalid(p, "must be at most " + std::to_string(rule.max) + " characters");
  *out = s;
  return Status::Ok();
}

Status ReadBool(const Json& obj, std::string_view key, std::string_view path, std::optional<bool>* out) {
  out->reset();
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return Invalid(JoinPath(path, key), "expected a boolean, got " + std::string(JsonTypeName(*it)));
  *out = it->get<bool>();
  return Status::Ok();
}

Status ReadInt(const Json& obj, std::string_view key, std::string_view path, int64_t min, int64_t max,
               std::optional<int64_t>* out) {
  out->reset();
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return Status::Ok();
  std::string p = JoinPath(path, key);
  if (!it->is_number_integer()) return Invalid(p, "expected an integer, got " + std::string(JsonTypeName(*it)));
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
    return Invalid(p, "out of range");
  int64_t v = it->get<int64_t>();
  if (v < min || v > max) return Invalid(p, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  *out = v;
  return Status::Ok();
}

static Status ValidateSource(const Json& src, std::string_view path, bool document) {
  WARREN_RETURN_IF_ERROR(ExpectObject(src, path));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(ReadString(src, "type", path, {.required = true, .min = 1, .max = 64}, &type));
  std::optional<std::string> s;
  if (*type == "base64") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(src, {"type", "media_type", "data"}, path));
    WARREN_RETURN_IF_ERROR(ReadString(src, "media_type", path, {.required = true, .min = 1, .max = 255}, &s));
    WARREN_RETURN_IF_ERROR(ReadString(src, "data", path, {.required = true, .min = 1}, &s));
  } else if (*type == "url") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(src, {"type", "url"}, path));
    WARREN_RETURN_IF_ERROR(ReadString(src, "url", path, {.required = true, .min = 1, .max = 8192}, &s));
  } else if (*type == "file") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(src, {"type", "file_id"}, path));
    WARREN_RETURN_IF_ERROR(ReadString(src, "file_id", path, {.required = true, .min = 1, .max = 256}, &s));
  } else if (*type == "text" && document) {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(src, {"type", "media_type", "data"}, path));
    WARREN_RETURN_IF_ERROR(ReadString(src, "media_type", path, {.max = 255}, &s));
    if (s && *s != "text/plain") return Invalid(JoinPath(path, "media_type"), "must be 'text/plain'");
    WARREN_RETURN_IF_ERROR(ReadString(src, "data", path, {.required = true}, &s));
  } else {
    return Invalid(JoinPath(path, "type"), "unknown source type '" + *type + "'");
  }
  return Status::Ok();
}

Status ValidateContent(const Json& content, std::string_view path, std::initializer_list<std::string_view> allowed,
                       size_t min_items, size_t max_items) {
  if (!content.is_array()) return Invalid(path, "expected an array of content blocks, got " + std::string(JsonTypeName(content)));
  if (content.size() < min_items) return Invalid(path, "must contain at least " + std::to_string(min_items) + " block(s)");
  if (content.size() > max_items) return Invalid(path, "must contain at most " + std::to_string(max_items) + " blocks");
  for (size_t i = 0; i < content.size(); i++) {
    std::string p = IndexPath(path, i);
    const Json& b = content[i];
    WARREN_RETURN_IF_ERROR(ExpectObject(b, p));
    std::optional<std::string> type;
    WARREN_RETURN_IF_ERROR(ReadString(b, "type", p, {.required = true, .min = 1, .max = 64}, &type));
    if (std::find(allowed.begin(), allowed.end(), *type) == allowed.end())
      return Invalid(JoinPath(p, "type"), "block type '" + *type + "' is not allowed here");
    std::optional<std::string> s;
    if (*type == "text") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type", "text", "cache_control", "citations"}, p));
      WARREN_RETURN_IF_ERROR(ReadString(b, "text", p, {.required = true}, &s));
    } else if (*type == "image") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type", "source", "cache_control"}, p));
      if (!b.contains("source")) return Invalid(JoinPath(p, "source"), "field required");
      WARREN_RETURN_IF_ERROR(ValidateSource(b["source"], JoinPath(p, "source"), false));
    } else if (*type == "document") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type", "source", "title", "context", "citations", "cache_control"}, p));
      if (!b.contains("source")) return Invalid(JoinPath(p, "source"), "field required");
      WARREN_RETURN_IF_ERROR(ValidateSource(b["source"], JoinPath(p, "source"), true));
      WARREN_RETURN_IF_ERROR(ReadString(b, "title", p, {.nullable = true, .max = 500}, &s));
      WARREN_RETURN_IF_ERROR(ReadString(b, "context", p, {.nullable = true}, &s));
    } else if (*type == "search_result") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type", "source", "title", "content", "citations", "cache_control"}, p));
      WARREN_RETURN_IF_ERROR(ReadString(b, "source", p, {.required = true, .min = 1}, &s));
      WARREN_RETURN_IF_ERROR(ReadString(b, "title", p, {.required = true}, &s));
      if (!b.contains("content")) return Invalid(JoinPath(p, "content"), "field required");
      WARREN_RETURN_IF_ERROR(ValidateContent(b["content"], JoinPath(p, "content"), {"text"}, 0));
    } else if (*type == "redacted") {
      WARREN_RETURN_IF_ERROR(ExpectKnownFields(b, {"type"}, p));
    }
  }
  return Status::Ok();
}

}  // namespace warren::events

namespace warren::events {

std::string TypeOf(const Json& j) {
  if (!j.is_object()) return "";
  auto it = j.find("type");
  if (it == j.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

const Json& FieldOrNull(const Json& obj, std::string_view key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(std::string(key));
  return it == obj.end() ? kNull : *it;
}

std::string StringField(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return "";
  auto it = obj.find(std::string(key));
  if (it == obj.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

}  // namespace warren::events
