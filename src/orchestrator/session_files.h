// SandboxSessionFiles: the production domain::SessionFiles. A session's
// sandbox is the one the built-in orchestrator made for it (label
// warren.session_id = the session, kLabelSession); tool outputs go to
// /tmp/warren/<kind>/<name>.txt in its root filesystem, written from the
// host with RootFs::ReplaceFileNoFollow: every component resolved relative
// to the rootfs directory fd without following a link (a symlink the
// sandbox planted on the way fails with ELOOP; one planted at the file's
// name is replaced, not followed), temp file + rename. The file is owned by
// the sandbox's root (mode 0644, directories 0755); it works while the
// sandbox is started, paused or stopped (the rootfs is on disk), not when it
// is archived or gone (NotFound: the caller keeps its cut output).
//
// Ownership: borrows the Sandboxes (the runtime), which must outlive it.
// Thread-safety: thread-safe (each call is independent; the runtime locks).
#pragma once

#include <string>
#include <string_view>

#include "domain/session_files.h"
#include "sandbox/sandboxes.h"

namespace warren::orchestrator {

class SandboxSessionFiles final : public domain::SessionFiles {
 public:
  explicit SandboxSessionFiles(sandbox::Sandboxes* sandboxes) : sandboxes_(sandboxes) {}
  SandboxSessionFiles(const SandboxSessionFiles&) = delete;
  SandboxSessionFiles& operator=(const SandboxSessionFiles&) = delete;

  Result<std::string> WriteToolOutput(const std::string& session_id, const std::string& kind, const std::string& name,
                                      std::string_view data) override;

 private:
  sandbox::Sandboxes* sandboxes_;
};

}  // namespace warren::orchestrator
