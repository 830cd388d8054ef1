// Internal to src/store: the reads of indexed fields that every Store
// implementation shares, so they agree on what a row's columns are. Store
// inputs and mutator results are trust boundaries: these never throw.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "common/json.h"
#include "common/status.h"

namespace warren::store::internal {

// obj[field] as RFC 3339 micros, else the clock's now.
inline int64_t TimeOf(const Json& obj, const char* field, const Clock* clock) {
  if (obj.is_object() && obj.contains(field) && obj[field].is_string())
    if (auto t = ParseRfc3339(obj[field].get_ref<const std::string&>())) return *t;
  return clock->NowMicros();
}

inline Result<std::string> StrField(const Json& obj, const char* field, std::string_view what) {
  if (!obj.is_object() || !obj.contains(field) || !obj[field].is_string())
    return Status::InvalidArgument(std::string(what) + ": string field '" + field + "' required");
  return obj[field].get<std::string>();
}

inline Result<int64_t> IntField(const Json& obj, const char* field, std::string_view what) {
  if (!obj.is_object() || !obj.contains(field) || !obj[field].is_number_integer())
    return Status::InvalidArgument(std::string(what) + ": integer field '" + field + "' required");
  return obj[field].get<int64_t>();
}

inline int64_t ArchivedFlag(const Json& obj) {
  return obj.is_object() && obj.contains("archived_at") && !obj["archived_at"].is_null() ? 1 : 0;
}

// A client event (user.*, system.message) the engine has not processed yet.
inline int64_t AwaitingEngine(const std::string& type, const Json& ev) {
  bool client = type.rfind("user.", 0) == 0 || type == "system.message";
  bool processed = ev.is_object() && ev.contains("processed_at") && !ev["processed_at"].is_null();
  return client && !processed ? 1 : 0;
}

// memory_store_id of each resource of a session.
inline std::vector<std::string> MemoryStoresOf(const Json& session) {
  std::vector<std::string> out;
  if (!session.is_object() || !session.contains("resources") || !session["resources"].is_array()) return out;
  for (const Json& r : session["resources"])
    if (r.is_object() && r.contains("memory_store_id") && r["memory_store_id"].is_string())
      out.push_back(r["memory_store_id"].get<std::string>());
  return out;
}

// obj[field] if it is a string (an RFC 3339 time), else the clock's now.
inline std::string TimeStrOf(const Json& obj, const char* field, const Clock* clock) {
  if (obj.is_object() && obj.contains(field) && obj[field].is_string()) return obj[field].get<std::string>();
  return FormatRfc3339(clock->NowMicros());
}

// The ObjectChange type (store.h) of an update of a `kind` object from `cur`
// to `next`: "<kind>.archived" when it sets archived_at, else `other` when
// anything changed ("" = report nothing), else "".
inline std::string UpdateChangeType(const std::string& kind, const Json& cur, const Json& next, const std::string& other) {
  if (cur == next) return "";
  if (!ArchivedFlag(cur) && ArchivedFlag(next)) return kind + ".archived";
  return other;
}

// A work item is live (at most one per session) until it is stopped.
inline bool LiveWorkState(const std::string& state) {
  return state == "queued" || state == "starting" || state == "active" || state == "stopping";
}

}  // namespace warren::store::internal
