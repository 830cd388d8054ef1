#include "api/validate.h"

#include <charconv>

namespace warren::api {

static size_t Utf8Length(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) n++;
  return n;
}

Status ValidateMetadata(const Json& m, std::string_view path, bool patch) {
  if (!m.is_object()) return Invalid(path, "expected an object of string values, got " + std::string(JsonTypeName(m)));
  size_t n = 0;
  for (auto it = m.begin(); it != m.end(); ++it) {
    std::string p = JoinPath(path, it.key());
    if (it.key().empty()) return Invalid(path, "keys must not be empty");
    if (Utf8Length(it.key()) > 64) return Invalid(path, "key '" + it.key().substr(0, 80) + "' is longer than 64 characters");
    if (it.value().is_null() && patch) continue;
    if (!it.value().is_string()) return Invalid(p, "expected a string, got " + std::string(JsonTypeName(it.value())));
    if (Utf8Length(it.value().get<std::string>()) > 512) return Invalid(p, "value is longer than 512 characters");
    n++;
  }
  if (n > 16) return Invalid(path, "at most 16 key-value pairs are allowed");
  return Status::Ok();
}

void ApplyMetadataPatch(Json* target, const Json& patch) {
  if (!target->is_object()) *target = Json::object();
  for (auto it = patch.begin(); it != patch.end(); ++it) {
    if (it.value().is_null() || (it.value().is_string() && it.value().get<std::string>().empty()))
      target->erase(it.key());
    else
      (*target)[it.key()] = it.value();
  }
}

Status ParseIntParam(const std::string& s, std::string_view name, int64_t min, int64_t max, int64_t* out) {
  int64_t v = 0;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size() || s.empty())
    return Invalid(name, "expected an integer, got '" + s.substr(0, 64) + "'");
  if (v < min || v > max) return Invalid(name, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  *out = v;
  return Status::Ok();
}

Status ParseBoolParam(const std::string& s, std::string_view name, bool* out) {
  if (s == "true" || s == "1" || s == "True") *out = true;
  else if (s == "false" || s == "0" || s == "False") *out = false;
  else return Invalid(name, "expected true or false, got '" + s.substr(0, 64) + "'");
  return Status::Ok();
}

}  // namespace warren::api
