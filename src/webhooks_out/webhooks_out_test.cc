#include "webhooks_out/webhooks_out.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/testing/fake_http_server.h"
#include "store/memory_store.h"

namespace warren::webhooks_out {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;

const char kSecret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
auto NoEnv = [](const char*) -> const char* { return nullptr; };

TEST(StandardWebhooks, SignaturesMatchTheReferenceLibrary) {
  std::ifstream in(WARREN_WEBHOOK_VECTORS);
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  ASSERT_TRUE(j.ok());
  int n = 0;
  for (const Json& v : (*j)["vectors"]) {
    auto key = WebhookKey::Parse(v["key"].get<std::string>());
    ASSERT_TRUE(key.ok());
    WebhookHeaders h = SignWebhook(*key, v["id"].get<std::string>(), std::stoll(v["timestamp"].get<std::string>()),
                                   v["body"].get<std::string>());
    EXPECT_EQ(h.signature, v["signature"].get<std::string>()) << v.dump();
    n++;
  }
  EXPECT_GE(n, 2);
}

TEST(Rule, MapsSessionEventsToWebhookTypes) {
  EXPECT_EQ(WebhookTypesFor({{"type", "session.status_running"}}), std::vector<std::string>{"session.status_run_started"});
  EXPECT_EQ(WebhookTypesFor({{"type", "session.status_idle"}, {"stop_reason", {{"type", "end_turn"}}}}),
            std::vector<std::string>{"session.status_idled"});
  EXPECT_EQ(WebhookTypesFor({{"type", "session.status_idle"}, {"stop_reason", {{"type", "requires_action"}}}}),
            (std::vector<std::string>{"session.status_idled", "session.requires_action"}));
  EXPECT_TRUE(WebhookTypesFor({{"type", "agent.message"}}).empty());
  EXPECT_TRUE(WebhookTypesFor(Json("garbage")).empty());
}

TEST(Rule, OneMessagePerWantingEndpointWithStableIds) {
  auto cfg = WebhooksConfigFromJson(
      Json{{"endpoints",
            {{{"name", "all"}, {"url", "http://127.0.0.1:1/a"}, {"secret", kSecret}},
             {{"name", "idle-only"}, {"url", "http://127.0.0.1:1/b"}, {"secret", kSecret}, {"event_types", {"session.status_idled"}}}}}},
      NoEnv);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto rule = MakeOutboxRule(*cfg);
  Json running = {{"id", "sevt_1"}, {"type", "session.status_running"}, {"processed_at", "2026-12-02T00:00:00Z"}};
  auto a = rule("sesn_1", running);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].endpoint, "all");
  EXPECT_EQ(a[0].event_type, "session.status_run_started");
  auto body = ParseJson(a[0].payload);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ((*body)["type"], "event");
  EXPECT_EQ((*body)["id"], a[0].message_id);
  EXPECT_EQ((*body)["data"]["type"], "session.status_run_started");
  EXPECT_EQ((*body)["data"]["id"], "sesn_1");
  EXPECT_EQ(rule("sesn_1", running)[0].message_id, a[0].message_id);  // a retried transaction writes the same row
  Json idle = {{"id", "sevt_2"}, {"type", "session.status_idle"}, {"stop_reason", {{"type", "end_turn"}}}};
  auto b = rule("sesn_1", idle);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(b[0].message_id, b[1].message_id);  // one message, two endpoints
  EXPECT_NE(b[0].message_id, a[0].message_id);
}

TEST(Config, Errors) {
  for (const Json& bad : {Json{{"endpoints", {{{"url", "http://x/"}}}}},
                          Json{{"endpoints", {{{"url", "http://x/"}, {"secret", "nope"}}}}},
                          Json{{"endpoints", {{{"url", "ftp://x/"}, {"secret", kSecret}}}}},
                          Json{{"endpoints", {{{"url", "http://x/"}, {"secret", kSecret}, {"event_types", {"session.nope"}}}}}},
                          Json{{"endpoints", {{{"name", "a"}, {"url", "http://x/"}, {"secret", kSecret}},
                                              {{"name", "a"}, {"url", "http://y/"}, {"secret", kSecret}}}}},
                          Json{{"concurrency", 0}}, Json{{"max_backoff_ms", 10}, {"initial_backoff_ms", 1000}},
                          Json{{"bogus", 1}}}) {
    auto r = WebhooksConfigFromJson(bad, NoEnv);
    EXPECT_FALSE(r.ok()) << bad.dump();
    EXPECT_EQ(r.status().message().find("MfKQ9r8"), std::string::npos);
  }
}

TEST(Backoff, ExponentialCappedWithJitter) {
  WebhooksConfig c;
  c.initial_backoff_ms = 1000;
  c.max_backoff_ms = 10000;
  EXPECT_EQ(BackoffMs(c, 1, 1.0), 1000);
  EXPECT_EQ(BackoffMs(c, 2, 1.0), 2000);
  EXPECT_EQ(BackoffMs(c, 3, 1.0), 4000);
  EXPECT_EQ(BackoffMs(c, 3, 0.0), 2000);
  EXPECT_EQ(BackoffMs(c, 10, 1.0), 10000);
}

