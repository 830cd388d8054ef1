#include "webhooks_out/webhooks_out.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

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

TEST(Rule, ObjectChangesMakeThinEnvelopes) {
  auto cfg = WebhooksConfigFromJson(
      Json{{"endpoints",
            {{{"name", "all"}, {"url", "http://127.0.0.1:1/a"}, {"secret", kSecret}},
             {{"name", "vaults"}, {"url", "http://127.0.0.1:1/b"}, {"secret", kSecret},
              {"event_types", {"vault_credential.refresh_failed", "vault.created"}}}}},
           {"organization_id", "org_x"}, {"workspace_id", "wrkspc_y"}},
      NoEnv);
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  auto rule = MakeObjectOutboxRule(*cfg);
  auto agent = rule({"agent.created", "agent_1", "", "", "2026-12-02T00:00:00Z"});
  ASSERT_EQ(agent.size(), 1u);  // "vaults" does not want it
  EXPECT_EQ(agent[0].endpoint, "all");
  EXPECT_EQ(agent[0].object_id, "agent_1");
  EXPECT_EQ(agent[0].session_id, "");
  auto body = ParseJson(agent[0].payload);
  ASSERT_TRUE(body.ok());
  EXPECT_EQ(*body, (Json{{"type", "event"},
                         {"id", agent[0].message_id},
                         {"created_at", "2026-12-02T00:00:00Z"},
                         {"data", {{"type", "agent.created"}, {"id", "agent_1"}, {"organization_id", "org_x"},
                                   {"workspace_id", "wrkspc_y"}}}}));
  // A credential names its vault; each refresh failure is its own message.
  auto f1 = rule({"vault_credential.refresh_failed", "vcrd_1", "vlt_1", "chg_a", "2026-12-02T00:00:01Z"});
  auto f2 = rule({"vault_credential.refresh_failed", "vcrd_1", "vlt_1", "chg_b", "2026-12-02T00:00:02Z"});
  ASSERT_EQ(f1.size(), 2u);
  ASSERT_EQ(f2.size(), 2u);
  EXPECT_EQ(f1[0].message_id, f1[1].message_id);
  EXPECT_NE(f1[0].message_id, f2[0].message_id);
  EXPECT_EQ(ParseJson(f1[1].payload)->at("data")["vault_id"], "vlt_1");
  // The same change (a retried transaction) makes the same id.
  EXPECT_EQ(rule({"vault_credential.refresh_failed", "vcrd_1", "vlt_1", "chg_a", "x"})[0].message_id, f1[0].message_id);
  EXPECT_TRUE(rule({"memory_store.created", "memstore_1", "", "", ""}).empty());  // not a type Warren sends
  // Session archival comes as a pseudo event through the session rule.
  auto archived = MakeOutboxRule(*cfg)("sesn_1", {{"type", "session.archived"}, {"processed_at", "2026-12-02T00:00:03Z"}});
  ASSERT_EQ(archived.size(), 1u);
  EXPECT_EQ(archived[0].event_type, "session.archived");
}

