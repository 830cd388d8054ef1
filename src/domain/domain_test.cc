#include <gtest/gtest.h>

#include "domain/pricing.h"
#include "domain/tool_policy.h"

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
