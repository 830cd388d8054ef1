#include "engine/engine_state.h"

#include <algorithm>

#include "engine/json_read.h"

namespace warren::engine {

std::string_view PhaseName(Phase p) {
  switch (p) {
    case Phase::kIdle: return "idle";
    case Phase::kModel: return "model";
    case Phase::kTools: return "tools";
  }
  return "idle";
}

Phase ParsePhase(std::string_view name) {
  if (name == "model") return Phase::kModel;
  if (name == "tools") return Phase::kTools;
  return Phase::kIdle;
}

Json PendingCall::ToJson() const {
  Json j = {{"event_id", event_id}, {"toolu_id", toolu_id}, {"kind", kind}, {"name", name}, {"permission", permission},
            {"confirmed", nullptr}, {"result", nullptr}};
  if (confirmed) j["confirmed"] = *confirmed;
  if (result) j["result"] = {{"content", result->content}, {"is_error", result->is_error}};
  if (!mcp_server.empty()) j["mcp_server"] = mcp_server;
  return j;
}

PendingCall PendingCall::FromJson(const Json& j) {
  PendingCall p;
  p.event_id = jr::Str(j, "event_id");
  p.toolu_id = jr::Str(j, "toolu_id");
  p.kind = jr::Str(j, "kind");
  p.name = jr::Str(j, "name");
  p.permission = jr::Str(j, "permission");
  p.mcp_server = jr::Str(j, "mcp_server");
  if (jr::Get(j, "confirmed").is_string()) p.confirmed = jr::Str(j, "confirmed");
  const Json& r = jr::Get(j, "result");
  if (r.is_object()) p.result = ToolOutcome{jr::Arr(r, "content"), jr::Bool(r, "is_error", false)};
  return p;
}

Json EngineState::AwaitingClient() const {
  Json ids = Json::array();
  for (const PendingCall& p : pending)
    if (!p.result && !p.McpRunnable() && !p.RunsInService()) ids.push_back(p.event_id);
  return ids;
}

bool EngineState::McpCallsDue() const {
  for (const PendingCall& p : pending)
    if (p.McpRunnable()) return true;
  return false;
}

bool PendingCall::RunsInService() const {
  return kind == "server" && !result && (permission == "allow" || confirmed == "allow");
}

Json EngineState::Unresolved() const {
  Json ids = Json::array();
  for (const PendingCall& p : pending)
    if (!p.result && !p.RunsInService()) ids.push_back(p.event_id);
  return ids;
}

bool EngineState::ServerCallsDue() const {
  for (const PendingCall& p : pending)
    if (p.RunsInService()) return true;
  return false;
}

store::EngineRecord EngineState::ToRecord() const {
  store::EngineRecord r;
  r.phase = std::string(PhaseName(phase));
  r.consumed_seq = consumed_seq;
  r.model_request_start_id = model_request_start_id;
  r.calls_this_turn = calls_this_turn;
  r.cost_micros = cost_micros;
  r.transcript_base = transcript_base;
  r.transcript_next = transcript_next;
  r.summary = summary;
  r.pending = Json::array();
  for (const PendingCall& p : pending) r.pending.push_back(p.ToJson());
  return r;
}

EngineState EngineState::FromRecord(const store::EngineRecord& r) {
  EngineState s;
  s.phase = ParsePhase(r.phase);
  s.consumed_seq = r.consumed_seq;
  s.model_request_start_id = r.model_request_start_id;
  s.calls_this_turn = r.calls_this_turn;
  s.cost_micros = r.cost_micros;
  s.transcript_base = r.transcript_base;
  s.transcript_next = std::max(r.transcript_next, r.transcript_base);
  s.summary = r.summary;
  for (const Json& p : jr::AsArr(r.pending))
    if (p.is_object()) s.pending.push_back(PendingCall::FromJson(p));
  return s;
}

}  // namespace warren::engine