TEST(Config, Errors) {
  for (const Json& bad : {Json{{"endpoints", {{{"url", "http://x/"}}}}},
                          Json{{"endpoints", {{{"url", "http://x/"}, {"secret", "nope"}}}}},
                          Json{{"endpoints", {{{"url", "ftp://x/"}, {"secret", kSecret}}}}},
                          Json{{"endpoints", {{{"url", "http://x/"}, {"secret", kSecret}, {"event_types", {"session.nope"}}}}}},
                          Json{{"endpoints", {{{"name", "a"}, {"url", "http://x/"}, {"secret", kSecret}},
                                              {{"name", "a"}, {"url", "http://y/"}, {"secret", kSecret}}}}},
                          Json{{"endpoints", {{{"name", "a/b"}, {"url", "http://x/"}, {"secret", kSecret}}}}},
                          Json{{"concurrency", 0}}, Json{{"max_backoff_ms", 10}, {"initial_backoff_ms", 1000}},
                          Json{{"disable_after_failures", -1}}, Json{{"retention_hours", "7d"}},
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

// An endpoint that fails `disable_after_failures` attempts in a row is
// disabled: its rows are held (not failed, even past max_attempts), new rows
// are not sent, and enabling it sends them all.
TEST(Dispatcher, AutoDisablesAFailingEndpointAndSendsItsHeldRowsAfterEnable) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  std::atomic<bool> up{false};
  std::mutex mu;
  std::map<std::string, int> accepted;
  int requests = 0;
  FakeHttpServer receiver([&](const FakeRequest& req, ResponseWriter& w) {
    std::lock_guard<std::mutex> lock(mu);
    requests++;
    if (up) accepted[req.Header("webhook-id")]++;
    FakeHttpServer::Reply(w, up ? 204 : 500, "");
  });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret}}}},
                                         {"max_attempts", 2}, {"initial_backoff_ms", 10}, {"max_backoff_ms", 10},
                                         {"disable_after_failures", 3}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetOutboxRule(MakeOutboxRule(*cfg));
  store.SetObjectOutboxRule(MakeObjectOutboxRule(*cfg));
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_1"}, {"version", 1}, {"archived_at", nullptr}}).ok());
  ASSERT_TRUE(store.CreateVault({{"id", "vlt_1"}, {"archived_at", nullptr}}).ok());
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  EXPECT_EQ(d.RunOnce(), 2);  // 2 consecutive failures
  clock.Advance(1'000'000);
  EXPECT_EQ(d.RunOnce(), 2);  // the third disables r; both rows are held, neither failed
  auto states = store.ListEndpointStates();
  ASSERT_TRUE(states.ok());
  ASSERT_EQ(states->size(), 1u);
  EXPECT_TRUE((*states)[0].disabled_at.has_value());
  EXPECT_EQ((*states)[0].consecutive_failures, 4);
  ASSERT_TRUE(store.CreateEnvironment({{"id", "env_1"}, {"name", "e"}, {"archived_at", nullptr}}).ok());
  clock.Advance(100'000'000);
  EXPECT_EQ(d.RunOnce(), 0);  // disabled: nothing is sent, however long we wait
  EXPECT_EQ(requests, 4);
  auto pending = store.ListDeliveries({"r", "pending", ""}, {});
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->items.size(), 3u);
  EXPECT_TRUE(store.ListDeliveries({"r", "failed", ""}, {})->items.empty());
  up = true;
  ASSERT_TRUE(store.EnableEndpoint("r", clock.NowMicros()).ok());
  EXPECT_EQ(d.RunOnce(), 3);
  EXPECT_EQ(store.ListDeliveries({"r", "delivered", ""}, {})->items.size(), 3u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(accepted.size(), 3u);
  for (auto& [id, n] : accepted) EXPECT_EQ(n, 1) << id;
}

TEST(Dispatcher, PrunesFinishedRowsAfterTheRetention) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  FakeHttpServer receiver([&](const FakeRequest&, ResponseWriter& w) { FakeHttpServer::Reply(w, 204, ""); });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret}}}},
                                         {"retention_hours", 2}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetObjectOutboxRule(MakeObjectOutboxRule(*cfg));
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_1"}, {"version", 1}, {"archived_at", nullptr}}).ok());
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  EXPECT_EQ(d.RunOnce(), 1);
  clock.Advance(3'600'000'000);  // 1 h: kept
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_2"}, {"version", 1}, {"archived_at", nullptr}}).ok());
  EXPECT_EQ(d.Prune(), 0);
  clock.Advance(3'600'000'001);  // the first row is past 2 h; the second is pending
  EXPECT_EQ(d.Prune(), 1);
  auto all = store.ListDeliveries({}, {});
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->items.size(), 1u);
  EXPECT_EQ(all->items[0]["object_id"], "agent_2");
  EXPECT_EQ(all->items[0]["state"], "pending");
}

// A commit that adds outbox rows wakes the dispatcher: with a one-minute
// fallback poll, the delivery still arrives at once.
TEST(Dispatcher, ACommitWakesTheDispatcher) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  std::mutex mu;
  std::condition_variable cv;
  int got = 0;
  FakeHttpServer receiver([&](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, 204, "");
    std::lock_guard<std::mutex> lock(mu);
    got++;
    cv.notify_all();
  });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret}}}},
                                         {"poll_interval_ms", 60000}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetObjectOutboxRule(MakeObjectOutboxRule(*cfg));
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  d.Start();
  // Let the claimer find nothing and go to sleep on its one-minute poll.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_1"}, {"version", 1}, {"archived_at", nullptr}}).ok());
  {
    std::unique_lock<std::mutex> lock(mu);
    // Far below the poll interval: only the wake-up can explain a delivery.
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return got == 1; }));
  }
  d.Stop();
  // After Stop the store no longer calls into the dispatcher.
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_2"}, {"version", 1}, {"archived_at", nullptr}}).ok());
}

