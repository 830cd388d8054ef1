// Work queue tests: the state machine, heartbeat compare-and-set, leases and
// reclaim, stop, stats, enqueue rules and the parked long-poll, driven through
// the real ApiService routes in process (no sockets) on a FakeClock.
#include "queue/work_queue.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "api/event_bus.h"
#include "api/service.h"
#include "common/ids.h"
#include "store/sqlite_store.h"

namespace warren::queue {
namespace {

constexpr int64_t kSec = 1'000'000;

struct Reply {
  int status = 0;
  Json json;
  std::shared_ptr<http::LongPoll> poll;
};

// Every transaction's mutator runs three times (two attempts discarded, as
// serialization retries would be): the store.h contract says mutators may be
// retried, so the code under test must give the same result.
store::SqliteOptions StoreOptions(const std::string& dir) {
  store::SqliteOptions o;
  o.path = dir + "/warren.db";
  o.synchronous = "NORMAL";
  o.abort_attempts = 2;
  return o;
}

class WorkQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/warren_queue_XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto s = store::SqliteStore::Open(StoreOptions(dir_), &clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
    auth_ = std::make_unique<api::Authenticator>(store_.get());
    service_ = std::make_unique<api::ApiService>(store_.get(), &bus_, auth_.get(), &clock_);
    queue_ = std::make_unique<WorkQueue>(store_.get(), auth_.get(), &clock_);
    queue_->RegisterRoutes(service_.get());
    service_->add_observer(queue_.get());
    api_key_ = *auth_->IssueApiKey();

    Json agent = Call("POST", "/v1/agents", {{"name", "a"}, {"model", "claude-sonnet-4-6"}}).json;
    agent_ = agent["id"];
    env_ = Call("POST", "/v1/environments", {{"name", "sh"}, {"config", {{"type", "self_hosted"}}}}).json["id"];
    env2_ = Call("POST", "/v1/environments", {{"name", "sh2"}, {"config", {{"type", "self_hosted"}}}}).json["id"];
    cloud_ = Call("POST", "/v1/environments", {{"name", "cl"}, {"config", {{"type", "cloud"}}}}).json["id"];
    ASSERT_FALSE(env_.empty());
    env_key_ = *auth_->IssueEnvironmentKey(env_);
    env2_key_ = *auth_->IssueEnvironmentKey(env2_);
  }
  void TearDown() override {
    queue_.reset();
    service_.reset();
    auth_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // One in-process request. `target` may carry a query string (not
  // percent-decoded: tests use plain values). `cred` empty = org API key.
  Reply Call(const std::string& method, const std::string& target, const Json& body = nullptr,
             const std::string& bearer = "", std::vector<std::pair<std::string, std::string>> headers = {}) {
    http::HttpRequest req;
    req.method = method;
    req.target = target;
    size_t q = target.find('?');
    req.path = target.substr(0, q);
    if (q != std::string::npos) {
      std::string qs = target.substr(q + 1);
      size_t i = 0;
      while (i <= qs.size()) {
        size_t amp = qs.find('&', i);
        if (amp == std::string::npos) amp = qs.size();
        std::string kv = qs.substr(i, amp - i);
        size_t eq = kv.find('=');
        if (!kv.empty()) req.query.emplace_back(kv.substr(0, eq), eq == std::string::npos ? "" : kv.substr(eq + 1));
        i = amp + 1;
      }
    }
    if (bearer.empty()) req.headers.Add("x-api-key", api_key_);
    else req.headers.Add("authorization", "Bearer " + bearer);
    for (auto& [k, v] : headers) req.headers.Add(k, v);
    if (!body.is_null()) req.body = DumpJson(body);
    req.request_id = NewId(idprefix::kRequest);
    http::HandlerResult hr = service_->Handle(req);
    Reply r;
    r.poll = hr.poll;
    r.status = hr.response.status;
    if (!hr.response.body.empty()) r.json = Json::parse(hr.response.body);
    return r;
  }

  std::string NewSession(const std::string& env) {
    Reply r = Call("POST", "/v1/sessions", {{"agent", agent_}, {"environment_id", env}});
    EXPECT_EQ(r.status, 200) << r.json.dump();
    return r.json["id"];
  }
  std::string W(const std::string& env = "") { return "/v1/environments/" + (env.empty() ? env_ : env) + "/work"; }
  Reply Poll(const std::string& query = "", const std::string& bearer = "") {
    return Call("GET", W() + "/poll" + (query.empty() ? "" : "?" + query), nullptr, bearer.empty() ? env_key_ : bearer);
  }
  Reply Ack(const std::string& id, const std::string& bearer = "") {
    return Call("POST", W() + "/" + id + "/ack", nullptr, bearer.empty() ? env_key_ : bearer);
  }
  Reply Beat(const std::string& id, const std::string& expected, const std::string& extra = "",
             const std::string& bearer = "") {
    return Call("POST", W() + "/" + id + "/heartbeat?expected_last_heartbeat=" + expected + extra, nullptr,
                bearer.empty() ? env_key_ : bearer);
  }
  Reply StopReq(const std::string& id, bool force, const std::string& bearer = "") {
    return Call("POST", W() + "/" + id + "/stop", Json{{"force", force}}, bearer.empty() ? env_key_ : bearer);
  }
  Reply Get(const std::string& id) { return Call("GET", W() + "/" + id); }
  Json Stats() { return Call("GET", W() + "/stats", nullptr, env_key_).json; }
  std::vector<Json> Items(const std::string& env = "") {
    Reply r = Call("GET", W(env) + "?limit=100");
    EXPECT_EQ(r.status, 200) << r.json.dump();
    return r.json["data"].get<std::vector<Json>>();
  }
  static std::string TokenOf(const Json& work) {
    std::string raw;
    EXPECT_TRUE(Base64UrlDecode(work["secret"].get<std::string>(), &raw));
    return Json::parse(raw)["sessions_token"];
  }
  void SendMessage(const std::string& sid) {
    Reply r = Call("POST", "/v1/sessions/" + sid + "/events",
                   {{"events", {{{"type", "user.message"}, {"content", {{{"type", "text"}, {"text", "hi"}}}}}}}});
    ASSERT_EQ(r.status, 200) << r.json.dump();
  }
  // Records an agent.tool_use as the engine would (no engine runs here).
  std::string AddToolUse(const std::string& sid, const char* perm = "allow") {
    Json ev = {{"type", "agent.tool_use"}, {"id", NewId(idprefix::kEvent)}, {"name", "bash"},
               {"input", {{"command", "true"}}}, {"evaluated_permission", perm}, {"processed_at", nullptr}};
    auto r = store_->AppendEvents(sid, nullptr, {ev}, nullptr);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return ev["id"];
  }
  Reply PostEvents(const std::string& sid, const Json& events, const std::string& bearer = "") {
    return Call("POST", "/v1/sessions/" + sid + "/events", {{"events", events}}, bearer.empty() ? env_key_ : bearer);
  }
  static Json ResultEv(const std::string& tool_use_id, const std::string& text, bool is_error = false) {
    return {{"type", "user.tool_result"}, {"tool_use_id", tool_use_id}, {"is_error", is_error},
            {"content", {{{"type", "text"}, {"text", text}}}}};
  }
  int CountEvents(const std::string& sid, const std::string& type) {
    Reply r = Call("GET", "/v1/sessions/" + sid + "/events?limit=1000");
    int n = 0;
    for (const Json& e : r.json["data"]) n += e["type"] == type;
    return n;
  }
  // Claims, acks and takes the lease of the next item; returns the item.
  Json Lease(std::string* last = nullptr) {
    Json w = Poll().json;
    EXPECT_TRUE(w.is_object()) << w.dump();
    EXPECT_EQ(Ack(w["id"]).status, 200);
    Reply hb = Beat(w["id"], "NO_HEARTBEAT");
    EXPECT_EQ(hb.status, 200) << hb.json.dump();
    if (last) *last = hb.json["last_heartbeat"];
    return w;
  }

  std::string dir_;
  FakeClock clock_;
  api::EventBus bus_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<api::Authenticator> auth_;
  std::unique_ptr<api::ApiService> service_;
  std::unique_ptr<WorkQueue> queue_;
  std::string api_key_, env_key_, env2_key_;
  std::string agent_, env_, env2_, cloud_;
};

TEST_F(WorkQueueTest, SessionCreateEnqueuesOnlyOnSelfHosted) {
  EXPECT_EQ(Stats()["depth"], 0);
  EXPECT_TRUE(Poll().json.is_null());
  std::string sid = NewSession(env_);
  NewSession(cloud_);
  Json s = Stats();
  EXPECT_EQ(s["type"], "work_queue_stats");
  EXPECT_EQ(s["depth"], 1);
  EXPECT_EQ(s["pending"], 0);
  EXPECT_EQ(s["oldest_queued_at"], FormatRfc3339(clock_.NowMicros()));
  auto items = Items();
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0]["type"], "work");
  EXPECT_EQ(items[0]["state"], "queued");
  EXPECT_EQ(items[0]["data"], (Json{{"type", "session"}, {"id", sid}}));
  EXPECT_EQ(items[0]["environment_id"], env_);
  EXPECT_TRUE(items[0]["secret"].is_null());
  for (const char* f : {"acknowledged_at", "started_at", "latest_heartbeat_at", "stop_requested_at", "stopped_at"})
    EXPECT_TRUE(items[0][f].is_null()) << f;
  // The cloud environment has no queue.
  EXPECT_EQ(Call("GET", W(cloud_) + "/poll").status, 400);
}

