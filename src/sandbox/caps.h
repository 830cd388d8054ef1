// Capabilities: the reduced set a sandboxed process keeps (relative to its
// user namespace), built from names with libcap on the host, applied in the
// child with raw prctl/capset calls (async-signal-safe).
// Thread-safety: CapSet is a plain value.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace warren::sandbox {

struct CapSet {
  uint64_t mask = 0;  // bit n = capability n

  // Docker's default set minus NET_RAW and MKNOD: chown, dac_override,
  // fowner, fsetid, kill, setgid, setuid, setpcap, net_bind_service,
  // sys_chroot, audit_write, setfcap.
  static CapSet Default();
  // Parses names such as "cap_chown" (libcap), InvalidArgument otherwise.
  static Result<CapSet> FromNames(const std::vector<std::string>& names);
  std::vector<std::string> Names() const;
  bool Has(int cap) const { return (mask >> cap) & 1; }
};

// Async-signal-safe. Drops every capability outside `keep` from the bounding
// set, clears ambient, and sets permitted = effective = inheritable = keep
// (intersected with what the process has). 0 or -errno.
int ApplyCapabilities(CapSet keep);

}  // namespace warren::sandbox
