#include "orchestrator/session_files.h"

#include "orchestrator/orchestrator.h"

namespace warren::orchestrator {
namespace {

bool SafeName(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
      return false;
  return true;
}

}  // namespace

Result<std::string> SandboxSessionFiles::WriteToolOutput(const std::string& session_id, const std::string& kind,
                                                         const std::string& name, std::string_view data) {
  if (!SafeName(kind) || !SafeName(name)) return Status::InvalidArgument("bad tool output name");
  WARREN_ASSIGN_OR_RETURN(auto all, sandboxes_->List());
  const sandbox::SandboxRecord* found = nullptr;
  for (const auto& r : all) {
    auto it = r.labels.find(kLabelSession);
    if (it == r.labels.end() || it->second != session_id) continue;
    if (r.state == sandbox::SandboxState::kDestroying || r.state == sandbox::SandboxState::kDestroyed) continue;
    found = &r;
    break;
  }
  if (found == nullptr) return Status::NotFound("session " + session_id + " has no sandbox");
  if (found->state == sandbox::SandboxState::kArchived || found->state == sandbox::SandboxState::kArchiving ||
      found->state == sandbox::SandboxState::kRestoring)
    return Status::NotFound("the sandbox of session " + session_id + " is archived");
  WARREN_ASSIGN_OR_RETURN(sandbox::RootFs root, sandboxes_->Files(found->id));
  const std::string path = "/tmp/warren/" + kind + "/" + name + ".txt";
  WARREN_RETURN_IF_ERROR(root.ReplaceFileNoFollow(path, data, 0644, 0755).WithContext("sandbox " + found->id));
  return path;
}

}  // namespace warren::orchestrator