TEST_F(WorkQueueTest, PollDeliversWithSecretAndRedeliversAfterReclaim) {
  std::string sid = NewSession(env_);
  Reply first = Poll("", env_key_);
  ASSERT_EQ(first.status, 200);
  ASSERT_TRUE(first.json.is_object());
  EXPECT_EQ(first.json["state"], "queued");
  std::string secret = first.json["secret"];
  EXPECT_EQ(secret.find('='), std::string::npos) << "unpadded base64url";
  EXPECT_EQ(secret.find_first_of("+/"), std::string::npos);
  std::string token = TokenOf(first.json);
  EXPECT_FALSE(token.empty());
  // Pending: not visible again until reclaim_older_than_ms (default 5 s).
  EXPECT_TRUE(Poll().json.is_null());
  EXPECT_EQ(Stats()["depth"], 0);
  EXPECT_EQ(Stats()["pending"], 1);
  clock_.Advance(4 * kSec);
  EXPECT_TRUE(Poll().json.is_null());
  EXPECT_EQ(Poll("reclaim_older_than_ms=4000").json["id"], first.json["id"]);
  clock_.Advance(5 * kSec);
  Json again = Poll().json;
  ASSERT_TRUE(again.is_object());
  EXPECT_EQ(again["id"], first.json["id"]);
  EXPECT_NE(TokenOf(again), token) << "each delivery carries its own token";
  // The sessions token reads the session it is scoped to.
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, token).status, 200);
}

TEST_F(WorkQueueTest, PollValidation) {
  EXPECT_EQ(Poll("block_ms=0").status, 400);
  EXPECT_EQ(Poll("block_ms=1000").status, 400);
  EXPECT_EQ(Poll("block_ms=abc").status, 400);
  EXPECT_EQ(Poll("block_ms=").status, 400);
  EXPECT_EQ(Poll("reclaim_older_than_ms=0").status, 400);
  EXPECT_EQ(Poll("reclaim_older_than_ms=x").status, 400);
  Reply nf = Call("GET", "/v1/environments/env_nope/work/poll");
  EXPECT_EQ(nf.status, 404);
  EXPECT_EQ(nf.json["error"]["details"]["error_code"], "environment_not_found");
  // Another environment's key.
  EXPECT_EQ(Poll("", env2_key_).status, 403);
  // Org key may poll (ops tooling).
  EXPECT_EQ(Call("GET", W() + "/poll").status, 200);
  EXPECT_EQ(Poll("block_ms=999").status, 200);
}

