// CLI: `warren sandbox ...` and `warren snapshot ...` commands over the
// in-process SandboxRuntime. The lead registers them from src/cli/main.cc:
//
//   CLI::App app{"warren"};
//   warren::sandbox::RegisterSandboxCommands(app);
//
// Commands: sandbox create|list|get|exec|shell|session|stop|start|pause|resume|fork|tree|rm
// and snapshot build|list|rm, each with --json and --data-dir. Failures print
// to stderr and exit non-zero (CLI::RuntimeError); `sandbox exec` exits with
// the command's own exit code. Thread-safety: registration is not
// thread-safe; the callbacks run on the parsing thread.
#pragma once

#include <CLI/CLI.hpp>

namespace warren::sandbox {

void RegisterSandboxCommands(CLI::App& app);

// `sandbox shell` and `sandbox session create|exec|logs|input|rm|list`
// under the `sandbox` command (sandbox_session_cli.cc); called by the above.
void RegisterShellCommands(CLI::App* sandbox_cmd);

// Parses "1073741824", "512M", "1G", "64k" into bytes (binary units).
bool ParseByteSize(const std::string& s, int64_t* out);

}  // namespace warren::sandbox
