// User namespaces: each sandbox owns an exclusive range of 65536 host ids
// (uids and gids alike), mapped to 0..65535 inside. Ranges are numbered
// slots starting far above any id a host user or /etc/subuid range uses, so
// an escaped sandbox root owns nothing shared with the host or any other
// sandbox. Thread-safety: pure functions.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <set>

#include "common/status.h"

namespace warren::sandbox {

inline constexpr uint32_t kIdRangeSize = 65536;
inline constexpr uint32_t kFirstHostId = 0x40000000u;  // 1073741824
inline constexpr int kMaxIdSlots = 16384;

struct IdRange {
  int slot = -1;
  uint32_t host_base() const { return kFirstHostId + static_cast<uint32_t>(slot) * kIdRangeSize; }
  uint32_t count() const { return kIdRangeSize; }
  bool valid() const { return slot >= 0 && slot < kMaxIdSlots; }
};

// The lowest slot not in `used`, or ResourceExhausted.
Result<IdRange> AllocateIdRange(const std::set<int>& used);

// "0 <base> 65536\n": the uid_map/gid_map line for `r`.
std::string IdMapLine(const IdRange& r);

// Writes /proc/<pid>/{uid_map,gid_map} for a child that has just entered a
// new user namespace. The caller must be root in the parent namespace.
Status WriteIdMaps(pid_t pid, const IdRange& r);

}  // namespace warren::sandbox
