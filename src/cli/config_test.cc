#include "cli/config.h"

#include <gtest/gtest.h>

#include <map>

#include "models/model_factory.h"

namespace warren::cli {
namespace {

TEST(ConfigTest, FileThenEnvironment) {
  ServeConfig c;
  ASSERT_TRUE(ApplyConfigJson(Json{{"listen", "0.0.0.0:9000"}, {"worker_threads", 8}}, &c).ok());
  EXPECT_EQ(c.listen, "0.0.0.0:9000");
  EXPECT_EQ(c.worker_threads, 8);
  std::map<std::string, std::string> env = {{"WARREN_LISTEN", "127.0.0.1:1"}, {"WARREN_MAX_BODY_BYTES", "4096"}};
  ASSERT_TRUE(ApplyEnvironment(&c, [&](const char* n) -> const char* {
                auto it = env.find(n);
                return it == env.end() ? nullptr : it->second.c_str();
              }).ok());
  EXPECT_EQ(c.listen, "127.0.0.1:1");
  EXPECT_EQ(c.max_body_bytes, 4096u);
}

TEST(ConfigTest, RejectsUnknownAndBadValues) {
  ServeConfig c;
  EXPECT_FALSE(ApplyConfigJson(Json{{"lisen", "x"}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"worker_threads", "8"}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"sqlite_synchronous", "OFF"}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json::array(), &c).ok());
  auto bad_env = [](const char* n) -> const char* { return std::string(n) == "WARREN_WORKER_THREADS" ? "many" : nullptr; };
  EXPECT_FALSE(ApplyEnvironment(&c, bad_env).ok());
}

// The bound on model calls in flight is per provider (inside "model"), set
// by file or WARREN_MODEL_MAX_CONCURRENT, and independent of engine_threads.
TEST(ConfigTest, ModelMaxConcurrentCallsFromFileAndEnvironment) {
  ServeConfig c;
  ASSERT_TRUE(ApplyConfigJson(Json{{"engine_threads", 2},
                                   {"model", {{"provider", "anthropic"}, {"max_concurrent_calls", 128}}}},
                              &c)
                  .ok());
  auto m = models::ModelConfigFromJson(c.model);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->max_concurrent_calls, 128);
  EXPECT_EQ(c.engine_threads, 2);
  std::map<std::string, std::string> env = {{"WARREN_MODEL_MAX_CONCURRENT", "300"},
                                            {"WARREN_ENGINE_PIN_MODEL_CALLS", "true"}};
  ASSERT_TRUE(ApplyEnvironment(&c, [&](const char* n) -> const char* {
                auto it = env.find(n);
                return it == env.end() ? nullptr : it->second.c_str();
              }).ok());
  m = models::ModelConfigFromJson(c.model);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->max_concurrent_calls, 300);
  EXPECT_EQ(m->provider, "anthropic");
  EXPECT_TRUE(c.engine_pin_model_calls.value_or(false));
  // Bad values are errors when the model config is read, naming the key.
  for (const char* bad : {"0", "-1", "many", "1e3", ""}) {
    ServeConfig d;
    d.model["max_concurrent_calls"] = bad;
    auto r = models::ModelConfigFromJson(d.model);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_NE(r.status().message().find("max_concurrent_calls"), std::string::npos);
    }
  }
  EXPECT_EQ(models::ModelConfigFromJson(Json::object())->max_concurrent_calls,
            models::ModelConfig::kDefaultMaxConcurrentCalls);
}

TEST(ConfigTest, MaxQueuedRequests) {
  ServeConfig c;
  EXPECT_EQ(c.max_queued_requests, 1024);
  ASSERT_TRUE(ApplyConfigJson(Json{{"max_queued_requests", 16}}, &c).ok());
  EXPECT_EQ(c.max_queued_requests, 16);
  auto env = [](const char* n) -> const char* { return std::string(n) == "WARREN_MAX_QUEUED_REQUESTS" ? "64" : nullptr; };
  ASSERT_TRUE(ApplyEnvironment(&c, env).ok());
  EXPECT_EQ(c.max_queued_requests, 64);
  EXPECT_FALSE(ApplyConfigJson(Json{{"max_queued_requests", "16"}}, &c).ok());
}

