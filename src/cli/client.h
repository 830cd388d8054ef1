// The `warren` client commands: drive a running Warren (or any Managed Agents
// compatible service) from a terminal. docs/CLI.md lists them.
//
//   warren agent create|list        warren env create|list
//   warren session create|list|get|archive|rm
//   warren send SESSION TEXT        warren interrupt SESSION
//   warren approve SESSION TOOL_USE_ID [--deny [MESSAGE]]
//   warren watch SESSION [--until-idle] [--json]
//   warren run --agent AGENT [--env ENV] TEXT   (session + message + live stream)
//   warren completion bash|zsh
//
// On a terminal `run` and `send --wait` draw the turn live (previews, a
// spinner, folded tool output, colours unless NO_COLOR) and are interactive:
// Ctrl-C interrupts (twice leaves), typed lines become user.message, gated
// calls are prompted. Piped output stays plain lines.
//
// Every command takes --base-url (WARREN_BASE_URL, default
// http://127.0.0.1:8400) and --api-key (WARREN_API_KEY, else
// ANTHROPIC_API_KEY). Results go to stdout (ids alone, or the JSON object
// with --json); errors to stderr with exit code 1 (2 for usage errors).
#pragma once

#include <CLI/CLI.hpp>

#include <string>

#include "common/json.h"

namespace warren::cli {

// Adds the client subcommands to `app`. Each sets a callback that runs the
// command and stores its exit code in `*exit_code`.
void RegisterClientCommands(CLI::App& app, int* exit_code);

// One event as a line for people (no trailing newline); "" for events not
// worth a line (pings, previews). Exposed for tests.
std::string FormatEventLine(const Json& event, const std::string& session_id);

}  // namespace warren::cli
