// config.networking -> the session sandbox's network policy.
#include "orchestrator/networking.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace warren::orchestrator {
namespace {

Json Env(Json networking) {
  Json config = {{"type", "cloud"}, {"packages", {{"type", "packages"}}}};
  if (!networking.is_null()) config["networking"] = std::move(networking);
  return Json{{"id", "env_1"}, {"config", config}};
}

Json SessionWithMcp(std::vector<std::string> urls) {
  Json servers = Json::array();
  for (auto& u : urls) servers.push_back({{"type", "url"}, {"name", "m" + std::to_string(servers.size())}, {"url", u}});
  return Json{{"id", "sesn_1"}, {"agent", {{"mcp_servers", servers}}}};
}

bool Has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

TEST(NetworkingTest, UnrestrictedAndDefault) {
  auto u = NetworkForEnvironment(Env({{"type", "unrestricted"}}), Json::object());
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->network, "isolated");
  EXPECT_EQ(NetworkForEnvironment(Env(nullptr), Json::object())->network, "isolated");
  EXPECT_EQ(NetworkForEnvironment(Env({{"type", "unrestricted"}}), Json::object(), "none")->network, "none");
  // self_hosted (or anything not cloud): not decided here.
  EXPECT_EQ(NetworkForEnvironment(Json{{"config", {{"type", "self_hosted"}}}}, Json::object())->network, "");
  EXPECT_EQ(NetworkForEnvironment(Json{{"config", {{"type", 7}}}}, Json::object())->network, "");
}

TEST(NetworkingTest, LimitedHostsPackageManagersAndMcp) {
  Json n = {{"type", "limited"}, {"allowed_hosts", {"Allowed.Test", "*.example.com"}}, {"allow_package_managers", false},
            {"allow_mcp_servers", false}};
  auto l = NetworkForEnvironment(Env(n), SessionWithMcp({"https://mcp.example.org/sse"}));
  ASSERT_TRUE(l.ok()) << l.status().ToString();
  EXPECT_EQ(l->network, "limited");
  EXPECT_EQ(l->allow_hosts, (std::vector<std::string>{"allowed.test", "*.example.com"}));

  n["allow_package_managers"] = true;
  auto p = NetworkForEnvironment(Env(n), Json::object());
  ASSERT_TRUE(p.ok());
  for (const char* h : {"deb.debian.org", "security.debian.org", "pypi.org", "files.pythonhosted.org",
                        "registry.npmjs.org", "allowed.test"}) {
    EXPECT_TRUE(Has(p->allow_hosts, h)) << h;
  }
  EXPECT_FALSE(Has(p->allow_hosts, "mcp.example.org"));

  n["allow_mcp_servers"] = true;
  auto m = NetworkForEnvironment(
      Env(n), SessionWithMcp({"https://MCP.example.org:8443/sse", "http://user:pw@tools.test/mcp", "file:///etc/passwd",
                              "https://[::1]/x", "not a url", "https://198.51.100.9/mcp"}));
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_TRUE(Has(m->allow_hosts, "mcp.example.org"));
  EXPECT_TRUE(Has(m->allow_hosts, "tools.test"));
  EXPECT_TRUE(Has(m->allow_hosts, "198.51.100.9"));
  EXPECT_FALSE(Has(m->allow_hosts, "etc"));

  // limited with nothing allowed: a sandbox that reaches nothing.
  auto none = NetworkForEnvironment(Env({{"type", "limited"}}), Json::object());
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->network, "limited");
  EXPECT_TRUE(none->allow_hosts.empty());
}

TEST(NetworkingTest, UnenforceablePoliciesArePermanentFailures) {
  for (Json n : {Json{{"type", "limited"}, {"allowed_hosts", {"*"}}},
                 Json{{"type", "limited"}, {"allowed_hosts", {"https://a.test/x"}}},
                 Json{{"type", "limited"}, {"allowed_hosts", {1}}},
                 Json{{"type", "limited"}, {"allowed_hosts", "a.test"}}, Json{{"type", "sometimes"}}, Json("limited")}) {
    auto r = NetworkForEnvironment(Env(n), Json::object());
    EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << n.dump();
  }
  // Hostile sessions never throw.
  Json n = {{"type", "limited"}, {"allow_mcp_servers", true}};
  for (Json s : {Json(nullptr), Json{{"agent", 3}}, Json{{"agent", {{"mcp_servers", {1, "x", {{"url", 5}}}}}}}}) {
    EXPECT_TRUE(NetworkForEnvironment(Env(n), s).ok()) << s.dump();
  }
}

}  // namespace
}  // namespace warren::orchestrator
