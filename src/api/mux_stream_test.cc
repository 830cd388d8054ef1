// The multiplexed stream (GET /v1/warren/stream) through the real ApiService
// routes in process, over the in-memory store and a FakeClock: framing,
// replay then live without gap or duplicate, cursors, error frames, the
// 50-session bound, sessions_list frames and scoping.
#include "api/mux_stream.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "api/event_bus.h"
#include "api/service.h"
#include "common/clock.h"
#include "common/ids.h"
#include "store/memory_store.h"

namespace warren::api {
namespace {

struct Reply {
  int status = 0;
  Json json;
  std::shared_ptr<http::StreamSource> stream;
};

// One parsed SSE frame.
struct Frame {
  std::string id, event;
  Json data;
  bool comment = false;
};

std::vector<Frame> ParseFrames(const std::vector<std::shared_ptr<const std::string>>& chunks) {
  std::vector<Frame> out;
  for (const auto& c : chunks) {
    Frame f;
    size_t pos = 0;
    const std::string& s = *c;
    while (pos < s.size()) {
      size_t nl = s.find('\n', pos);
      if (nl == std::string::npos) nl = s.size();
      std::string line = s.substr(pos, nl - pos);
      pos = nl + 1;
      if (line.empty()) {
        out.push_back(f);
        f = Frame();
        continue;
      }
      if (line[0] == ':') f.comment = true;
      else if (line.rfind("id: ", 0) == 0) f.id = line.substr(4);
      else if (line.rfind("event: ", 0) == 0) f.event = line.substr(7);
      else if (line.rfind("data: ", 0) == 0) f.data = Json::parse(line.substr(6));
    }
  }
  return out;
}

class MuxStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store_ = std::make_unique<store::MemoryStore>(&clock_);
    auth_ = std::make_unique<Authenticator>(store_.get());
    service_ = std::make_unique<ApiService>(store_.get(), &bus_, auth_.get(), &clock_);
    api_key_ = *auth_->IssueApiKey();
    agent_ = Call("POST", "/v1/agents", {{"name", "a"}, {"model", "claude-sonnet-4-6"}}).json["id"];
    env_ = Call("POST", "/v1/environments", {{"name", "e1"}, {"config", {{"type", "self_hosted"}}}}).json["id"];
    env2_ = Call("POST", "/v1/environments", {{"name", "e2"}, {"config", {{"type", "self_hosted"}}}}).json["id"];
    ASSERT_FALSE(agent_.empty());
    ASSERT_FALSE(env_.empty());
  }

  Reply Call(const std::string& method, const std::string& target, const Json& body = nullptr,
             const std::string& bearer = "") {
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
    if (!body.is_null()) req.body = DumpJson(body);
    req.request_id = NewId(idprefix::kRequest);
    http::HandlerResult hr = service_->Handle(req);
    Reply r;
    r.status = hr.response.status;
    r.stream = hr.stream;
    if (!hr.response.body.empty()) r.json = Json::parse(hr.response.body);
    return r;
  }

  std::string NewSession(const std::string& env, const std::string& title = "") {
    Json body = {{"agent", agent_}, {"environment_id", env}};
    if (!title.empty()) body["title"] = title;
    Reply r = Call("POST", "/v1/sessions", body);
    EXPECT_EQ(r.status, 200) << r.json.dump();
    return r.json["id"];
  }
  // Sends a user.message; returns its event id.
  std::string Send(const std::string& sid, const std::string& text) {
    Reply r = Call("POST", "/v1/sessions/" + sid + "/events",
                   {{"events", {{{"type", "user.message"}, {"content", {{{"type", "text"}, {"text", text}}}}}}}});
    EXPECT_EQ(r.status, 200) << r.json.dump();
    return r.json["data"][0]["id"];
  }
  // Pulls until the stream has nothing more right now.
  static std::vector<Frame> Drain(http::StreamSource* s, bool* more = nullptr) {
    std::vector<std::shared_ptr<const std::string>> all;
    bool m = true;
    for (int i = 0; i < 10000 && m; i++) {
      std::vector<std::shared_ptr<const std::string>> chunk;
      m = s->Pull(&chunk);
      if (chunk.empty()) break;
      for (auto& c : chunk) all.push_back(c);
    }
    if (more) *more = m;
    return ParseFrames(all);
  }
  static std::vector<std::string> Texts(const std::vector<Frame>& frames, const std::string& sid) {
    std::vector<std::string> out;
    for (const Frame& f : frames) {
      if (f.event != "session_event" || f.data["session_id"] != sid) continue;
      const Json& e = f.data["event"];
      if (e["type"] == "user.message") out.push_back(e["content"][0]["text"]);
    }
    return out;
  }