// One orchestrator per environment (docs/ORCHESTRATOR.md, "Several
// orchestrators"): a poll carrying warren-orchestrator-id takes the
// environment; another id is refused with 409 while the holder is fresh,
// the same id always passes, and after the TTL the other one takes over. A
// poll without the header (the SDK's worker) is not checked.
TEST_F(WorkQueueTest, OneOrchestratorPerEnvironment) {
  auto poll_as = [&](const std::string& id, const std::string& host, const std::string& env = "") {
    const std::string e = env.empty() ? env_ : env;
    return Call("GET", W(e) + "/poll", nullptr, e == env_ ? env_key_ : env2_key_,
                {{"warren-orchestrator-id", id}, {"warren-orchestrator-host", host}});
  };
  std::string sid = NewSession(env_);
  Reply a = poll_as("orch_a", "host-a");
  ASSERT_EQ(a.status, 200) << a.json.dump();
  EXPECT_TRUE(a.json.is_object()) << "the holder's poll claims";
  clock_.Advance(3 * kSec);
  Reply b = poll_as("orch_b", "host-b");
  ASSERT_EQ(b.status, 409) << b.json.dump();
  EXPECT_EQ(b.json["type"], "error");
  EXPECT_EQ(b.json["error"]["type"], "invalid_request_error");
  EXPECT_EQ(b.json["error"]["details"]["error_code"], kEnvironmentHeldCode);
  const std::string msg = b.json["error"]["message"];
  EXPECT_NE(msg.find(env_), std::string::npos) << msg;
  EXPECT_NE(msg.find("orch_a"), std::string::npos) << msg;
  EXPECT_NE(msg.find("host-a"), std::string::npos) << msg;
  EXPECT_NE(msg.find("last seen 3.0 s ago"), std::string::npos) << msg;
  EXPECT_NE(msg.find("docs/ORCHESTRATOR.md"), std::string::npos) << msg;
  // The refused poll claimed nothing: the item is still pending for A.
  EXPECT_EQ(Stats()["pending"], 1);
  // Other environments are independent; a header-less poll is not checked.
  EXPECT_EQ(poll_as("orch_b", "host-b", env2_).status, 200);
  EXPECT_EQ(Poll().status, 200);
  // A keeps renewing (polls every few seconds): B stays refused past the
  // TTL counted from A's first poll.
  for (int i = 0; i < 6; ++i) {
    clock_.Advance(10 * kSec);
    ASSERT_EQ(poll_as("orch_a", "host-a").status, 200) << i;
    ASSERT_EQ(poll_as("orch_b", "host-b").status, 409) << i;
  }
  // A goes quiet: still refused at the TTL, taken over after it.
  clock_.Advance(30 * kSec);
  EXPECT_EQ(poll_as("orch_b", "host-b").status, 409);
  clock_.Advance(1000);  // 1 ms
  Reply took = poll_as("orch_b", "host-b");
  EXPECT_EQ(took.status, 200) << took.json.dump();
  // Now A is the one refused, with B named.
  Reply lost = poll_as("orch_a", "host-a");
  ASSERT_EQ(lost.status, 409);
  EXPECT_NE(lost.json["error"]["message"].get<std::string>().find("orch_b"), std::string::npos);
  // A malformed id is a 400, not a holder.
  EXPECT_EQ(poll_as("", "h").status, 400);
  EXPECT_EQ(poll_as("bad id", "h").status, 400);
  EXPECT_EQ(poll_as(std::string(129, 'a'), "h").status, 400);
  (void)sid;
}

// The renewal cache answers from memory only within a quarter TTL of the
// last write, so a renewal after a long pause goes to the store and sees a
// takeover made meanwhile (here: by another queue on the same store, as a
// second service replica would).
TEST_F(WorkQueueTest, HoldEnvironmentSeesTakeoverByAnotherReplica) {
  WorkQueue other(store_.get(), auth_.get(), &clock_);
  ASSERT_TRUE(queue_->HoldEnvironment(env_, "orch_a", "host-a").ok());
  clock_.Advance(5 * kSec);
  ASSERT_TRUE(queue_->HoldEnvironment(env_, "orch_a", "host-a").ok());  // answered from memory
  EXPECT_EQ(other.HoldEnvironment(env_, "orch_b", "host-b").code(), Code::kConflict);
  clock_.Advance(31 * kSec);
  ASSERT_TRUE(other.HoldEnvironment(env_, "orch_b", "host-b").ok());
  Status s = queue_->HoldEnvironment(env_, "orch_a", "host-a");
  EXPECT_EQ(s.code(), Code::kConflict) << s.ToString();
  EXPECT_EQ(s.detail_code(), kEnvironmentHeldCode);
}

TEST_F(WorkQueueTest, AckHeartbeatCompareAndSet) {
  NewSession(env_);
  Json w = Poll().json;
  std::string id = w["id"];
  Reply ack = Ack(id);
  ASSERT_EQ(ack.status, 200) << ack.json.dump();
  EXPECT_EQ(ack.json["state"], "starting");
  EXPECT_EQ(ack.json["acknowledged_at"], FormatRfc3339(clock_.NowMicros()));
  EXPECT_TRUE(ack.json["secret"].is_null());
  EXPECT_EQ(Stats()["pending"], 0);
  EXPECT_EQ(Stats()["depth"], 0);
  // Acked items are never delivered again.
  clock_.Advance(10 * kSec);
  EXPECT_TRUE(Poll().json.is_null());

  Reply hb = Beat(id, "NO_HEARTBEAT");
  ASSERT_EQ(hb.status, 200) << hb.json.dump();
  EXPECT_EQ(hb.json["type"], "work_heartbeat");
  EXPECT_EQ(hb.json["state"], "active");
  EXPECT_EQ(hb.json["lease_extended"], true);
  EXPECT_EQ(hb.json["ttl_seconds"], 90);
  std::string t1 = hb.json["last_heartbeat"];
  EXPECT_TRUE(ParseRfc3339(t1).has_value());
  Json got = Get(id).json;
  EXPECT_EQ(got["state"], "active");
  EXPECT_EQ(got["latest_heartbeat_at"], t1);
  EXPECT_FALSE(got["started_at"].is_null());

  // A second NO_HEARTBEAT is a competing claimant: 412 with the lease state.
  Reply stale = Beat(id, "NO_HEARTBEAT");
  EXPECT_EQ(stale.status, 412);
  EXPECT_EQ(stale.json["type"], "error");
  EXPECT_EQ(stale.json["error"]["type"], "invalid_request_error");
  EXPECT_TRUE(stale.json["error"]["message"].is_string());
  EXPECT_TRUE(stale.json["request_id"].is_string());
  const Json& d = stale.json["error"]["details"];
  EXPECT_EQ(d["error_code"], "heartbeat_precondition_failed");
  EXPECT_EQ(d["current_state"],
            (Json{{"state", "active"}, {"ttl_seconds", 90}, {"last_heartbeat", t1}, {"lease_extended", false}}));

  // Same clock instant: the next token still differs (strictly increasing).
  Reply hb2 = Beat(id, t1);
  ASSERT_EQ(hb2.status, 200);
  std::string t2 = hb2.json["last_heartbeat"];
  EXPECT_NE(t2, t1);
  EXPECT_EQ(Beat(id, t1).status, 412) << "the previous token is stale now";
  // Byte-exact: an equal instant spelled differently does not match.
  std::string respelled = t2.substr(0, t2.size() - 1) + "+00:00";
  EXPECT_EQ(Beat(id, respelled).status, 412);
  EXPECT_EQ(Beat(id, t2).status, 200);

  // Without expected_last_heartbeat (optional in the SDK) nothing is
  // compared: the held lease is renewed and the token moves on.
  Reply bare = Call("POST", W() + "/" + id + "/heartbeat", nullptr, env_key_);
  ASSERT_EQ(bare.status, 200) << bare.json.dump();
  EXPECT_EQ(bare.json["state"], "active");
  EXPECT_EQ(bare.json["lease_extended"], true);
  EXPECT_NE(bare.json["last_heartbeat"], t2);
  EXPECT_EQ(Beat(id, t2).status, 412);
  EXPECT_EQ(Beat(id, bare.json["last_heartbeat"]).status, 200);
  // Ack again is idempotent while the item is held; unknown item is 404.
  EXPECT_EQ(Ack(id).json["state"], "active");
  EXPECT_EQ(Ack("work_missing").status, 404);
}