// The tool pool's bound per MCP server / web tool: file, environment, range.
TEST(ConfigTest, EngineToolThreadsPerServer) {
  ServeConfig c;
  EXPECT_EQ(c.engine_tool_threads_per_server, 8);
  ASSERT_TRUE(ApplyConfigJson(Json{{"engine_tool_threads_per_server", 3}}, &c).ok());
  EXPECT_EQ(c.engine_tool_threads_per_server, 3);
  auto env = [](const char* n) -> const char* {
    return std::string(n) == "WARREN_ENGINE_TOOL_THREADS_PER_SERVER" ? "5" : nullptr;
  };
  ASSERT_TRUE(ApplyEnvironment(&c, env).ok());
  EXPECT_EQ(c.engine_tool_threads_per_server, 5);
  for (int bad : {0, -1, 1025}) {
    ServeConfig d;
    Status st = ApplyConfigJson(Json{{"engine_tool_threads_per_server", bad}}, &d);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("engine_tool_threads_per_server"), std::string::npos) << st.ToString();
  }
  EXPECT_FALSE(ApplyConfigJson(Json{{"engine_tool_threads_per_server", "4"}}, &c).ok());
}

// The environment holder's TTL (docs/ORCHESTRATOR.md "Several orchestrators").
TEST(ConfigTest, OrchestratorHolderTtl) {
  ServeConfig c;
  EXPECT_EQ(c.orchestrator_holder_ttl_ms, 30000);
  ASSERT_TRUE(ApplyConfigJson(Json{{"orchestrator", {{"holder_ttl_ms", 2000}}}}, &c).ok());
  EXPECT_EQ(c.orchestrator_holder_ttl_ms, 2000);
  auto env = [](const char* n) -> const char* {
    return std::string(n) == "WARREN_ORCHESTRATOR_HOLDER_TTL_MS" ? "5000" : nullptr;
  };
  ASSERT_TRUE(ApplyEnvironment(&c, env).ok());
  EXPECT_EQ(c.orchestrator_holder_ttl_ms, 5000);
  for (int bad : {0, 999, 3600001}) {
    ServeConfig d;
    Status st = ApplyConfigJson(Json{{"orchestrator.holder_ttl_ms", bad}}, &d);
    EXPECT_FALSE(st.ok()) << bad;
    EXPECT_NE(st.message().find("orchestrator.holder_ttl_ms"), std::string::npos) << st.ToString();
  }
}

TEST(ConfigTest, SandboxKeysNestedFlatAndEnvironment) {
  ServeConfig c;
  EXPECT_FALSE(c.sandbox_enabled.has_value());
  ASSERT_TRUE(ApplyConfigJson(Json{{"sandbox", {{"enabled", false}, {"data_dir", "/srv/sb"}}},
                                   {"sandbox.pool_bytes", 1LL << 30}},
                              &c)
                  .ok());
  EXPECT_EQ(c.sandbox_enabled, std::optional<bool>(false));
  EXPECT_EQ(c.sandbox_data_dir, "/srv/sb");
  EXPECT_EQ(c.sandbox_pool_bytes, 1ULL << 30);
  auto env = [](const char* n) -> const char* {
    std::string k = n;
    if (k == "WARREN_SANDBOX_ENABLED") return "true";
    if (k == "WARREN_SANDBOX_CGROUP_PREFIX") return "warren-x";
    return nullptr;
  };
  ASSERT_TRUE(ApplyEnvironment(&c, env).ok());
  EXPECT_EQ(c.sandbox_enabled, std::optional<bool>(true));
  EXPECT_EQ(c.sandbox_cgroup_prefix, "warren-x");
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox", {{"enabled", "yes"}}}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox", {{"nope", 1}}}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox", 1}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox.cgroup_prefix", "a/b"}}, &c).ok());
}

