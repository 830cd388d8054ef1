// warren-sandbox: a standalone binary exposing the same commands as
// `warren sandbox ...` / `warren snapshot ...` (for tests and benchmarks
// before the main CLI wires them in).
#include <CLI/CLI.hpp>

#include "cli/sandbox_cli.h"

int main(int argc, char** argv) {
  CLI::App app{"Warren sandbox runtime"};
  app.require_subcommand(1);
  warren::sandbox::RegisterSandboxCommands(app);
  CLI11_PARSE(app, argc, argv);
  return 0;
}