TEST_F(WorkQueueTest, DesiredTtlIsClamped) {
  NewSession(env_);
  Json w = Poll().json;
  std::string id = w["id"];
  ASSERT_EQ(Ack(id).status, 200);
  Reply a = Beat(id, "NO_HEARTBEAT", "&desired_ttl_seconds=5");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(a.json["ttl_seconds"], 30);
  Reply b = Beat(id, a.json["last_heartbeat"], "&desired_ttl_seconds=100000");
  EXPECT_EQ(b.json["ttl_seconds"], 600);
  Reply c = Beat(id, b.json["last_heartbeat"], "&desired_ttl_seconds=120");
  EXPECT_EQ(c.json["ttl_seconds"], 120);
  // Omitted keeps the current TTL.
  Reply d = Beat(id, c.json["last_heartbeat"]);
  EXPECT_EQ(d.json["ttl_seconds"], 120);
  EXPECT_EQ(Beat(id, d.json["last_heartbeat"], "&desired_ttl_seconds=abc").status, 400);
  // The lease honours the TTL: alive at 119 s, expired after 120 s.
  clock_.Advance(119 * kSec);
  EXPECT_EQ(Get(id).json["state"], "active");
  clock_.Advance(2 * kSec);
  EXPECT_EQ(Get(id).json["state"], "queued");
}

TEST_F(WorkQueueTest, LeaseExpiryRequeuesAndOldHolderGets412) {
  NewSession(env_);
  std::string t1;
  Json w = Lease(&t1);
  std::string id = w["id"];
  clock_.Advance(89 * kSec);
  Reply ok = Beat(id, t1);
  ASSERT_EQ(ok.status, 200);
  std::string t2 = ok.json["last_heartbeat"];
  clock_.Advance(91 * kSec);  // no beat within the TTL
  Json got = Get(id).json;
  EXPECT_EQ(got["state"], "queued");
  EXPECT_TRUE(got["acknowledged_at"].is_null());
  EXPECT_TRUE(got["latest_heartbeat_at"].is_null());
  EXPECT_EQ(Stats()["depth"], 1);
  // The old holder learns it lost the lease.
  Reply lost = Beat(id, t2);
  EXPECT_EQ(lost.status, 412);
  EXPECT_EQ(lost.json["error"]["details"]["current_state"]["state"], "queued");
  EXPECT_TRUE(lost.json["error"]["details"]["current_state"]["last_heartbeat"].is_null());
  // The next claimant gets it and its NO_HEARTBEAT matches.
  Json again = Poll().json;
  ASSERT_EQ(again["id"], id);
  ASSERT_EQ(Ack(id).json["state"], "starting");
  Reply hb = Beat(id, "NO_HEARTBEAT", "", TokenOf(again));
  EXPECT_EQ(hb.status, 200) << hb.json.dump();
  EXPECT_EQ(hb.json["state"], "active");
  EXPECT_EQ(Beat(id, t2).status, 412);
}

// A sessions token dies with its holder's lease: after lease expiry the old
// holder cannot read or post to the session, the new claimant's token works,
// and stopping the item revokes that one too.
TEST_F(WorkQueueTest, SessionsTokenRevokedOnLeaseLossAndStop) {
  std::string sid = NewSession(env_);
  Json w = Poll().json;
  std::string id = w["id"], old_token = TokenOf(w);
  ASSERT_EQ(Ack(id).status, 200);
  ASSERT_EQ(Beat(id, "NO_HEARTBEAT").status, 200);
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, old_token).status, 200);
  clock_.Advance(91 * kSec);
  ASSERT_EQ(Get(id).json["state"], "queued");
  Reply denied = Call("GET", "/v1/sessions/" + sid, nullptr, old_token);
  EXPECT_EQ(denied.status, 401) << denied.json.dump();
  EXPECT_EQ(denied.json["error"]["type"], "authentication_error");

  Json again = Poll().json;
  ASSERT_EQ(again["id"], id);
  std::string new_token = TokenOf(again);
  ASSERT_NE(new_token, old_token);
  ASSERT_EQ(Ack(id).status, 200);
  ASSERT_EQ(Beat(id, "NO_HEARTBEAT", "", new_token).status, 200);
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, new_token).status, 200);
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, old_token).status, 401);
  ASSERT_EQ(StopReq(id, true).json["state"], "stopped");
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, new_token).status, 401);
  // The environment key is untouched.
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, env_key_).status, 200);
}

