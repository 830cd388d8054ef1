#include "sandbox/userns.h"

#include <string>

#include "sandbox/sys.h"

namespace warren::sandbox {

Result<IdRange> AllocateIdRange(const std::set<int>& used) {
  for (int s = 0; s < kMaxIdSlots; ++s) {
    if (used.count(s) == 0) return IdRange{s};
  }
  return Status::ResourceExhausted("no free user id range");
}

std::string IdMapLine(const IdRange& r) {
  return "0 " + std::to_string(r.host_base()) + " " + std::to_string(r.count()) + "\n";
}

Status WriteIdMaps(pid_t pid, const IdRange& r) {
  if (!r.valid()) return Status::InvalidArgument("invalid id range");
  std::string base = "/proc/" + std::to_string(pid);
  WARREN_RETURN_IF_ERROR(WriteStringToFile(base + "/uid_map", IdMapLine(r)).WithContext("uid_map"));
  WARREN_RETURN_IF_ERROR(WriteStringToFile(base + "/gid_map", IdMapLine(r)).WithContext("gid_map"));
  return Status::Ok();
}

}  // namespace warren::sandbox