  FakeClock clock_;
  EventBus bus_;
  std::unique_ptr<store::MemoryStore> store_;
  std::unique_ptr<Authenticator> auth_;
  std::unique_ptr<ApiService> service_;
  std::string api_key_, agent_, env_, env2_;
};

TEST_F(MuxStreamTest, ReplaysHistoryThenGoesLiveWithSessionEventFrames) {
  std::string a = NewSession(env_), b = NewSession(env_);
  Send(a, "a1");
  Send(b, "b1");
  Send(a, "a2");
  Reply r = Call("GET", "/v1/warren/stream?session=" + a + "&session=" + b);
  ASSERT_EQ(r.status, 200) << r.json.dump();
  ASSERT_TRUE(r.stream);
  r.stream->SetWaker([] {});
  auto frames = Drain(r.stream.get());
  EXPECT_EQ(Texts(frames, a), (std::vector<std::string>{"a1", "a2"}));
  EXPECT_EQ(Texts(frames, b), (std::vector<std::string>{"b1"}));
  for (const Frame& f : frames) {
    ASSERT_EQ(f.event, "session_event");
    // id: <session_id>@<event_id>, the event exactly as the list returns it.
    EXPECT_EQ(f.id, f.data["session_id"].get<std::string>() + "@" + f.data["event"]["id"].get<std::string>());
  }
  Json listed = Call("GET", "/v1/sessions/" + a + "/events").json["data"];
  std::vector<Json> streamed_a;
  for (const Frame& f : frames)
    if (f.data["session_id"] == a) streamed_a.push_back(f.data["event"]);
  ASSERT_EQ(streamed_a.size(), listed.size());
  for (size_t i = 0; i < streamed_a.size(); i++) EXPECT_EQ(streamed_a[i], listed[i]);

  // Live: each new event once.
  Send(b, "b2");
  Send(a, "a3");
  auto live = Drain(r.stream.get());
  EXPECT_EQ(Texts(live, a), (std::vector<std::string>{"a3"}));
  EXPECT_EQ(Texts(live, b), (std::vector<std::string>{"b2"}));
  r.stream->OnClose();
  EXPECT_EQ(bus_.subscribers(), 0u);
}

TEST_F(MuxStreamTest, CursorResumesAfterTheEventWithoutGapOrDuplicate) {
  std::string a = NewSession(env_);
  Send(a, "1");
  std::string second = Send(a, "2");
  Send(a, "3");
  // Events committed between the cursor's read and the live switch are
  // neither lost nor doubled: the stream is opened, then more arrive before
  // the first Pull.
  Reply r = Call("GET", "/v1/warren/stream?session=" + a + "@" + second);
  ASSERT_EQ(r.status, 200);
  r.stream->SetWaker([] {});
  Send(a, "4");
  auto frames = Drain(r.stream.get());
  Send(a, "5");
  auto more = Drain(r.stream.get());
  frames.insert(frames.end(), more.begin(), more.end());
  EXPECT_EQ(Texts(frames, a), (std::vector<std::string>{"3", "4", "5"}));
}

