#include "events/client_events.h"

#include <array>

#include "events/fields.h"

namespace warren::events {
namespace {

constexpr std::array<std::string_view, 7> kTypes = {"user.message",          "user.interrupt",    "user.tool_confirmation",
                                                    "user.custom_tool_result", "user.tool_result", "user.define_outcome",
                                                    "system.message"};

// With Origin::kRequest unknown fields are refused; stored rows carry the
// server's own fields too, so only the schema's fields are checked there.
Status Known(const Json& e, std::initializer_list<std::string_view> allowed, std::string_view path, Origin origin) {
  if (origin == Origin::kStored) return Status::Ok();
  return ExpectKnownFields(e, allowed, path);
}

Status ReadContent(const Json& e, std::string_view path, bool required, std::initializer_list<std::string_view> allowed,
                   size_t min_items, size_t max_items, Json* out) {
  auto it = e.find("content");
  if (it == e.end() || it->is_null()) {
    if (required) return Invalid(JoinPath(path, "content"), "field required");
    *out = Json::array();
    return Status::Ok();
  }
  WARREN_RETURN_IF_ERROR(ValidateContent(*it, JoinPath(path, "content"), allowed, min_items, max_items));
  *out = *it;
  return Status::Ok();
}

Result<ClientEvent> ParseMessage(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "content"}, p, o));
  UserMessage m;
  WARREN_RETURN_IF_ERROR(ReadContent(e, p, true, {"text", "image", "document", "redacted"}, 1, 10000, &m.content));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseInterrupt(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "session_thread_id"}, p, o));
  UserInterrupt m;
  WARREN_RETURN_IF_ERROR(ReadString(e, "session_thread_id", p, {.nullable = true, .min = 1, .max = 128}, &m.session_thread_id));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseConfirmation(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "tool_use_id", "result", "deny_message", "session_thread_id"}, p, o));
  ToolConfirmation m;
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(ReadString(e, "tool_use_id", p, {.required = true, .min = 1, .max = 128}, &s));
  m.tool_use_id = *s;
  WARREN_RETURN_IF_ERROR(ReadString(e, "result", p, {.required = true, .min = 1, .max = 16}, &s));
  if (*s != "allow" && *s != "deny") return Invalid(JoinPath(p, "result"), "must be 'allow' or 'deny'");
  m.allow = *s == "allow";
  WARREN_RETURN_IF_ERROR(ReadString(e, "deny_message", p, {.nullable = true, .max = 10000}, &m.deny_message));
  if (m.deny_message && m.allow) return Invalid(JoinPath(p, "deny_message"), "is only allowed with result 'deny'");
  WARREN_RETURN_IF_ERROR(ReadString(e, "session_thread_id", p, {.nullable = true, .min = 1, .max = 128}, &m.session_thread_id));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseCustomToolResult(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "custom_tool_use_id", "content", "is_error", "session_thread_id"}, p, o));
  CustomToolResult m;
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(ReadString(e, "custom_tool_use_id", p, {.required = true, .min = 1, .max = 128}, &s));
  m.custom_tool_use_id = *s;
  std::optional<bool> is_error;
  WARREN_RETURN_IF_ERROR(ReadBool(e, "is_error", p, &is_error));
  m.is_error = is_error.value_or(false);
  WARREN_RETURN_IF_ERROR(ReadContent(e, p, false, {"text", "image", "document", "search_result"}, 0, 10000, &m.content));
  WARREN_RETURN_IF_ERROR(ReadString(e, "session_thread_id", p, {.nullable = true, .min = 1, .max = 128}, &m.session_thread_id));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseToolResult(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "tool_use_id", "content", "is_error"}, p, o));
  ToolResult m;
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(ReadString(e, "tool_use_id", p, {.required = true, .min = 1, .max = 128}, &s));
  m.tool_use_id = *s;
  std::optional<bool> is_error;
  WARREN_RETURN_IF_ERROR(ReadBool(e, "is_error", p, &is_error));
  m.is_error = is_error.value_or(false);
  WARREN_RETURN_IF_ERROR(ReadContent(e, p, false, {"text", "image", "document", "search_result"}, 0, 10000, &m.content));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseDefineOutcome(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "description", "rubric", "max_iterations"}, p, o));
  DefineOutcome m;
  std::optional<std::string> s;
  WARREN_RETURN_IF_ERROR(ReadString(e, "description", p, {.required = true, .min = 1, .max = 100000}, &s));
  m.description = *s;
  auto r = e.find("rubric");
  std::string rp = JoinPath(p, "rubric");
  if (r == e.end()) return Invalid(rp, "field required");
  WARREN_RETURN_IF_ERROR(ExpectObject(*r, rp));
  WARREN_RETURN_IF_ERROR(ReadString(*r, "type", rp, {.required = true, .min = 1, .max = 16}, &s));
  m.rubric_type = *s;
  if (m.rubric_type == "text") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(*r, {"type", "content"}, rp));
    WARREN_RETURN_IF_ERROR(ReadString(*r, "content", rp, {.required = true, .min = 1}, &s));
    m.rubric_text = *s;
  } else if (m.rubric_type == "file") {
    WARREN_RETURN_IF_ERROR(ExpectKnownFields(*r, {"type", "file_id"}, rp));
    WARREN_RETURN_IF_ERROR(ReadString(*r, "file_id", rp, {.required = true, .min = 1, .max = 256}, &s));
    m.rubric_file_id = *s;
  } else {
    return Invalid(JoinPath(rp, "type"), "must be 'text' or 'file'");
  }
  std::optional<int64_t> iters;
  WARREN_RETURN_IF_ERROR(ReadInt(e, "max_iterations", p, 1, 20, &iters));
  m.max_iterations = iters.value_or(3);
  if (o == Origin::kStored)
    WARREN_RETURN_IF_ERROR(ReadString(e, "outcome_id", p, {.nullable = true, .min = 1, .max = 128}, &m.outcome_id));
  return ClientEvent(std::move(m));
}

Result<ClientEvent> ParseSystemMessage(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(Known(e, {"type", "content"}, p, o));
  SystemMessage m;
  WARREN_RETURN_IF_ERROR(ReadContent(e, p, true, {"text"}, 1, 1000, &m.content));
  return ClientEvent(std::move(m));
}

}  // namespace

bool IsClientEventType(std::string_view type) {
  for (std::string_view t : kTypes)
    if (t == type) return true;
  return false;
}

Result<ClientEvent> ParseClientEvent(const Json& e, std::string_view p, Origin o) {
  WARREN_RETURN_IF_ERROR(ExpectObject(e, p));
  std::optional<std::string> type;
  WARREN_RETURN_IF_ERROR(ReadString(e, "type", p, {.required = true, .min = 1, .max = 64}, &type));
  if (*type == "user.message") return ParseMessage(e, p, o);
  if (*type == "user.interrupt") return ParseInterrupt(e, p, o);
  if (*type == "user.tool_confirmation") return ParseConfirmation(e, p, o);
  if (*type == "user.custom_tool_result") return ParseCustomToolResult(e, p, o);
  if (*type == "user.tool_result") return ParseToolResult(e, p, o);
  if (*type == "user.define_outcome") return ParseDefineOutcome(e, p, o);
  if (*type == "system.message") return ParseSystemMessage(e, p, o);
  return Invalid(JoinPath(p, "type"), "unknown or non-sendable event type '" + type->substr(0, 64) + "'");
}

std::string_view TypeName(const ClientEvent& e) { return kTypes[e.index()]; }

}  // namespace warren::events
