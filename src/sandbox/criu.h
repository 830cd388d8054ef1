// CRIU feature detection. Warren checkpoints memory only where `criu check`
// passes on the host (DESIGN.md decision 6); the binary is exec'd, never
// linked, so it stays optional. Detection runs `criu check` once at
// SandboxRuntime::Open() with a timeout. Nothing here checkpoints yet: there
// is no machine in CI where `criu check` passes (see docs/SANDBOX.md).
// Thread-safety: reentrant.
#pragma once

#include <chrono>
#include <string>

namespace warren::sandbox {

struct CriuSupport {
  bool available = false;
  // When unavailable: the first non-empty line `criu check` wrote to stderr
  // (e.g. "Error (criu/cr-check.c:...): ..."), or why it could not run
  // ("criu is not installed", "criu check timed out after 10000 ms").
  // When available: "criu check passed".
  std::string reason;
};

// Runs `<criu> check` (resolved through PATH) with stdin and stdout on
// /dev/null and stderr captured; kills it with SIGKILL after `timeout`.
CriuSupport DetectCriu(std::chrono::milliseconds timeout, const std::string& criu = "criu");

}  // namespace warren::sandbox