// Spec 3.8: only a 2xx is a delivery; a 3xx is a failure and its Location
// is never followed (a receiver cannot redirect a signed body elsewhere).
TEST(Dispatcher, ARedirectIsAFailureAndIsNotFollowed) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  std::atomic<int> elsewhere_hits{0};
  FakeHttpServer elsewhere([&](const FakeRequest&, ResponseWriter& w) {
    elsewhere_hits++;
    FakeHttpServer::Reply(w, 204, "");
  });
  std::atomic<int> status{307};
  FakeHttpServer receiver([&](const FakeRequest&, ResponseWriter& w) {
    FakeHttpServer::Reply(w, status.load(), "", {{"Location", elsewhere.url() + "/stolen"}});
  });
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret}}}},
                                         {"initial_backoff_ms", 10}, {"max_backoff_ms", 10}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetObjectOutboxRule(MakeObjectOutboxRule(*cfg));
  ASSERT_TRUE(store.CreateAgent({{"id", "agent_1"}, {"version", 1}, {"archived_at", nullptr}}).ok());
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  for (int s : {301, 302, 307, 308}) {
    status = s;
    EXPECT_EQ(d.RunOnce(), 1) << s;
    clock.Advance(1'000'000);
  }
  EXPECT_EQ(elsewhere_hits.load(), 0);
  auto pending = store.ListDeliveries({"r", "pending", ""}, {});
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->items.size(), 1u);
  EXPECT_EQ(pending->items[0]["attempts"], 4);
  EXPECT_EQ(pending->items[0]["last_status"], 308);
  EXPECT_TRUE(store.ListDeliveries({"r", "delivered", ""}, {})->items.empty());
}

// Bounded concurrency: with `concurrency` 2 and a receiver that holds every
// request, exactly 2 are in flight at once, never more; released, all rows
// are delivered once.
TEST(Dispatcher, NoMoreThanConcurrencyDeliveriesInFlight) {
  FakeClock clock;
  store::MemoryStore store(&clock);
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  int in_flight = 0, max_in_flight = 0;
  std::map<std::string, int> accepted;
  FakeHttpServer receiver([&](const FakeRequest& req, ResponseWriter& w) {
    {
      std::unique_lock<std::mutex> lock(mu);
      in_flight++;
      max_in_flight = std::max(max_in_flight, in_flight);
      cv.notify_all();
      cv.wait(lock, [&] { return open; });
      in_flight--;
      accepted[req.Header("webhook-id")]++;
      cv.notify_all();
    }
    FakeHttpServer::Reply(w, 204, "");
  });
  // Opens the receiver before it is destroyed, whatever happens below.
  struct Opener {
    std::mutex& mu;
    std::condition_variable& cv;
    bool& open;
    ~Opener() {
      std::lock_guard<std::mutex> lock(mu);
      open = true;
      cv.notify_all();
    }
  } opener{mu, cv, open};
  auto cfg = WebhooksConfigFromJson(Json{{"endpoints", {{{"name", "r"}, {"url", receiver.url()}, {"secret", kSecret}}}},
                                         {"concurrency", 2}, {"timeout_ms", 60000}, {"poll_interval_ms", 50}},
                                    NoEnv);
  ASSERT_TRUE(cfg.ok());
  store.SetObjectOutboxRule(MakeObjectOutboxRule(*cfg));
  for (int i = 0; i < 6; i++)
    ASSERT_TRUE(store.CreateAgent({{"id", "agent_" + std::to_string(i)}, {"version", 1}, {"archived_at", nullptr}}).ok());
  auto http = NewCurlHttpClient();
  WebhookDispatcher d(&store, http.get(), &clock, *cfg, [] { return 1.0; });
  d.Start();
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return in_flight >= 2; }));
    // Give a third sender every chance to show up while two are held: the
    // claimer has room for nothing more (the rows wait in the store).
    EXPECT_FALSE(cv.wait_for(lock, std::chrono::milliseconds(300), [&] { return in_flight > 2; }));
    open = true;
    cv.notify_all();
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return accepted.size() == 6u; }));
  }
  auto delivered = [&] { return store.ListDeliveries({"r", "delivered", ""}, {})->items.size(); };
  for (int i = 0; i < 3000 && delivered() < 6u; i++) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  d.Stop();
  EXPECT_EQ(delivered(), 6u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(max_in_flight, 2);
  for (auto& [id, n] : accepted) EXPECT_EQ(n, 1) << id;
}

}  // namespace
}  // namespace warren::webhooks_out
