// OrchestratorIdentity: who an orchestrator is, for the one-orchestrator-
// per-environment check (docs/ORCHESTRATOR.md, "Several orchestrators").
//
// The id is stable per sandbox data dir: it is kept in
// `<data dir>/orchestrator.id` (created once with a random id, mode 0600),
// so a replacement process on the same data dir (an upgrade, a restart
// after a crash) is the same orchestrator and is accepted at once, while a
// second host (another data dir) is another one. The host name is only for
// messages. The orchestrator sends both on its work polls as the Warren
// extension headers `warren-orchestrator-id` / `warren-orchestrator-host`.
//
// Thread-safety: free functions, no shared state. Callers hold the data
// dir's orchestrator.lock; creation is atomic anyway (write a temporary
// file, then link it into place: two racing creators agree on one id).
#pragma once

#include <string>

#include "common/status.h"

namespace warren::orchestrator {

inline constexpr const char* kIdentityFile = "orchestrator.id";
// error.details.error_code of the poll's 409 when another orchestrator
// holds the environment (the queue's kEnvironmentHeldCode).
inline constexpr const char* kEnvironmentHeldCode = "environment_held_by_another_orchestrator";

struct OrchestratorIdentity {
  std::string id;    // "orch_" + 26 base62 characters
  std::string host;  // gethostname(2), "" when unknown
};

// Reads `<data_dir>/orchestrator.id`, creating it when absent. The file is
// opened relative to the data dir without following a link (O_NOFOLLOW:
// a symlink there is an error, ELOOP) and must be a regular file holding
// one id of 1..128 characters of [A-Za-z0-9_.:-]; anything else is
// FailedPrecondition naming the file (delete it to get a new id).
Result<OrchestratorIdentity> LoadIdentity(const std::string& data_dir);

// True if `id` is an acceptable orchestrator id (see LoadIdentity).
bool ValidOrchestratorId(const std::string& id);

}  // namespace warren::orchestrator
