// The six `agent_toolset_20260401` tools (spec section 4): bash, read, write,
// edit, glob, grep. Behaviour and result strings follow the TypeScript SDK
// 1.10.0 node toolset; the intended differences are listed in docs/TOOLS.md.
//
// A Toolset is one session's tool context ("one AgentToolContext per
// session"): it owns the persistent bash shell. Thread-safety: Run() may be
// called from several threads; bash calls are serialised internally, the file
// tools are independent per call. `cancel` may be set from any thread to abort
// a running call.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "runner/bash_session.h"
#include "runner/path_policy.h"

namespace warren::runner {

inline constexpr int64_t kDefaultMaxFileBytes = 256 * 1024;
inline constexpr double kBashDefaultTimeoutMs = 120000;
inline constexpr size_t kGrepOutputLimit = 100 * 1024;
inline constexpr size_t kGlobResultLimit = 200;
inline constexpr size_t kWalkMaxEntries = 50000;

struct ToolsetOptions {
  std::string workdir;
  std::vector<std::string> allowed_roots;
  std::vector<std::string> read_only_roots;
  // Cap for a whole-file read and for edit; nullopt disables it.
  std::optional<int64_t> max_file_bytes = kDefaultMaxFileBytes;
  // Wall-clock bound of the built-in grep walker (the SDK's 60 s).
  int64_t grep_timeout_ms = 60000;
};

// The session content a tool call produced: exactly what goes into
// `user.tool_result.content` (strings already mapped to text blocks, an empty
// text becoming "(no output)").
struct ToolResult {
  bool is_error = false;
  Json content = Json::array();
};

class Toolset final {
 public:
  explicit Toolset(ToolsetOptions options);
  ~Toolset();
  Toolset(const Toolset&) = delete;
  Toolset& operator=(const Toolset&) = delete;

  static const std::vector<std::string>& Names();
  static bool Has(const std::string& name);

  // Runs tool `name` on `input`. An unknown name is an error result.
  ToolResult Run(const std::string& name, const Json& input,
                 const std::atomic<bool>* cancel = nullptr);

  // Kills the shell (and its jobs).
  void Close();

  const ToolsetOptions& options() const { return options_; }

 private:
  struct Outcome;
  Outcome Bash(const Json& in, const std::atomic<bool>* cancel);
  Outcome Read(const Json& in);
  Outcome Write(const Json& in);
  Outcome Edit(const Json& in);
  Outcome Glob(const Json& in);
  Outcome Grep(const Json& in, const std::atomic<bool>* cancel);

  ToolsetOptions options_;
  PathPolicy policy_;
  std::mutex bash_mu_;
  std::unique_ptr<BashSession> bash_;
};

// Standard base64 (with padding).
std::string Base64Encode(std::string_view data);

}  // namespace warren::runner
