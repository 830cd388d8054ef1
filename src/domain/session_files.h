// SessionFiles: the port through which the engine leaves a file for the
// agent in its session's sandbox. Used for tool outputs too large for the
// model's context (spec 6, "Large MCP outputs": the output goes to a file in
// the sandbox and the model gets a preview; docs/MCP.md "Large outputs").
//
// The production implementation is orchestrator::SandboxSessionFiles: the
// sandbox of the built-in orchestrator labelled warren.session_id = the
// session, written from the host without following any link. The engine
// never sees the runtime; without an implementation (no orchestrator, or a
// self_hosted worker elsewhere) large outputs are cut with a note.
//
// Thread-safety: implementations are thread-safe (called from the engine's
// tool pool, several sessions at once).
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace warren::domain {

class SessionFiles {
 public:
  virtual ~SessionFiles() = default;
  // Writes `data` to /tmp/warren/<kind>/<name>.txt inside the sandbox of
  // `session_id` (directories created as needed; an earlier file of that
  // name is replaced atomically, so a call made again after a crash writes
  // the same path). `kind` and `name` are [A-Za-z0-9_-]+. Returns the path
  // as the agent sees it. NotFound: the session has no sandbox (yet); other
  // errors: the write was refused or failed (a planted link: ELOOP).
  virtual Result<std::string> WriteToolOutput(const std::string& session_id, const std::string& kind,
                                              const std::string& name, std::string_view data) = 0;
};

}  // namespace warren::domain