TEST_F(WorkQueueTest, ReissueGivesAHeldItemFreshCredentials) {
  std::string sid = NewSession(env_);
  Json w = Poll().json;
  std::string id = w["id"];
  // Not held yet (queued): refused.
  EXPECT_EQ(queue_->Reissue(env_, id).status().code(), Code::kFailedPrecondition);
  ASSERT_EQ(Ack(id).status, 200);
  Reply beat = Beat(id, "NO_HEARTBEAT");
  ASSERT_EQ(beat.status, 200);
  auto again = queue_->Reissue(env_, id);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  std::string token = TokenOf(*again);
  ASSERT_FALSE(token.empty());
  // The fresh token serves the item: the session, and the lease (compare-
  // and-set on the stored heartbeat, as a resumed runner does).
  EXPECT_EQ(Call("GET", "/v1/sessions/" + sid, nullptr, token).status, 200);
  EXPECT_EQ(Beat(id, beat.json["last_heartbeat"].get<std::string>(), "", token).status, 200);
  EXPECT_EQ(queue_->Reissue("env_other", id).status().code(), Code::kNotFound);
  ASSERT_EQ(StopReq(id, true).json["state"], "stopped");
  EXPECT_EQ(queue_->Reissue(env_, id).status().code(), Code::kFailedPrecondition);
}

TEST_F(WorkQueueTest, AckedButNeverHeartbeatExpiresAfterTtl) {
  NewSession(env_);
  Json w = Poll().json;
  ASSERT_EQ(Ack(w["id"]).status, 200);
  clock_.Advance(90 * kSec);
  EXPECT_EQ(Get(w["id"]).json["state"], "starting");
  clock_.Advance(1);
  EXPECT_EQ(Get(w["id"]).json["state"], "queued");
  EXPECT_EQ(Poll().json["id"], w["id"]);
}

TEST_F(WorkQueueTest, GracefulStopReachesHolderThenConfirm) {
  NewSession(env_);
  std::string t1;
  Json w = Lease(&t1);
  std::string id = w["id"];
  Reply s = Call("POST", W() + "/" + id + "/stop", Json::object());  // ops, org key, default = graceful
  ASSERT_EQ(s.status, 200) << s.json.dump();
  EXPECT_EQ(s.json["state"], "stopping");
  EXPECT_FALSE(s.json["stop_requested_at"].is_null());
  EXPECT_TRUE(s.json["stopped_at"].is_null());
  // The holder's next heartbeat (any expected value) reports stopping.
  Reply hb = Beat(id, "whatever");
  ASSERT_EQ(hb.status, 200) << hb.json.dump();
  EXPECT_EQ(hb.json["state"], "stopping");
  EXPECT_EQ(hb.json["lease_extended"], true);
  // The worker confirms with its own token.
  Reply c = StopReq(id, false, TokenOf(w));
  ASSERT_EQ(c.status, 200) << c.json.dump();
  EXPECT_EQ(c.json["state"], "stopped");
  EXPECT_FALSE(c.json["stopped_at"].is_null());
  EXPECT_EQ(StopReq(id, true).status, 409);
  EXPECT_EQ(StopReq(id, false).status, 409);
  // Heartbeats on a stopped item say so without extending anything.
  Reply after = Beat(id, "NO_HEARTBEAT");
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(after.json["state"], "stopped");
  EXPECT_EQ(after.json["lease_extended"], false);
  EXPECT_EQ(Ack(id).status, 409);
}

TEST_F(WorkQueueTest, ForceStopAndStoppingTimesOut) {
  std::string s1 = NewSession(env_);
  Json a = Lease();
  Reply f = StopReq(a["id"], true);
  EXPECT_EQ(f.json["state"], "stopped");
  EXPECT_EQ(f.json["stopped_at"], FormatRfc3339(clock_.NowMicros()));
  EXPECT_EQ(StopReq(a["id"], true).status, 409);

  std::string s2 = NewSession(env_);
  Json b = Lease();
  ASSERT_EQ(b["data"]["id"], s2);
  EXPECT_EQ(StopReq(b["id"], false).json["state"], "stopping");
  clock_.Advance(90 * kSec);
  EXPECT_EQ(Get(b["id"]).json["state"], "stopping");
  clock_.Advance(1);
  EXPECT_EQ(Get(b["id"]).json["state"], "stopped");

  // A queued item nobody holds stops at once even when graceful.
  NewSession(env_);
  Json q = Items().front();
  ASSERT_EQ(q["state"], "queued");
  EXPECT_EQ(StopReq(q["id"], false).json["state"], "stopped");
  EXPECT_TRUE(Poll().json.is_null());
  EXPECT_EQ(Call("POST", W() + "/" + std::string(q["id"]) + "/stop", Json{{"force", "yes"}}).status, 400);
}

TEST_F(WorkQueueTest, EnqueueRulesOneLiveItemPerSession) {
  std::string sid = NewSession(env_);
  SendMessage(sid);  // item still queued: nothing new
  EXPECT_EQ(Items().size(), 1u);
  Json w = Lease();
  SendMessage(sid);  // active: nothing new
  EXPECT_EQ(Items().size(), 1u);
  ASSERT_TRUE(queue_->EnsureWork(sid).ok());
  EXPECT_EQ(Items().size(), 1u);
  // Stopping is still live (issue 13): its holder works until its next
  // heartbeat, so a second runner must not be handed the session.
  EXPECT_EQ(StopReq(w["id"], false).json["state"], "stopping");
  SendMessage(sid);
  ASSERT_TRUE(queue_->EnsureWork(sid).ok());
  EXPECT_EQ(Items().size(), 1u);
  // Once it is stopped, the next user event gets a fresh item.
  ASSERT_EQ(StopReq(w["id"], false).json["state"], "stopped");
  SendMessage(sid);
  auto items = Items();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["state"], "queued");  // newest first
  EXPECT_NE(items[0]["id"], w["id"]);
  // After that one stops too, user.interrupt enqueues again.
  ASSERT_EQ(StopReq(items[0]["id"], true).status, 200);
  Reply r = Call("POST", "/v1/sessions/" + sid + "/events", {{"events", {{{"type", "user.interrupt"}}}}});
  ASSERT_EQ(r.status, 200) << r.json.dump();
  EXPECT_EQ(Items().size(), 3u);
  EXPECT_EQ(Items()[0]["state"], "queued");
  // EnsureWork is a no-op on cloud sessions and an error for unknown ones.
  std::string cs = NewSession(cloud_);
  EXPECT_TRUE(queue_->EnsureWork(cs).ok());
  EXPECT_EQ(queue_->EnsureWork("sesn_missing").code(), Code::kNotFound);
  // Another session of the same environment has its own item.
  NewSession(env_);
  EXPECT_EQ(Items().size(), 4u);
}