TEST_F(MuxStreamTest, LongHistoryIsServedInTurnsWithinTheBudget) {
  std::string a = NewSession(env_), b = NewSession(env_);
  std::string big(2000, 'x');
  for (int i = 0; i < 600; i++) Send(a, big + std::to_string(i));
  Send(b, "b1");
  Reply r = Call("GET", "/v1/warren/stream?session=" + a + "&session=" + b);
  ASSERT_EQ(r.status, 200);
  r.stream->SetWaker([] {});
  // The first Pull spends its budget on a's first page; the next starts
  // with b, long before a's history is done: b is not starved.
  std::vector<std::shared_ptr<const std::string>> first;
  ASSERT_TRUE(r.stream->Pull(&first));
  size_t bytes = 0;
  for (auto& c : first) bytes += c->size();
  EXPECT_LE(bytes, MuxStream::kPullBudget + 256 * 4096);
  ASSERT_TRUE(r.stream->Pull(&first));
  bool b_seen = false;
  for (const Frame& f : ParseFrames(first)) b_seen = b_seen || f.data["session_id"] == b;
  EXPECT_TRUE(b_seen);
  EXPECT_LT(Texts(ParseFrames(first), a).size(), 600u);
  auto rest = Drain(r.stream.get());
  auto all = ParseFrames(first);
  all.insert(all.end(), rest.begin(), rest.end());
  auto texts = Texts(all, a);
  ASSERT_EQ(texts.size(), 600u);
  for (int i = 0; i < 600; i++) EXPECT_EQ(texts[static_cast<size_t>(i)], big + std::to_string(i));
}

TEST_F(MuxStreamTest, UnknownSessionAndBadCursorGetErrorFramesAndTheStreamGoesOn) {
  std::string a = NewSession(env_);
  Send(a, "hello");
  Reply r = Call("GET", "/v1/warren/stream?session=sesn_nope&session=" + a + "&session=" + NewSession(env_) +
                            "@sevt_missing");
  ASSERT_EQ(r.status, 200) << r.json.dump();
  r.stream->SetWaker([] {});
  auto frames = Drain(r.stream.get());
  std::vector<Json> errors;
  for (const Frame& f : frames)
    if (f.event == "error") errors.push_back(f.data);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0]["type"], "error");
  EXPECT_EQ(errors[0]["error"]["type"], "not_found_error");
  EXPECT_NE(errors[0]["error"]["message"].get<std::string>().find("sesn_nope"), std::string::npos);
  EXPECT_EQ(errors[1]["error"]["type"], "invalid_request_error");
  EXPECT_EQ(Texts(frames, a), (std::vector<std::string>{"hello"}));
}

TEST_F(MuxStreamTest, BadRequestsAreRefusedBeforeStreaming) {
  std::string q;
  for (int i = 0; i < 51; i++) q += (i ? "&" : "") + std::string("session=sesn_") + std::to_string(i);
  Reply r = Call("GET", "/v1/warren/stream?" + q);
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(r.json["error"]["type"], "invalid_request_error");
  EXPECT_FALSE(r.stream);
  EXPECT_EQ(Call("GET", "/v1/warren/stream?session=a&session=a").status, 400);
  EXPECT_EQ(Call("GET", "/v1/warren/stream?sessions_list=maybe").status, 400);
  EXPECT_EQ(Call("GET", "/v1/warren/stream?bogus=1").status, 400);
  EXPECT_EQ(Call("GET", "/v1/warren/stream?session=@x").status, 400);
  EXPECT_EQ(Call("GET", "/v1/warren/stream", nullptr, "sk-wrong").status, 401);
  // Exactly 50 is fine (each unknown one is an error frame).
  q.clear();
  for (int i = 0; i < 50; i++) q += (i ? "&" : "") + std::string("session=sesn_") + std::to_string(i);
  Reply ok = Call("GET", "/v1/warren/stream?" + q);
  ASSERT_EQ(ok.status, 200);
  ok.stream->SetWaker([] {});
  EXPECT_EQ(Drain(ok.stream.get()).size(), 50u);
}

