// libFuzzer target for the event-send path's parse + validate step: the body
// of POST /v1/sessions/{id}/events is parsed with the bounded, non-throwing
// ParseJson and each event with the one client-event schema
// (src/events/client_events.h), as ApiService::SendEvents does before its
// store-backed checks.
//
// Beyond "does not crash or throw" (ASan/UBSan; an escaping nlohmann
// exception aborts the run), it checks the property the crash of issue 14
// broke: whatever the API accepts, the engine can read. An event accepted as
// a request also parses as a stored row (with the fields the server adds),
// to the same type, and a stored row reads the same typed values back.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>

#include "common/json.h"
#include "events/client_events.h"
#include "events/fields.h"

namespace {

[[noreturn]] void Fail(const char* what, const warren::Json& e) {
  std::fprintf(stderr, "property violated: %s\nevent: %s\n", what, warren::DumpJson(e).c_str());
  std::abort();
}

void CheckOne(const warren::Json& e) {
  using namespace warren::events;
  auto req = ParseClientEvent(e, "events[0]", Origin::kRequest);
  if (!req.ok()) {
    if (req.status().message().empty()) Fail("an error without a message", e);
    return;
  }
  warren::Json row = e;
  row["id"] = "sevt_fuzz";
  row["processed_at"] = nullptr;
  if (std::holds_alternative<DefineOutcome>(*req)) row["outcome_id"] = "outc_fuzz";
  auto stored = ParseClientEvent(row, "event", Origin::kStored);
  if (!stored.ok()) Fail("accepted as a request but unreadable as a stored row", e);
  if (stored->index() != req->index()) Fail("stored row parses to another type", e);
  if (auto* a = std::get_if<ToolResult>(&*req)) {
    const auto& b = std::get<ToolResult>(*stored);
    if (a->is_error != b.is_error || a->tool_use_id != b.tool_use_id || a->content != b.content)
      Fail("tool result reads back differently", e);
  }
  if (auto* a = std::get_if<CustomToolResult>(&*req)) {
    const auto& b = std::get<CustomToolResult>(*stored);
    if (a->is_error != b.is_error || a->custom_tool_use_id != b.custom_tool_use_id) Fail("custom result reads back differently", e);
  }
  if (TypeOf(e) != TypeName(*req)) Fail("type name differs from the event's type", e);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto body = warren::ParseJson(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!body.ok()) return 0;
  const warren::Json& j = *body;
  // The request shape: {"events":[...]}; a bare array or object is fed too.
  if (j.is_object() && j.contains("events") && j["events"].is_array()) {
    for (const auto& e : j["events"]) CheckOne(e);
  } else if (j.is_array()) {
    for (const auto& e : j) CheckOne(e);
  } else {
    CheckOne(j);
  }
  return 0;
}