TEST_F(WorkQueueTest, SessionDeleteForceStopsItsItems) {
  std::string sid = NewSession(env_);
  Json w = Lease();
  ASSERT_EQ(StopReq(w["id"], false).json["state"], "stopping");
  SendMessage(sid);  // stopping is live: no second item
  ASSERT_EQ(Items().size(), 1u);
  Reply del = Call("DELETE", "/v1/sessions/" + sid);
  ASSERT_EQ(del.status, 200) << del.json.dump();
  for (const Json& it : Items()) {
    EXPECT_EQ(it["state"], "stopped");
    EXPECT_FALSE(it["stopped_at"].is_null());
  }
  EXPECT_TRUE(Poll().json.is_null());
}

TEST_F(WorkQueueTest, CredentialsPerEndpoint) {
  NewSession(env_);
  NewSession(env_);
  Json a = Poll().json;
  Json b = Poll().json;
  ASSERT_TRUE(a.is_object() && b.is_object());
  std::string ta = TokenOf(a), tb = TokenOf(b);
  std::string ida = a["id"], idb = b["id"];
  // The item's own token serves ack / heartbeat / stop.
  EXPECT_EQ(Ack(ida, ta).status, 200);
  EXPECT_EQ(Beat(ida, "NO_HEARTBEAT", "", ta).status, 200);
  // Another item's token is refused.
  EXPECT_EQ(Ack(ida, tb).status, 403);
  EXPECT_EQ(Beat(ida, "NO_HEARTBEAT", "", tb).status, 403);
  EXPECT_EQ(StopReq(ida, true, tb).status, 403);
  // Tokens cannot poll, list or read stats.
  EXPECT_EQ(Poll("", ta).status, 403);
  EXPECT_EQ(Call("GET", W(), nullptr, ta).status, 403);
  EXPECT_EQ(Call("GET", W() + "/stats", nullptr, ta).status, 403);
  // Retrieve and update take only the org key (spec 3.2, 9).
  EXPECT_EQ(Call("GET", W() + "/" + ida, nullptr, env_key_).status, 403);
  EXPECT_EQ(Call("GET", W() + "/" + ida, nullptr, ta).status, 403);
  Reply org = Call("GET", W() + "/" + ida);
  EXPECT_EQ(org.status, 200);
  EXPECT_TRUE(org.json["secret"].is_null());
  EXPECT_EQ(Call("POST", W() + "/" + ida, {{"metadata", {{"k", "v"}}}}, env_key_).status, 403);
  // Env key of another environment, and items looked up through the wrong
  // environment.
  EXPECT_EQ(Call("POST", W() + "/" + ida + "/ack", nullptr, env2_key_).status, 403);
  EXPECT_EQ(Call("GET", W(env2_) + "/" + ida).status, 404);
  EXPECT_EQ(Call("POST", W(env2_) + "/" + idb + "/ack", nullptr, env2_key_).status, 404);
  // Env key and org key both stop.
  EXPECT_EQ(StopReq(idb, true, env_key_).status, 200);
  EXPECT_EQ(Call("POST", W() + "/" + ida + "/stop", Json{{"force", true}}).status, 200);
}

TEST_F(WorkQueueTest, MetadataPatchAndList) {
  NewSession(env_);
  NewSession(env_);
  NewSession(env_);
  std::string id = Items()[0]["id"];
  Reply u = Call("POST", W() + "/" + id, {{"metadata", {{"a", "1"}, {"b", "2"}}}});
  ASSERT_EQ(u.status, 200) << u.json.dump();
  EXPECT_EQ(u.json["metadata"], (Json{{"a", "1"}, {"b", "2"}}));
  u = Call("POST", W() + "/" + id, {{"metadata", {{"a", nullptr}}}});
  EXPECT_EQ(u.json["metadata"], (Json{{"b", "2"}}));
  Reply bad = Call("POST", W() + "/" + id, {{"metadata", {{"a", 5}}}});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.json["error"]["details"]["error_code"], "invalid_metadata");
  EXPECT_EQ(Call("POST", W() + "/" + id, Json{{"other", 1}}).status, 400);
  // Paging.
  Reply p1 = Call("GET", W() + "?limit=2", nullptr, env_key_);
  ASSERT_EQ(p1.status, 200);
  EXPECT_EQ(p1.json["data"].size(), 2u);
  ASSERT_TRUE(p1.json["next_page"].is_string());
  Reply p2 = Call("GET", W() + "?limit=2&page=" + p1.json["next_page"].get<std::string>(), nullptr, env_key_);
  EXPECT_EQ(p2.json["data"].size(), 1u);
  EXPECT_TRUE(p2.json["next_page"].is_null());
  EXPECT_TRUE(Items(env2_).empty());
}

TEST_F(WorkQueueTest, StatsCountsWorkersInWindow) {
  EXPECT_EQ(Stats()["workers_polling"], 0);
  EXPECT_TRUE(Stats()["oldest_queued_at"].is_null());
  Call("GET", W() + "/poll", nullptr, env_key_, {{"Anthropic-Worker-ID", "w1"}});
  Call("GET", W() + "/poll", nullptr, env_key_, {{"Anthropic-Worker-ID", "w1"}});
  clock_.Advance(10 * kSec);
  Call("GET", W() + "/poll", nullptr, env_key_, {{"Anthropic-Worker-ID", "w2"}});
  Call("GET", W(env2_) + "/poll", nullptr, env2_key_, {{"Anthropic-Worker-ID", "w3"}});
  EXPECT_EQ(Stats()["workers_polling"], 2);
  clock_.Advance(21 * kSec);  // w1 last polled 31 s ago
  EXPECT_EQ(Stats()["workers_polling"], 1);
  clock_.Advance(10 * kSec);
  EXPECT_EQ(Stats()["workers_polling"], 0);
  // Org key may read stats; oldest_queued_at spans queued and pending.
  int64_t t0 = clock_.NowMicros();
  NewSession(env_);
  clock_.Advance(kSec);
  NewSession(env_);
  ASSERT_TRUE(Poll().json.is_object());
  Json s = Call("GET", W() + "/stats").json;
  EXPECT_EQ(s["depth"], 1);
  EXPECT_EQ(s["pending"], 1);
  EXPECT_EQ(s["oldest_queued_at"], FormatRfc3339(t0));
}

