// Checked reads of JSON the engine did not build itself: event bodies posted
// by clients, store rows, the session's agent. A missing key, a value of
// another type, or a container that is not an object reads as the fallback;
// nothing here throws (nlohmann's `value()`, `at()` and `get<T>()` throw on a
// type mismatch, e.g. `value("is_error", false)` on `"is_error": null`).
// Stateless; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/json.h"

namespace warren::engine::jr {

// The member `key` of `j`, or null when `j` is not an object or lacks it.
inline const Json& Get(const Json& j, std::string_view key) {
  static const Json kNull;
  if (!j.is_object()) return kNull;
  auto it = j.find(key);
  return it == j.end() ? kNull : *it;
}

inline std::string Str(const Json& j, std::string_view key, std::string_view fallback = "") {
  const Json& v = Get(j, key);
  return v.is_string() ? v.get_ref<const std::string&>() : std::string(fallback);
}

inline bool Bool(const Json& j, std::string_view key, bool fallback) {
  const Json& v = Get(j, key);
  return v.is_boolean() ? v.get<bool>() : fallback;
}

inline int64_t Int(const Json& j, std::string_view key, int64_t fallback) {
  const Json& v = Get(j, key);
  if (v.is_number_integer() && !v.is_number_unsigned()) return v.get<int64_t>();
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    return u > static_cast<uint64_t>(INT64_MAX) ? fallback : static_cast<int64_t>(u);
  }
  return fallback;
}

// The array `key` of `j`, or an empty array.
inline const Json& Arr(const Json& j, std::string_view key) {
  static const Json kEmpty = Json::array();
  const Json& v = Get(j, key);
  return v.is_array() ? v : kEmpty;
}

// `j` itself if it is an array, else an empty array (safe to iterate).
inline const Json& AsArr(const Json& j) {
  static const Json kEmpty = Json::array();
  return j.is_array() ? j : kEmpty;
}

// The object `key` of `j`, or an empty object.
inline const Json& Obj(const Json& j, std::string_view key) {
  static const Json kEmpty = Json::object();
  const Json& v = Get(j, key);
  return v.is_object() ? v : kEmpty;
}

}  // namespace warren::engine::jr
