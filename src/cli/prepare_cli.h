// `warren sandbox prepare` (docs/CLI.md): the command line over Preparer
// (prepare.h). Registered under the existing `sandbox` command, so call it
// after sandbox::RegisterSandboxCommands(app). Lives in src/cli (the command
// layer), over the domain's orchestrator::Preparer. Host paths (local
// repositories, dataset directories and tarballs) are allowed here: the CLI
// runs as the host user. Tokens and credential values are never taken from
// argv (they would show in `ps` and shell history): they come from files or
// the CLI's own environment. Thread-safety: registration is not
// thread-safe; the callback runs on the parsing thread.
#pragma once

#include <CLI/CLI.hpp>

namespace warren::cli {

void RegisterPrepareCommand(CLI::App& app);

}  // namespace warren::cli