TEST_F(WorkQueueTest, LongPollParksAndWakesOnEnqueue) {
  Reply r = Poll("block_ms=999");
  ASSERT_EQ(r.status, 200);
  ASSERT_TRUE(r.poll) << "block_ms makes a parked long-poll";
  EXPECT_EQ(r.poll->Timeout(), std::chrono::milliseconds(999));
  std::atomic<int> wakes{0};
  r.poll->SetWaker([&] { wakes++; });
  EXPECT_EQ(queue_->waiters(env_), 1u);
  EXPECT_FALSE(r.poll->TryComplete(false).has_value());
  NewSession(env2_);  // another environment: no wake
  EXPECT_EQ(wakes.load(), 0);
  std::string sid = NewSession(env_);
  EXPECT_GE(wakes.load(), 1);
  auto done = r.poll->TryComplete(false);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(done->status, 200);
  Json w = Json::parse(done->body);
  EXPECT_EQ(w["data"]["id"], sid);
  EXPECT_TRUE(w["secret"].is_string());
  r.poll->OnClose();
  EXPECT_EQ(queue_->waiters(env_), 0u);

  // An empty queue at the deadline answers 200 null.
  Reply e = Poll("block_ms=5");
  ASSERT_TRUE(e.poll);
  e.poll->SetWaker([] {});
  EXPECT_FALSE(e.poll->TryComplete(false).has_value());
  auto end = e.poll->TryComplete(true);
  ASSERT_TRUE(end.has_value());
  EXPECT_EQ(end->status, 200);
  EXPECT_EQ(end->body, "null");
  e.poll.reset();  // destruction unregisters too
  EXPECT_EQ(queue_->waiters(env_), 0u);
}

TEST_F(WorkQueueTest, SweepWakesPollersWhenLeaseExpires) {
  NewSession(env_);
  Json w = Lease();
  Reply r = Poll("block_ms=999");
  ASSERT_TRUE(r.poll);
  std::atomic<int> wakes{0};
  r.poll->SetWaker([&] { wakes++; });
  EXPECT_FALSE(r.poll->TryComplete(false).has_value());
  clock_.Advance(91 * kSec);
  auto n = queue_->Sweep();
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1);
  EXPECT_EQ(wakes.load(), 1);
  auto done = r.poll->TryComplete(false);
  ASSERT_TRUE(done.has_value());
  EXPECT_EQ(Json::parse(done->body)["id"], w["id"]);
  EXPECT_EQ(*queue_->Sweep(), 0);
}

TEST_F(WorkQueueTest, BackgroundSweeperRuns) {
  WorkQueueOptions o;
  o.sweep_interval = std::chrono::milliseconds(5);
  WorkQueue q(store_.get(), auth_.get(), &clock_, o);
  NewSession(env_);
  Json w = Lease();
  std::atomic<int> wakes{0};
  q.AddWaiter(env_, &wakes, [&] { wakes++; });
  q.Start();
  clock_.Advance(91 * kSec);
  for (int i = 0; i < 12000 && wakes.load() == 0; i++) usleep(5000);  // up to 60 s
  q.Stop();
  EXPECT_EQ(wakes.load(), 1);
  EXPECT_EQ((*store_->GetWork(w["id"])).state, "queued");
  q.RemoveWaiter(env_, &wakes);
}

TEST_F(WorkQueueTest, ObserverEnqueuesOnlyForEventsThatNeedAWorker) {
  std::string sid = NewSession(env_);
  Json session = *store_->GetSession(sid);
  auto stop_all = [&] {
    for (const Json& it : Items()) {
      if (it["state"] != "stopped") {
        ASSERT_EQ(StopReq(it["id"], true).status, 200);
      }
    }
  };
  auto events = [](std::initializer_list<const char*> types) {
    std::vector<store::StoredEvent> v;
    for (const char* t : types) v.push_back(store::StoredEvent{0, Json{{"type", t}, {"id", NewId(idprefix::kEvent)}}});
    return v;
  };
  size_t n = Items().size();
  for (const char* t : {"user.tool_result", "user.define_outcome", "system.message"}) {
    stop_all();
    queue_->OnClientEvents(session, events({t}));
    EXPECT_EQ(Items().size(), n) << t << " must not enqueue";
  }
  for (const char* t : {"user.message", "user.interrupt", "user.tool_confirmation", "user.custom_tool_result"}) {
    stop_all();
    queue_->OnClientEvents(session, events({"user.tool_result", t}));
    EXPECT_EQ(Items().size(), ++n) << t << " must enqueue";
    // Twice in a row: still one live item.
    queue_->OnClientEvents(session, events({t}));
    EXPECT_EQ(Items().size(), n) << t;
  }
}

