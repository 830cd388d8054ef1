#include "sandbox/network.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <net/if.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/socket.h>
#include <sched.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <thread>

#include "common/ids.h"
#include "common/unique_fd.h"
#include "sandbox/sys.h"

namespace warren::sandbox {

namespace {

struct SockFree {
  void operator()(nl_sock* s) const { nl_socket_free(s); }
};
struct LinkPut {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
struct AddrPut {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
struct RtAddrPut {
  void operator()(rtnl_addr* a) const { rtnl_addr_put(a); }
};
struct RoutePut {
  void operator()(rtnl_route* r) const { rtnl_route_put(r); }
};
struct CacheFree {
  void operator()(nl_cache* c) const { nl_cache_free(c); }
};
using Sock = std::unique_ptr<nl_sock, SockFree>;
using Link = std::unique_ptr<rtnl_link, LinkPut>;
using Addr = std::unique_ptr<nl_addr, AddrPut>;
using Cache = std::unique_ptr<nl_cache, CacheFree>;

// libnl's negative NLE_* code -> Status, with the operation named.
Status NlStatus(int err, const std::string& what) {
  if (err >= 0) return Status::Ok();
  std::string msg = what + ": " + nl_geterror(err);
  switch (-err) {
    case NLE_EXIST:
      return Status::Conflict(msg);
    case NLE_NODEV:
    case NLE_OBJ_NOTFOUND:
      return Status::NotFound(msg);
    case NLE_PERM:
      return Status::PermissionDenied(msg);
    default:
      return Status::IOError(msg);
  }
}

// A netlink route socket in the caller's (the host's) network namespace.
Result<Sock> HostSocket() {
  Sock sk(nl_socket_alloc());
  if (!sk) return Status::ResourceExhausted("nl_socket_alloc");
  WARREN_RETURN_IF_ERROR(NlStatus(nl_connect(sk.get(), NETLINK_ROUTE), "netlink connect"));
  return sk;
}

// A netlink route socket opened inside the netns of the process behind
// `pidfd`, plus an fd of that netns. A helper thread enters the namespace
// (setns changes only the calling thread) and exits afterwards; the socket
// stays bound to the namespace it was created in.
Status SandboxSocket(int pidfd, Sock* sk, UniqueFd* nsfd) {
  Status st;
  nl_sock* raw = nullptr;
  int fd = -1;
  std::thread t([&] {
    if (setns(pidfd, CLONE_NEWNET) != 0) {
      st = ErrnoStatus("setns(CLONE_NEWNET) into the sandbox");
      return;
    }
    fd = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      st = ErrnoStatus("open sandbox netns");
      return;
    }
    raw = nl_socket_alloc();
    if (!raw) {
      st = Status::ResourceExhausted("nl_socket_alloc");
      return;
    }
    st = NlStatus(nl_connect(raw, NETLINK_ROUTE), "netlink connect in sandbox netns");
  });
  t.join();
  sk->reset(raw);
  nsfd->reset(fd);
  return st;
}

Result<Link> GetLink(nl_sock* sk, const std::string& name) {
  rtnl_link* l = nullptr;
  WARREN_RETURN_IF_ERROR(NlStatus(rtnl_link_get_kernel(sk, 0, name.c_str(), &l), "get link " + name));
  return Link(l);
}

Status LinkUp(nl_sock* sk, rtnl_link* link) {
  Link change(rtnl_link_alloc());
  if (!change) return Status::ResourceExhausted("rtnl_link_alloc");
  rtnl_link_set_flags(change.get(), IFF_UP);
  return NlStatus(rtnl_link_change(sk, link, change.get(), 0),
                  std::string("set link up ") + rtnl_link_get_name(link));
}

Result<Addr> MakeAddr(uint32_t host_order, int len) {
  uint32_t be = htonl(host_order);
  Addr a(nl_addr_build(AF_INET, &be, sizeof(be)));
  if (!a) return Status::ResourceExhausted("nl_addr_build");
  nl_addr_set_prefixlen(a.get(), len);
  return a;
}

Status AddAddress(nl_sock* sk, int ifindex, uint32_t addr, int len) {
  std::unique_ptr<rtnl_addr, RtAddrPut> a(rtnl_addr_alloc());
  if (!a) return Status::ResourceExhausted("rtnl_addr_alloc");
  WARREN_ASSIGN_OR_RETURN(Addr local, MakeAddr(addr, len));
  rtnl_addr_set_ifindex(a.get(), ifindex);
  WARREN_RETURN_IF_ERROR(NlStatus(rtnl_addr_set_local(a.get(), local.get()), "set address"));
  rtnl_addr_set_prefixlen(a.get(), len);
  return NlStatus(rtnl_addr_add(sk, a.get(), 0), "add address " + FormatIpv4(addr));
}

Status AddDefaultRoute(nl_sock* sk, int ifindex, uint32_t gateway) {
  std::unique_ptr<rtnl_route, RoutePut> r(rtnl_route_alloc());
  if (!r) return Status::ResourceExhausted("rtnl_route_alloc");
  rtnl_route_set_family(r.get(), AF_INET);
  rtnl_route_set_table(r.get(), RT_TABLE_MAIN);
  WARREN_ASSIGN_OR_RETURN(Addr dst, MakeAddr(0, 0));
  WARREN_RETURN_IF_ERROR(NlStatus(rtnl_route_set_dst(r.get(), dst.get()), "route dst"));
  WARREN_ASSIGN_OR_RETURN(Addr gw, MakeAddr(gateway, 32));
  rtnl_nexthop* nh = rtnl_route_nh_alloc();
  if (!nh) return Status::ResourceExhausted("rtnl_route_nh_alloc");
  rtnl_route_nh_set_ifindex(nh, ifindex);
  rtnl_route_nh_set_gateway(nh, gw.get());
  rtnl_route_add_nexthop(r.get(), nh);  // the route owns nh from here
  return NlStatus(rtnl_route_add(sk, r.get(), NLM_F_CREATE | NLM_F_EXCL), "add default route");
}

// Everything after the pair exists; split out so SetupVeth can undo on error.
Status ConfigureVeth(nl_sock* host, nl_sock* inside, const NetSlot& slot) {
  WARREN_ASSIGN_OR_RETURN(Link h, GetLink(host, slot.host_if));
  int hidx = rtnl_link_get_ifindex(h.get());
  WARREN_RETURN_IF_ERROR(EnableForwarding(slot.host_if));
  WARREN_RETURN_IF_ERROR(AddAddress(host, hidx, slot.host_addr, slot.prefix_len));
  WARREN_RETURN_IF_ERROR(LinkUp(host, h.get()));
  WARREN_ASSIGN_OR_RETURN(Link lo, GetLink(inside, "lo"));
  WARREN_RETURN_IF_ERROR(LinkUp(inside, lo.get()));
  WARREN_ASSIGN_OR_RETURN(Link e, GetLink(inside, "eth0"));
  int eidx = rtnl_link_get_ifindex(e.get());
  WARREN_RETURN_IF_ERROR(AddAddress(inside, eidx, slot.sandbox_addr, slot.prefix_len));
  WARREN_RETURN_IF_ERROR(LinkUp(inside, e.get()));
  return AddDefaultRoute(inside, eidx, slot.host_addr);
}

}  // namespace

std::string Ipv4Cidr::ToString() const { return FormatIpv4(addr) + "/" + std::to_string(len); }

bool Ipv4Cidr::Contains(uint32_t a) const {
  uint32_t mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
  return (a & mask) == addr;
}

Result<uint32_t> ParseIpv4(const std::string& s) {
  // inet_pton accepts exactly four decimal octets (no octal/hex shorthands).
  in_addr a{};
  if (s.empty() || s.size() > 15 || inet_pton(AF_INET, s.c_str(), &a) != 1) {
    return Status::InvalidArgument("not an IPv4 address: '" + s + "'");
  }
  return ntohl(a.s_addr);
}

std::string FormatIpv4(uint32_t a) {
  char buf[INET_ADDRSTRLEN];
  in_addr n{htonl(a)};
  inet_ntop(AF_INET, &n, buf, sizeof(buf));
  return buf;
}

Result<Ipv4Cidr> ParseIpv4Cidr(const std::string& s) {
  Ipv4Cidr c;
  std::string ip = s;
  if (auto slash = s.find('/'); slash != std::string::npos) {
    ip = s.substr(0, slash);
    std::string l = s.substr(slash + 1);
    if (l.empty() || l.size() > 2 || l.find_first_not_of("0123456789") != std::string::npos || std::stoi(l) > 32) {
      return Status::InvalidArgument("bad prefix length in CIDR '" + s + "' (0..32)");
    }
    c.len = std::stoi(l);
  }
  auto a = ParseIpv4(ip);
  if (!a.ok()) return Status::InvalidArgument("not an IPv4 CIDR: '" + s + "'");
  c.addr = *a;
  uint32_t mask = c.len == 0 ? 0 : ~uint32_t{0} << (32 - c.len);
  if ((c.addr & ~mask) != 0) {
    Ipv4Cidr fixed{c.addr & mask, c.len};
    return Status::InvalidArgument("CIDR '" + s + "' has host bits set (did you mean " + fixed.ToString() + "?)");
  }
  return c;
}

std::string NetIfPrefix(const std::string& cgroup_prefix) {
  return "w" + Sha256Hex(cgroup_prefix).substr(0, 6) + "n";
}

Result<NetSlot> NetSlotFor(const Ipv4Cidr& pool, const std::string& if_prefix, int slot) {
  if (pool.len > 30) return Status::InvalidArgument("network pool " + pool.ToString() + " is smaller than a /30");
  uint64_t slots = uint64_t{1} << (30 - pool.len);
  if (slot < 0 || static_cast<uint64_t>(slot) >= slots) {
    return Status::ResourceExhausted("network pool " + pool.ToString() + " has no room for slot " +
                                     std::to_string(slot) + " (" + std::to_string(slots) + " /30s)");
  }
  char hex[16];
  snprintf(hex, sizeof(hex), "%x", static_cast<unsigned>(slot));
  NetSlot s;
  s.host_if = if_prefix + hex;
  if (s.host_if.size() >= IFNAMSIZ) return Status::InvalidArgument("interface name too long: " + s.host_if);
  uint32_t base = pool.addr + static_cast<uint32_t>(slot) * 4;
  s.host_addr = base + 1;
  s.sandbox_addr = base + 2;
  s.prefix_len = 30;
  return s;
}

Status SetupVeth(const NetSlot& slot, int pidfd) {
  WARREN_ASSIGN_OR_RETURN(Sock host, HostSocket());
  Sock inside;
  UniqueFd nsfd;
  WARREN_RETURN_IF_ERROR(SandboxSocket(pidfd, &inside, &nsfd));
  {
    Link veth(rtnl_link_veth_alloc());
    if (!veth) return Status::ResourceExhausted("rtnl_link_veth_alloc");
    rtnl_link_set_name(veth.get(), slot.host_if.c_str());
    Link peer(rtnl_link_veth_get_peer(veth.get()));
    rtnl_link_set_name(peer.get(), "eth0");
    rtnl_link_set_ns_fd(peer.get(), nsfd.get());
    WARREN_RETURN_IF_ERROR(
        NlStatus(rtnl_link_add(host.get(), veth.get(), NLM_F_CREATE | NLM_F_EXCL), "create veth " + slot.host_if));
  }
  Status s = ConfigureVeth(host.get(), inside.get(), slot);
  if (!s.ok()) (void)DeleteLink(slot.host_if);
  return s;
}

Status DeleteLink(const std::string& name) {
  WARREN_ASSIGN_OR_RETURN(Sock sk, HostSocket());
  Link l(rtnl_link_alloc());
  if (!l) return Status::ResourceExhausted("rtnl_link_alloc");
  rtnl_link_set_name(l.get(), name.c_str());
  Status s = NlStatus(rtnl_link_delete(sk.get(), l.get()), "delete link " + name);
  return s.code() == Code::kNotFound ? Status::Ok() : s;
}

Result<std::vector<std::string>> ListLinks(const std::string& prefix) {
  WARREN_ASSIGN_OR_RETURN(Sock sk, HostSocket());
  nl_cache* raw = nullptr;
  WARREN_RETURN_IF_ERROR(NlStatus(rtnl_link_alloc_cache(sk.get(), AF_UNSPEC, &raw), "list links"));
  Cache cache(raw);
  std::vector<std::string> out;
  for (nl_object* o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
    const char* name = rtnl_link_get_name(reinterpret_cast<rtnl_link*>(o));
    if (name && std::string_view(name).substr(0, prefix.size()) == prefix) out.emplace_back(name);
  }
  return out;
}

Result<std::vector<std::string>> DefaultRouteInterfaces() {
  WARREN_ASSIGN_OR_RETURN(Sock sk, HostSocket());
  nl_cache* raw = nullptr;
  WARREN_RETURN_IF_ERROR(NlStatus(rtnl_route_alloc_cache(sk.get(), AF_INET, 0, &raw), "list routes"));
  Cache routes(raw);
  // Names by index one at a time (if_indextoname: an RCU lookup), not a
  // dump of every link: that takes the rtnl lock and grows with the number
  // of sandboxes (one veth each), and this runs at every sandbox start.
  std::vector<std::string> out;
  for (nl_object* o = nl_cache_get_first(routes.get()); o; o = nl_cache_get_next(o)) {
    auto* r = reinterpret_cast<rtnl_route*>(o);
    nl_addr* dst = rtnl_route_get_dst(r);
    if (rtnl_route_get_table(r) != RT_TABLE_MAIN || (dst && nl_addr_get_prefixlen(dst) != 0)) continue;
    for (int i = 0; i < rtnl_route_get_nnexthops(r); ++i) {
      char name[IF_NAMESIZE + 1] = {};
      int idx = rtnl_route_nh_get_ifindex(rtnl_route_nexthop_n(r, i));
      if (idx > 0 && if_indextoname(static_cast<unsigned>(idx), name) != nullptr && name[0]) out.emplace_back(name);
    }
  }
  return out;
}

Status EnableForwarding(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ || ifname.find('/') != std::string::npos || ifname[0] == '.') {
    return Status::InvalidArgument("bad interface name: " + ifname);
  }
  return WriteStringToFile("/proc/sys/net/ipv4/conf/" + ifname + "/forwarding", "1");
}

}  // namespace warren::sandbox