// The package registries and npm pin: file (nested or flat) and
// environment; their values are checked at start by the orchestrator
// (packages_test.cc), not here.
TEST(ConfigTest, PackagesKeys) {
  ServeConfig c;
  EXPECT_EQ(c.orchestrator_packages_pip_index_url, "");
  ASSERT_TRUE(ApplyConfigJson(Json{{"orchestrator", {{"packages_pip_index_url", "http://pypi.lan:3141/simple/"}}},
                                   {"orchestrator.packages_npm_version", "10.9.2"}},
                              &c)
                  .ok());
  EXPECT_EQ(c.orchestrator_packages_pip_index_url, "http://pypi.lan:3141/simple/");
  EXPECT_EQ(c.orchestrator_packages_npm_version, "10.9.2");
  auto env = [](const char* n) -> const char* {
    return std::string(n) == "WARREN_ORCHESTRATOR_PACKAGES_NPM_INTEGRITY" ? "sha512-x" : nullptr;
  };
  ASSERT_TRUE(ApplyEnvironment(&c, env).ok());
  EXPECT_EQ(c.orchestrator_packages_npm_integrity, "sha512-x");
  EXPECT_FALSE(ApplyConfigJson(Json{{"orchestrator", {{"packages_pip_index_url", 1}}}}, &c).ok());
  // gem's source, go's proxy and GONOSUMDB, cargo's index.
  EXPECT_EQ(c.orchestrator_packages_gem_source, "");
  EXPECT_EQ(c.orchestrator_packages_go_proxy, "");
  ASSERT_TRUE(ApplyConfigJson(Json{{"orchestrator", {{"packages_gem_source", "http://gems.lan/"},
                                                     {"packages_go_proxy", "https://athens.lan"}}},
                                   {"orchestrator.packages_cargo_index", "https://git.lan/crates.git"}},
                              &c)
                  .ok());
  EXPECT_EQ(c.orchestrator_packages_gem_source, "http://gems.lan/");
  EXPECT_EQ(c.orchestrator_packages_go_proxy, "https://athens.lan");
  EXPECT_EQ(c.orchestrator_packages_cargo_index, "https://git.lan/crates.git");
  auto env2 = [](const char* n) -> const char* {
    return std::string(n) == "WARREN_ORCHESTRATOR_PACKAGES_GO_NOSUMDB" ? "corp.lan,*.corp.lan" : nullptr;
  };
  ASSERT_TRUE(ApplyEnvironment(&c, env2).ok());
  EXPECT_EQ(c.orchestrator_packages_go_nosumdb, "corp.lan,*.corp.lan");
  for (const char* k : {"packages_gem_source", "packages_go_proxy", "packages_go_nosumdb", "packages_cargo_index"}) {
    Status s = ApplyConfigJson(Json{{"orchestrator", {{k, Json::array()}}}}, &c);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << k;
    EXPECT_NE(s.message().find(k), std::string::npos) << s.message();
  }
}

TEST(ConfigTest, SandboxDataDirDefaultsUnderDataDirAndLongCallBounds) {
  ServeConfig c;
  EXPECT_EQ(c.sandbox_data_dir, "");  // "" = DATA_DIR/sandbox (serve)
  EXPECT_EQ(c.sandbox_long_call_threads, 32);
  ASSERT_TRUE(ApplyConfigJson(Json{{"sandbox", {{"long_call_threads", 8}, {"long_call_queue", 0}}}}, &c).ok());
  EXPECT_EQ(c.sandbox_long_call_threads, 8);
  EXPECT_EQ(c.sandbox_long_call_queue, 0);
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox", {{"long_call_threads", 0}}}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"sandbox", {{"long_call_threads", 5000}}}}, &c).ok());
}

// The web_tools and webhooks objects are kept whole for their modules
// (checked key by key at serve start); here only their shape is checked.
TEST(ConfigTest, WebToolsAndWebhooksObjects) {
  ServeConfig c;
  Json file = {{"web_tools", {{"search", {{"provider", "searxng"}, {"base_url", "http://s"}}}}},
               {"webhooks", {{"endpoints", Json::array()}}}};
  ASSERT_TRUE(ApplyConfigJson(file, &c).ok());
  EXPECT_EQ(c.web_tools["search"]["provider"], "searxng");
  EXPECT_TRUE(c.webhooks["endpoints"].is_array());
  EXPECT_FALSE(ApplyConfigJson(Json{{"web_tools", 5}}, &c).ok());
  EXPECT_FALSE(ApplyConfigJson(Json{{"webhooks", "whsec_x"}}, &c).ok());
}

}  // namespace
}  // namespace warren::cli