TEST_F(WorkQueueTest, ConcurrentClaimsDeliverEachItemOnce) {
  constexpr int kItems = 40;
  for (int i = 0; i < kItems; i++) NewSession(env_);
  std::mutex mu;
  std::map<std::string, int> seen;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++) {
    threads.emplace_back([&] {
      for (;;) {
        auto r = queue_->Claim(env_, 5000);
        ASSERT_TRUE(r.ok()) << r.status().ToString();
        if (!*r) return;
        std::lock_guard<std::mutex> lock(mu);
        seen[(**r)["id"].get<std::string>()]++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(seen.size(), static_cast<size_t>(kItems));
  for (const auto& [id, count] : seen) EXPECT_EQ(count, 1) << id;
  EXPECT_EQ(Stats()["pending"], kItems);
}

TEST_F(WorkQueueTest, StoreEnforcesOneLiveItemPerSession) {
  std::string sid = NewSession(env_);
  store::WorkRecord dup;
  dup.id = NewId(idprefix::kWork);
  dup.environment_id = env_;
  dup.session_id = sid;
  dup.state = "queued";
  dup.body = Json::object();
  EXPECT_EQ(store_->CreateWork(dup).code(), Code::kConflict);
  EXPECT_GE(store_->schema_version(), 4);  // 4 = stopping is live, answers indexed
  auto live = store_->UnstoppedWorkForSession(sid);
  ASSERT_TRUE(live.ok());
  ASSERT_EQ(live->size(), 1u);
  EXPECT_EQ((*live)[0].deliveries, 0);
  ASSERT_TRUE(Poll().json.is_object());
  EXPECT_EQ((*store_->GetWork((*live)[0].id)).deliveries, 1);
}

// ---------------------------------------------------------- issue 13

// Defect 1: a repeated result for one call is an idempotent success when
// identical (the recorded event comes back, nothing is appended) and a 409
// when it differs.
TEST_F(WorkQueueTest, AToolCallIsAnsweredOnce) {
  std::string sid = NewSession(env_);
  std::string call = AddToolUse(sid);
  Reply first = PostEvents(sid, Json::array({ResultEv(call, "out")}));
  ASSERT_EQ(first.status, 200) << first.json.dump();
  std::string rid = first.json["data"][0]["id"];
  Reply again = PostEvents(sid, Json::array({ResultEv(call, "out")}));
  ASSERT_EQ(again.status, 200) << again.json.dump();
  EXPECT_EQ(again.json["data"][0]["id"], rid);
  Reply other = PostEvents(sid, Json::array({ResultEv(call, "different")}));
  ASSERT_EQ(other.status, 409) << other.json.dump();
  EXPECT_EQ(other.json["type"], "error");
  EXPECT_EQ(other.json["error"]["details"]["error_code"], store::kAlreadyAnswered);
  EXPECT_NE(other.json["error"]["message"].get<std::string>().find(call), std::string::npos);
  EXPECT_EQ(PostEvents(sid, Json::array({ResultEv(call, "out", true)})).status, 409);
  EXPECT_EQ(CountEvents(sid, "user.tool_result"), 1);
  // A request mixing a repeat with a new answer appends only the new one.
  std::string call2 = AddToolUse(sid);
  Reply mixed = PostEvents(sid, Json::array({ResultEv(call, "out"), ResultEv(call2, "two")}));
  ASSERT_EQ(mixed.status, 200) << mixed.json.dump();
  EXPECT_EQ(mixed.json["data"][0]["id"], rid);
  EXPECT_EQ(CountEvents(sid, "user.tool_result"), 2);
  // The store refuses the second answer by itself, inside its transaction.
  Json dup = ResultEv(call2, "two");
  dup["id"] = NewId(idprefix::kEvent);
  auto r = store_->AppendEvents(sid, nullptr, {dup}, nullptr);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kConflict);
  EXPECT_EQ(r.status().detail_code(), store::kAlreadyAnswered);
}

TEST_F(WorkQueueTest, ConcurrentRepeatedResultsAppendOnce) {
  std::string sid = NewSession(env_);
  std::string call = AddToolUse(sid);
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<Reply> replies;
  for (int i = 0; i < 8; i++) {
    threads.emplace_back([&, i] {
      Reply r = PostEvents(sid, Json::array({ResultEv(call, i % 2 ? "same" : "same")}));
      std::lock_guard<std::mutex> lock(mu);
      replies.push_back(r);
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> ids;
  for (const Reply& r : replies) {
    ASSERT_EQ(r.status, 200) << r.json.dump();
    ids.insert(r.json["data"][0]["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 1u);
  EXPECT_EQ(CountEvents(sid, "user.tool_result"), 1);
}

// Defect 3: the invariant "unanswered built-in calls => a live item".
TEST_F(WorkQueueTest, AStoppedItemWithUnansweredCallsIsReplaced) {
  std::string sid = NewSession(env_);
  Json w = Lease();
  AddToolUse(sid);
  ASSERT_TRUE(queue_->EnsureWork(sid).ok());
  ASSERT_EQ(Items().size(), 1u);
  // The holder gives the item up while the call is still open.
  ASSERT_EQ(StopReq(w["id"], true).json["state"], "stopped");
  auto items = Items();
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0]["state"], "queued");
  EXPECT_EQ(items[0]["data"]["id"], sid);
  // Same through a graceful stop that lapses.
  Json w2 = Lease();
  ASSERT_EQ(w2["id"], items[0]["id"]);
  ASSERT_EQ(StopReq(w2["id"], false).json["state"], "stopping");
  EXPECT_EQ(Items().size(), 2u);
  clock_.Advance(91 * kSec);
  ASSERT_TRUE(queue_->Sweep().ok());
  items = Items();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0]["state"], "queued");
  EXPECT_EQ(items[1]["state"], "stopped");
}

TEST_F(WorkQueueTest, StopsWithoutCallsForAWorkerQueueNothing) {
  std::string sid = NewSession(env_);
  std::string answered = AddToolUse(sid);
  ASSERT_EQ(PostEvents(sid, Json::array({ResultEv(answered, "ok")})).status, 200);
  AddToolUse(sid, "deny");
  std::string gated = AddToolUse(sid, "ask");  // waits for the user, not a worker
  Json w = Lease();
  ASSERT_EQ(StopReq(w["id"], true).status, 200);
  EXPECT_EQ(Items().size(), 1u);
  EXPECT_FALSE(*queue_->HasCallsForWorker(sid));
  // Confirmed: now a worker must run it.
  Reply conf = Call("POST", "/v1/sessions/" + sid + "/events",
                    {{"events", {{{"type", "user.tool_confirmation"}, {"tool_use_id", gated}, {"result", "allow"}}}}});
  ASSERT_EQ(conf.status, 200) << conf.json.dump();
  EXPECT_TRUE(*queue_->HasCallsForWorker(sid));
  // An interrupt settles every open call.
  ASSERT_EQ(Call("POST", "/v1/sessions/" + sid + "/events", {{"events", {{{"type", "user.interrupt"}}}}}).status, 200);
  EXPECT_FALSE(*queue_->HasCallsForWorker(sid));
}

TEST_F(WorkQueueTest, StartUpQueuesWorkForWaitingSessions) {
  std::string waiting = NewSession(env_);
  std::string idle = NewSession(env_);
  AddToolUse(waiting);
  // Both items end behind the queue's back (e.g. written by an older
  // version that did not keep the invariant).
  for (const Json& it : Items()) {
    ASSERT_TRUE(store_->UpdateWork(it["id"], [](store::WorkRecord* w) -> Status {
                      w->state = "stopped";
                      w->body["state"] = "stopped";
                      return Status::Ok();
                    }).ok());
  }
  WorkQueueOptions o;
  o.sweep_interval = std::chrono::milliseconds(0);
  WorkQueue restarted(store_.get(), auth_.get(), &clock_, o);
  restarted.Start();
  auto items = Items();
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0]["state"], "queued");
  EXPECT_EQ(items[0]["data"]["id"], waiting);
  EXPECT_EQ(*restarted.CheckAllSessions(), 0) << "idempotent";
}

}  // namespace
}  // namespace warren::queue
