// EngineState: the engine's typed per-session state (DESIGN decision 10).
//
//   phase     kIdle   nothing due; the session waits for client input
//             kModel  a model call is due or in flight (span opened)
//             kTools  tool calls of the last model answer await results
//   cursor    consumed_seq: the last event seq the engine has looked at
//   pending   the tool calls of the current model answer (bounded by one
//             answer, not by the session's length)
//   transcript_base / transcript_next: the current base of the append-only
//             transcript table (rows with idx >= base are the conversation;
//             compaction appends a summary row and moves the base) and the
//             idx of the next row to append
//
// Stored as columns of the store's engine_state table (store::EngineRecord);
// the transcript's rows are store::TranscriptEntry. Values only; no locks.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/json.h"
#include "store/store.h"

namespace warren::engine {

enum class Phase { kIdle, kModel, kTools };

std::string_view PhaseName(Phase p);
// Unknown names read as kIdle.
Phase ParsePhase(std::string_view name);

// The outcome of a tool call: the content blocks (client shape) and is_error.
struct ToolOutcome {
  Json content = Json::array();
  bool is_error = false;
};

struct PendingCall {
  std::string event_id;  // agent.tool_use / agent.custom_tool_use id ("" for unknown tools)
  std::string toolu_id;  // the model's tool_use id
  std::string kind;      // builtin | server (web_fetch, web_search: run by the service) | mcp | custom | unknown
  std::string name;
  std::string permission;              // allow | ask | deny
  std::optional<std::string> confirmed;  // allow | deny once answered
  std::optional<ToolOutcome> result;
  std::string mcp_server;  // kind mcp: the server's name (`name` is the MCP tool's own name)

  // A server-run call that may run now (allowed, or confirmed) and has no
  // result yet: the engine runs it, no client answers it.
  bool RunsInService() const;

  Json ToJson() const;
  // Checked: fields of another type read as empty.
  static PendingCall FromJson(const Json& j);
  // An MCP call the service runs now (allowed, or confirmed by the user).
  bool McpRunnable() const { return kind == "mcp" && !result && (permission == "allow" || confirmed == "allow"); }
};

struct EngineState {
  Phase phase = Phase::kIdle;
  int64_t consumed_seq = 0;
  std::string model_request_start_id;
  int64_t calls_this_turn = 0;
  int64_t cost_micros = 0;
  int64_t transcript_base = 0;
  int64_t transcript_next = 0;
  // The compacted earlier conversation (the first user message), or "".
  std::string summary;
  std::vector<PendingCall> pending;

  // Event ids of pending calls waiting for the client (no result, and not
  // being run by the service), in order: the requires_action list.
  Json Unresolved() const;
  // Unresolved calls that wait for the client: not the calls the service
  // runs itself (server tools and MCP calls, allowed or confirmed).
  Json AwaitingClient() const;
  // True if MCP calls are due to run (unresolved, allowed or confirmed).
  bool McpCallsDue() const;
  // True if some pending call RunsInService().
  bool ServerCallsDue() const;

  store::EngineRecord ToRecord() const;
  static EngineState FromRecord(const store::EngineRecord& r);
};

}  // namespace warren::engine
