// Unit tests of the pure parts of the isolated network policy: address
// parsing, slot arithmetic, interface names and the rendered nft scripts.
// (Kernel behaviour is covered by tests/integration/sandbox/network_test.cc.)
#include "sandbox/network.h"

#include <gtest/gtest.h>
#include <net/if.h>

#include <fstream>
#include <set>
#include <sstream>

#include "sandbox/netfilter.h"

namespace warren::sandbox {
namespace {

TEST(NetworkTest, ParsesStrictIpv4Cidrs) {
  auto c = ParseIpv4Cidr("10.213.0.0/16");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->addr, 0x0AD50000u);
  EXPECT_EQ(c->len, 16);
  EXPECT_EQ(c->ToString(), "10.213.0.0/16");
  EXPECT_EQ(ParseIpv4Cidr("1.2.3.4")->ToString(), "1.2.3.4/32");
  EXPECT_EQ(ParseIpv4Cidr("0.0.0.0/0")->ToString(), "0.0.0.0/0");
  EXPECT_TRUE(c->Contains(0x0AD5FFFFu));
  EXPECT_FALSE(c->Contains(0x0AD60000u));
  for (const char* bad : {"", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0/8", "010.0.0.0/8x", "a.b.c.d/8",
                          "10.0.0.0/8/8", "::1/128", "256.0.0.0/8", " 10.0.0.0/8", "10.0.0.0/008"}) {
    EXPECT_FALSE(ParseIpv4Cidr(bad).ok()) << bad;
  }
  auto host_bits = ParseIpv4Cidr("10.1.2.3/24");
  ASSERT_FALSE(host_bits.ok());
  EXPECT_NE(host_bits.status().message().find("10.1.2.0/24"), std::string::npos);
}

TEST(NetworkTest, DefaultRouteInterfacesMatchTheKernelRouteTable) {
  // The uplinks whose forwarding a sandbox start turns on: the devices of
  // the main table's IPv4 default routes, as /proc/net/route lists them
  // (names looked up by index, no link dump).
  auto got = DefaultRouteInterfaces();
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  std::set<std::string> want;
  std::ifstream route("/proc/net/route");
  std::string line;
  std::getline(route, line);  // header
  while (std::getline(route, line)) {
    std::istringstream f(line);
    std::string iface, dest, gw, flags, refcnt, use, metric, mask;
    if (!(f >> iface >> dest >> gw >> flags >> refcnt >> use >> metric >> mask)) continue;
    if (dest == "00000000" && mask == "00000000" && (std::stoul(flags, nullptr, 16) & 1)) want.insert(iface);
  }
  std::set<std::string> have(got->begin(), got->end());
  for (const auto& w : want) EXPECT_TRUE(have.count(w)) << "missing uplink " << w;
  for (const auto& h : have) EXPECT_NE(if_nametoindex(h.c_str()), 0u) << h;
  if (want.empty()) {
    EXPECT_TRUE(have.empty());
  }
}

TEST(NetworkTest, SlotsArePointToPointSlash30s) {
  Ipv4Cidr pool = *ParseIpv4Cidr("10.213.0.0/16");
  auto s0 = NetSlotFor(pool, "wabcdefn", 0);
  ASSERT_TRUE(s0.ok());
  EXPECT_EQ(s0->host_if, "wabcdefn0");
  EXPECT_EQ(FormatIpv4(s0->host_addr), "10.213.0.1");
  EXPECT_EQ(FormatIpv4(s0->sandbox_addr), "10.213.0.2");
  auto last = NetSlotFor(pool, "wabcdefn", 16383);
  ASSERT_TRUE(last.ok());
  EXPECT_EQ(last->host_if, "wabcdefn3fff");
  EXPECT_EQ(FormatIpv4(last->sandbox_addr), "10.213.255.254");
  EXPECT_EQ(NetSlotFor(pool, "wabcdefn", 16384).status().code(), Code::kResourceExhausted);
  EXPECT_EQ(NetSlotFor(*ParseIpv4Cidr("10.213.7.0/24"), "w", 64).status().code(), Code::kResourceExhausted);
  // Names fit IFNAMSIZ for every slot of the largest pool allowed (/8).
  EXPECT_LE(NetSlotFor(*ParseIpv4Cidr("10.0.0.0/8"), NetIfPrefix("warren"), (1 << 22) - 1)->host_if.size(), 15u);
}

TEST(NetworkTest, InterfacePrefixDependsOnTheRuntime) {
  EXPECT_EQ(NetIfPrefix("warren").size(), 8u);
  EXPECT_EQ(NetIfPrefix("warren"), NetIfPrefix("warren"));
  EXPECT_NE(NetIfPrefix("warren"), NetIfPrefix("warren-it-1"));
  EXPECT_EQ(FirewallTableName("warren-it.1"), "warren_warren_it_1");
}

TEST(NetfilterTest, RendersOneChainAndSetPerSandbox) {
  FirewallSpec spec{"warren_t", "wabcdefn", *ParseIpv4Cidr("10.213.0.0/16"), {}};
  std::string empty = RenderFirewall(spec);
  EXPECT_EQ(empty, "table inet warren_t {}\ndelete table inet warren_t\n");
  spec.sandboxes.push_back({0, "wabcdefn0", 0x0AD50002, {*ParseIpv4Cidr("10.99.0.0/24")}, false});
  spec.sandboxes.push_back({1, "wabcdefn1", 0x0AD50006, {}, true});
  std::string t = RenderFirewall(spec);
  for (const char* want : {"set allow_0 { type ipv4_addr; flags interval; auto-merge; elements = { 10.99.0.0/24 } }",
                           "chain sbx_0 {", "ip saddr != 10.213.0.2 drop", "ip daddr @blocked drop",
                           "chain sbx_1 {", "ip saddr != 10.213.0.6 drop",
                           "\"wabcdefn0\" : jump sbx_0, \"wabcdefn1\" : jump sbx_1",
                           "iifname \"wabcdefn*\" drop", "oifname \"wabcdefn*\" drop",
                           "ip saddr 10.213.0.0/16 oifname != \"wabcdefn*\" masquerade", "169.254.0.0/16"}) {
    EXPECT_NE(t.find(want), std::string::npos) << want << "\n" << t;
  }
  // block_all: sbx_1 ends in a plain drop, with no blocked-set rule.
  std::string sbx1 = t.substr(t.find("chain sbx_1"), t.find("}", t.find("chain sbx_1")) - t.find("chain sbx_1"));
  EXPECT_EQ(sbx1.find("@blocked"), std::string::npos);
  EXPECT_NE(sbx1.find("    drop\n"), std::string::npos);
  // No allowlist, no set: libnftables' cache cost grows with every interval set.
  EXPECT_EQ(t.find("allow_1"), std::string::npos) << t;

  std::string add = RenderAddSandbox("warren_t", spec.sandboxes[0]);
  EXPECT_NE(add.find("add element inet warren_t allow_0 { 10.99.0.0/24 }"), std::string::npos) << add;
  EXPECT_NE(add.find("add element inet warren_t dispatch { \"wabcdefn0\" : jump sbx_0 }"), std::string::npos);
  std::string del = RenderRemoveSandbox("warren_t", spec.sandboxes[0]);
  EXPECT_EQ(del,
            "delete element inet warren_t dispatch { \"wabcdefn0\" }\n"
            "delete chain inet warren_t sbx_0\n"
            "delete set inet warren_t allow_0\n");
  std::string add1 = RenderAddSandbox("warren_t", spec.sandboxes[1]);
  EXPECT_EQ(add1.find("allow_1"), std::string::npos) << add1;
  EXPECT_EQ(RenderRemoveSandbox("warren_t", spec.sandboxes[1]),
            "delete element inet warren_t dispatch { \"wabcdefn1\" }\n"
            "delete chain inet warren_t sbx_1\n");
}

}  // namespace
}  // namespace warren::sandbox
