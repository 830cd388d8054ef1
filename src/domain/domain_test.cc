#include <gtest/gtest.h>

#include "domain/pricing.h"
#include "domain/tool_policy.h"
#include "domain/vault_secrets.h"

namespace warren::domain {
namespace {

Json Toolset(Json configs) { return Json::array({{{"type", "agent_toolset_20260401"}, {"configs", std::move(configs)}}}); }

TEST(ToolPolicy, ReadsTheResolvedToolset) {
  Json tools = Toolset(Json::array({{{"name", "bash"}, {"enabled", true}, {"permission_policy", {{"type", "always_ask"}}}},
                                    {{"name", "read"}, {"enabled", false}, {"permission_policy", {{"type", "always_allow"}}}}}));
  EXPECT_EQ(BuiltinToolPolicy(tools, "bash"), "always_ask");
  EXPECT_EQ(BuiltinToolPolicy(tools, "read"), std::nullopt);
  EXPECT_EQ(BuiltinToolPolicy(tools, "grep"), std::nullopt);
  EXPECT_TRUE(IsBuiltinTool("web_fetch"));
  EXPECT_FALSE(IsBuiltinTool("shell"));
}

TEST(ToolPolicy, McpToolsetDefaultsAndPerToolConfigs) {
  Json tools = Json::array({{{"type", "mcp_toolset"},
                             {"mcp_server_name", "gh"},
                             {"default_config", {{"enabled", true}, {"permission_policy", {{"type", "always_ask"}}}}},
                             {"configs", Json::array({{{"name", "read_issue"}, {"enabled", true}, {"permission_policy", {{"type", "always_allow"}}}},
                                                      {{"name", "delete_repo"}, {"enabled", false}, {"permission_policy", {{"type", "always_allow"}}}}})}},
                            {{"type", "mcp_toolset"}, {"mcp_server_name", "off"}, {"default_config", {{"enabled", false}}}}});
  EXPECT_EQ(McpToolPolicy(tools, "gh", "read_issue"), "always_allow");
  EXPECT_EQ(McpToolPolicy(tools, "gh", "create_issue"), "always_ask");  // the default
  EXPECT_EQ(McpToolPolicy(tools, "gh", "delete_repo"), std::nullopt);
  EXPECT_EQ(McpToolPolicy(tools, "off", "x"), std::nullopt);
  EXPECT_EQ(McpToolPolicy(tools, "unknown", "x"), std::nullopt);
  // A policy that cannot be read asks.
  Json bad = Json::array({{{"type", "mcp_toolset"}, {"mcp_server_name", "s"}, {"default_config", {{"permission_policy", 5}}}}});
  EXPECT_EQ(McpToolPolicy(bad, "s", "t"), "always_ask");
}

TEST(VaultSecrets, SealedPerCredentialAndRedacted) {
  auto box = SecretBox::FromHex(std::string(64, 'b'));
  ASSERT_TRUE(box.ok());
  CredentialSecrets s;
  s.access_token = "access-token-value";
  s.refresh_token = "refresh-token-value";
  auto sealed = SealCredentialSecrets(*box, "vcrd_a", s);
  ASSERT_TRUE(sealed.ok());
  EXPECT_EQ(sealed->find("access-token-value"), std::string::npos);
  EXPECT_EQ(OpenCredentialSecrets(*box, "vcrd_a", *sealed)->refresh_token, "refresh-token-value");
  // Bound to the credential id: a sealed value copied to another row does not open.
  EXPECT_FALSE(OpenCredentialSecrets(*box, "vcrd_b", *sealed).ok());
  EXPECT_EQ(Redact("got access-token-value and refresh-token-value!", s), "got [redacted] and [redacted]!");
}

// A token endpoint or MCP server may echo what it was sent: the request's
// form body (percent-encoded), a JSON string, a Basic credential.
TEST(VaultSecrets, RedactsTheEncodedFormsAServerMayEcho) {
  CredentialSecrets s;
  s.refresh_token = "rt/a+b=c d~*";
  s.client_secret = "short";
  s.token = "abc";  // under 4 bytes: left alone
  const std::string echoed =
      "form: refresh_token=rt%2Fa%2Bb%3Dc%20d~%2A& | lower: rt%2fa%2bb%3dc%20d~%2a | whatwg: rt%2Fa%2Bb%3Dc+d%7E* | "
      "json: {\"t\":\"rt/a+b=c d~*\"} escaped: rt\\/a+b=c d~* | raw: rt/a+b=c d~* | short abc";
  std::string out = Redact(echoed, s);
  EXPECT_EQ(out, "form: refresh_token=[redacted]& | lower: [redacted] | whatwg: [redacted] | "
                 "json: {\"t\":\"[redacted]\"} escaped: [redacted] | raw: [redacted] | [redacted] abc");
  EXPECT_EQ(RedactAll("Basic Y2lkOmNzZWNyZXQ= seen", {"Basic Y2lkOmNzZWNyZXQ="}), "[redacted] seen");
  EXPECT_EQ(RedactAll("nothing here", {}), "nothing here");
}

TEST(ToolPolicy, DamagedToolsFailClosed) {
  for (const Json& tools : {Json(), Json("x"), Json::array({1, nullptr}), Toolset(nullptr), Toolset(Json::array({1})),
                            Toolset(Json::array({{{"name", 7}, {"enabled", true}}}))}) {
    EXPECT_EQ(BuiltinToolPolicy(tools, "bash"), std::nullopt) << tools.dump();
  }
  // An entry for the tool whose fields cannot be read asks, never allows.
  for (const Json& tools : {Toolset(Json::array({{{"name", "bash"}, {"enabled", nullptr}}})),
                            Toolset(Json::array({{{"name", "bash"}, {"enabled", true}, {"permission_policy", 3}}}))}) {
    EXPECT_EQ(BuiltinToolPolicy(tools, "bash"), "always_ask") << tools.dump();
  }
}

TEST(Pricing, CostAndAmounts) {
  auto p = PriceFor("claude-sonnet-4-5");
  ASSERT_TRUE(p.has_value());
  EXPECT_EQ(CostMicros(*p, 1'000'000, 0, 0, 0), 3'000'000);
  EXPECT_FALSE(PriceFor("scripted").has_value());
  int64_t micros = 0;
  EXPECT_TRUE(ParseMonetaryAmount({{"amount", "150"}, {"currency", "USD"}}, &micros));
  EXPECT_EQ(micros, 1'500'000);
  EXPECT_EQ(MonetaryAmount(micros)["amount"], "150");
  EXPECT_FALSE(ParseMonetaryAmount({{"amount", 150}, {"currency", "USD"}}, &micros));
  EXPECT_FALSE(ParseMonetaryAmount({{"amount", "1"}, {"currency", nullptr}}, &micros));
}

}  // namespace
}  // namespace warren::domain