TEST_F(MuxStreamTest, SessionsListFramesFollowCreationUpdatesAndDeletion) {
  Reply r = Call("GET", "/v1/warren/stream?sessions_list=1");
  ASSERT_EQ(r.status, 200);
  int wakes = 0;
  r.stream->SetWaker([&wakes] { wakes++; });
  EXPECT_TRUE(Drain(r.stream.get()).empty());
  std::string a = NewSession(env_, "first");
  EXPECT_GT(wakes, 0);
  auto frames = Drain(r.stream.get());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].event, "session");
  EXPECT_EQ(frames[0].data["id"], a);
  EXPECT_EQ(frames[0].data["title"], "first");
  EXPECT_FALSE(frames[0].data.contains("_engine"));
  EXPECT_EQ(frames[0].data, Call("GET", "/v1/sessions/" + a).json);

  ASSERT_EQ(Call("POST", "/v1/sessions/" + a, {{"title", "renamed"}}).status, 200);
  frames = Drain(r.stream.get());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data["title"], "renamed");

  // A user.message is not a session change: no frame.
  Send(a, "x");
  EXPECT_TRUE(Drain(r.stream.get()).empty());

  ASSERT_EQ(Call("DELETE", "/v1/sessions/" + a).status, 200);
  frames = Drain(r.stream.get());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data, (Json{{"id", a}, {"type", "session_deleted"}}));
  r.stream->OnClose();
  EXPECT_EQ(bus_.session_listeners(), 0u);
}

TEST_F(MuxStreamTest, SessionsListIsScopedToTheKey) {
  std::string env_key = *auth_->IssueEnvironmentKey(env_);
  Reply r = Call("GET", "/v1/warren/stream?sessions_list=true", nullptr, env_key);
  ASSERT_EQ(r.status, 200) << r.json.dump();
  r.stream->SetWaker([] {});
  std::string mine = NewSession(env_);
  std::string other = NewSession(env2_);
  auto frames = Drain(r.stream.get());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data["id"], mine);
  // The environment key cannot stream the other environment's session.
  Reply s = Call("GET", "/v1/warren/stream?session=" + other, nullptr, env_key);
  ASSERT_EQ(s.status, 200);
  s.stream->SetWaker([] {});
  auto e = Drain(s.stream.get());
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].event, "error");
  EXPECT_EQ(e[0].data["error"]["type"], "permission_error");
}

TEST_F(MuxStreamTest, DeletedSessionEndsAloneAndPreviewsAreFramed) {
  std::string a = NewSession(env_), b = NewSession(env_);
  Reply r = Call("GET", "/v1/warren/stream?session=" + a + "&session=" + b + "&previews=1");
  ASSERT_EQ(r.status, 200);
  r.stream->SetWaker([] {});
  Drain(r.stream.get());
  bus_.PublishPreview(a, "agent.message", {{"type", "event_delta"}, {"delta", "he"}});
  auto frames = Drain(r.stream.get());
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].event, "preview");
  EXPECT_EQ(frames[0].data["session_id"], a);
  EXPECT_EQ(frames[0].data["frame"]["delta"], "he");

  ASSERT_EQ(Call("DELETE", "/v1/sessions/" + a).status, 200);
  bool more = false;
  frames = Drain(r.stream.get(), &more);
  EXPECT_TRUE(more);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].data["event"]["type"], "session.deleted");
  EXPECT_EQ(static_cast<MuxStream*>(r.stream.get())->sessions(), 1u);
  Send(b, "still here");
  EXPECT_EQ(Texts(Drain(r.stream.get()), b), (std::vector<std::string>{"still here"}));
}

TEST_F(MuxStreamTest, SlowConsumerEndsTheWholeStream) {
  EventBus small(/*max_queue=*/4);
  auto store = std::make_unique<store::MemoryStore>(&clock_);
  Authenticator auth(store.get());
  ApiService svc(store.get(), &small, &auth, &clock_);
  std::string key = *auth.IssueApiKey();
  (void)key;
  // Directly: a child that overflows ends the mux.
  SessionSnapshots snaps(store.get());
  MuxStream mux(&small, &snaps, Principal{}, false, std::chrono::seconds(15));
  auto child = small.Subscribe("s1", {}, Framing::kMux);
  mux.AddSession(child);
  mux.SetWaker([] {});
  for (int i = 1; i <= 10; i++) {
    store::StoredEvent e;
    e.seq = i;
    e.body = {{"id", "sevt_" + std::to_string(i)}, {"type", "agent.message"}};
    small.Publish("s1", {e});
  }
  std::vector<std::shared_ptr<const std::string>> out;
  EXPECT_FALSE(mux.Pull(&out));
}

}  // namespace
}  // namespace warren::api
