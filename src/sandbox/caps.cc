#include "sandbox/caps.h"

#include <errno.h>
#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace warren::sandbox {

CapSet CapSet::Default() {
  CapSet s;
  for (int c : {CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FOWNER, CAP_FSETID, CAP_KILL, CAP_SETGID, CAP_SETUID,
                CAP_SETPCAP, CAP_NET_BIND_SERVICE, CAP_SYS_CHROOT, CAP_AUDIT_WRITE, CAP_SETFCAP}) {
    s.mask |= 1ULL << c;
  }
  return s;
}

Result<CapSet> CapSet::FromNames(const std::vector<std::string>& names) {
  CapSet s;
  for (const auto& n : names) {
    cap_value_t v;
    if (cap_from_name(n.c_str(), &v) != 0) return Status::InvalidArgument("unknown capability: " + n);
    s.mask |= 1ULL << v;
  }
  return s;
}

std::vector<std::string> CapSet::Names() const {
  std::vector<std::string> out;
  for (int c = 0; c <= CAP_LAST_CAP; ++c) {
    if (!Has(c)) continue;
    char* n = cap_to_name(c);
    if (n != nullptr) {
      out.emplace_back(n);
      cap_free(n);
    }
  }
  return out;
}

int ApplyCapabilities(CapSet keep) {
  int last = CAP_LAST_CAP;
  // The running kernel may know more capabilities than our headers.
  for (int c = 0; c < 64; ++c) {
    if (keep.Has(c)) continue;
    if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0) {
      if (errno == EINVAL && c > last) break;
      if (errno != EINVAL) return -errno;
    }
  }
  if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return -errno;
  struct __user_cap_header_struct hdr;
  struct __user_cap_data_struct data[2];
  hdr.version = _LINUX_CAPABILITY_VERSION_3;
  hdr.pid = 0;
  if (syscall(SYS_capget, &hdr, data) != 0) return -errno;
  for (int i = 0; i < 2; ++i) {
    uint32_t k = static_cast<uint32_t>(keep.mask >> (32 * i));
    data[i].permitted &= k;
    data[i].effective &= k;
    data[i].inheritable &= k;
  }
  if (syscall(SYS_capset, &hdr, data) != 0) return -errno;
  return 0;
}

}  // namespace warren::sandbox
