// The one schema of every client event type (spec section 2, "sendable
// types"): each is parsed from JSON into a typed struct, with errors that
// name the field path. The API validates requests with it and the engine
// reads stored events with it, so the two can never disagree on a field's
// type (a value the API accepted is a value the engine can read).
//
// Context checks that need the store (does `tool_use_id` name an
// agent.tool_use of this session? is the environment self_hosted? where may
// a system.message sit in a request?) stay with the caller.
//
// Stateless; thread-safe. Depends only on src/common. Never throws.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "common/json.h"
#include "common/status.h"

namespace warren::events {

// Content arrays below are validated (block types and fields) and kept as
// JSON: they are passed through to the model and echoed back verbatim.

struct UserMessage {
  Json content = Json::array();  // >= 1 block: text, image, document, redacted
};

struct UserInterrupt {
  std::optional<std::string> session_thread_id;
};

struct ToolConfirmation {
  std::string tool_use_id;  // id of an agent.tool_use / agent.mcp_tool_use event
  bool allow = false;       // result: "allow" | "deny"
  std::optional<std::string> deny_message;  // only with deny
  std::optional<std::string> session_thread_id;
};

struct CustomToolResult {
  std::string custom_tool_use_id;  // id of an agent.custom_tool_use event
  Json content = Json::array();    // may be empty; text, image, document, search_result
  bool is_error = false;           // absent or null: false (the SDK declares `boolean | null`)
  std::optional<std::string> session_thread_id;
};

struct ToolResult {
  std::string tool_use_id;       // id of an agent.tool_use event
  Json content = Json::array();  // may be empty; text, image, document, search_result
  bool is_error = false;         // absent or null: false
};

struct DefineOutcome {
  std::string description;
  std::string rubric_type;  // "text" | "file"
  std::string rubric_text;     // with "text"
  std::string rubric_file_id;  // with "file"
  int64_t max_iterations = 3;  // 1..20
  std::optional<std::string> outcome_id;  // set by the server on the stored event
};

struct SystemMessage {
  Json content = Json::array();  // 1..1000 text blocks
};

using ClientEvent =
    std::variant<UserMessage, UserInterrupt, ToolConfirmation, CustomToolResult, ToolResult, DefineOutcome, SystemMessage>;

// Where the JSON comes from. A request may carry only the fields a client
// may send. A stored row also carries the fields the server added (`id`,
// `processed_at`, `created_at`, `outcome_id`, ...), which are ignored; the
// fields of the schema are checked exactly as for a request.
enum class Origin { kRequest, kStored };

// True for the types ParseClientEvent accepts.
bool IsClientEventType(std::string_view type);

// Parses one client event. `path` prefixes field paths in errors
// ("events[3]"). Errors: InvalidArgument naming the field.
Result<ClientEvent> ParseClientEvent(const Json& e, std::string_view path, Origin origin = Origin::kRequest);

// The wire name of a parsed event's type ("user.tool_result", ...).
std::string_view TypeName(const ClientEvent& e);

}  // namespace warren::events