// A session writes events through the store with the rule installed; the
// dispatcher delivers them to a receiver that fails twice first.
TEST(Dispatcher, RetriesKeepTheIdAndSignEveryAttempt) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  std::mutex mu;
  std::vector<FakeRequest> got;
  int failures_left = 3;
  FakeHttpServer receiver([&](const FakeRequest& req, ResponseWriter& w) {
    std::lock_guard<std::mutex> lock(mu);
    got.push_back(req);
    FakeHttpServer::Reply(w, failures_left-- > 0 ? 503 : 204, "");
  });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url() + "/hook"}, {"secret", kSecret}}}},
                                         {"initial_backoff_ms", 1000}, {"max_backoff_ms", 60000}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetOutboxRule(MakeOutboxRule(*cfg));
  Json session = {{"id", "sesn_w"}, {"environment_id", "env_1"}, {"status", "idle"},
                  {"agent", {{"id", "agent_1"}, {"version", 1}}}, {"created_at", "2026-12-02T00:00:00Z"}};
  ASSERT_TRUE(store.CreateSession(session, {}, nullptr).ok());
  ASSERT_TRUE(store.AppendEvents("sesn_w", nullptr, {Json{{"id", "sevt_r"}, {"type", "session.status_running"}, {"processed_at", "2026-12-02T00:00:01Z"}}}, nullptr).ok());
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  EXPECT_EQ(d.RunOnce(), 2);  // session.created and status_run_started: both fail
  EXPECT_EQ(d.RunOnce(), 0);  // not due before the backoff
  clock.Advance(1000 * 1000);
  EXPECT_EQ(d.RunOnce(), 2);  // one fails (the third failure), one is delivered
  clock.Advance(2000 * 1000);
  EXPECT_EQ(d.RunOnce(), 1);
  EXPECT_EQ(d.RunOnce(), 0);
  auto delivered = store.ListDeliveries({"", "delivered", ""}, {});
  ASSERT_TRUE(delivered.ok());
  EXPECT_EQ(delivered->items.size(), 2u);
  auto key = WebhookKey::Parse(kSecret);
  std::map<std::string, int> attempts;
  for (const FakeRequest& r : got) {
    attempts[r.Header("webhook-id")]++;
    EXPECT_EQ(r.target, "/hook");
    EXPECT_EQ(r.Header("webhook-signature"),
              "v1," + WebhookSignature(*key, r.Header("webhook-id"), std::stoll(r.Header("webhook-timestamp")), r.body));
    auto body = ParseJson(r.body);
    ASSERT_TRUE(body.ok());
    EXPECT_EQ((*body)["id"], r.Header("webhook-id"));
  }
  ASSERT_EQ(attempts.size(), 2u);
  int total = 0;
  for (auto& [id, n] : attempts) total += n;
  EXPECT_EQ(total, 5);
  for (const Json& item : delivered->items) EXPECT_GE(item["attempts"].get<int>(), 2);
}

TEST(Dispatcher, GivesUpAfterMaxAttemptsAndLeasesClaimedRows) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  FakeHttpServer receiver([&](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 500, ""); });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret},
                                                         {"event_types", {"session.created"}}}}},
                                         {"max_attempts", 2}, {"initial_backoff_ms", 10}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetOutboxRule(MakeOutboxRule(*cfg));
  Json session = {{"id", "sesn_f"}, {"environment_id", "env_1"}, {"status", "idle"}, {"agent", {{"id", "agent_1"}, {"version", 1}}}};
  ASSERT_TRUE(store.CreateSession(session, {}, nullptr).ok());
  // A claim holds the row for its lease: nobody else gets it meanwhile.
  auto claimed = store.ClaimDeliveries(clock.NowMicros(), clock.NowMicros() + 5'000'000, 10);
  ASSERT_TRUE(claimed.ok());
  ASSERT_EQ(claimed->size(), 1u);
  EXPECT_TRUE(store.ClaimDeliveries(clock.NowMicros(), clock.NowMicros() + 5'000'000, 10)->empty());
  clock.Advance(5'000'000);  // the claimant died: due again after the lease
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 0.0; });
  EXPECT_EQ(d.RunOnce(), 1);
  clock.Advance(1'000'000);
  EXPECT_EQ(d.RunOnce(), 1);
  clock.Advance(100'000'000);
  EXPECT_EQ(d.RunOnce(), 0);
  auto failed = store.ListDeliveries({"r", "failed", ""}, {});
  ASSERT_TRUE(failed.ok());
  ASSERT_EQ(failed->items.size(), 1u);
  EXPECT_EQ(failed->items[0]["attempts"], 2);
  EXPECT_EQ(failed->items[0]["last_status"], 500);
}

}  // namespace
}  // namespace warren::webhooks_out
