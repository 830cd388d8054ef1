// Unit tests of the MCP client: SSE answer parsing, endpoint resolution,
// tool-name mapping, output previews, both transports against a scripted
// HTTP server, bearer refresh on 401, credential matching and OAuth refresh.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "common/testing/fake_http_server.h"
#include "domain/mcp_tools.h"
#include "domain/vault_secrets.h"
#include "mcp/credentials.h"
#include "mcp/gateway.h"
#include "mcp/mcp_connection.h"
#include "store/memory_store.h"

namespace warren::mcp {
namespace {

using testing::FakeHttpServer;
using testing::FakeRequest;
using testing::ResponseWriter;

Json Rpc(const FakeRequest& r) {
  auto j = ParseJson(r.body);
  return j.ok() ? *j : Json();
}

Json Answer(const Json& req, const Json& result) {
  return {{"jsonrpc", "2.0"}, {"id", req["id"]}, {"result", result}};
}

TEST(McpSse, PicksTheResponseWithItsIdAndSeesListChanged) {
  std::string body =
      "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
      "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":6,\"result\":{\"x\":1}}\n\n"
      "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"x\":2}}\n\n";
  bool changed = false;
  auto r = ResponseFromSse(body, 7, &changed);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["result"]["x"], 2);
  EXPECT_TRUE(changed);
  changed = false;
  EXPECT_FALSE(ResponseFromSse("event: message\ndata: {\"id\":1,\"result\":{}}\n\n", 2, &changed).ok());
  EXPECT_FALSE(changed);
}

TEST(McpSse, ResolvesEndpoints) {
  EXPECT_EQ(ResolveEndpoint("http://h:1/sse", "/messages?sessionId=a"), "http://h:1/messages?sessionId=a");
  EXPECT_EQ(ResolveEndpoint("http://h:1/mcp/sse", "messages?s=1"), "http://h:1/mcp/messages?s=1");
  EXPECT_EQ(ResolveEndpoint("http://h:1/sse", "http://other/x"), "http://other/x");
}

TEST(McpNames, MapsToModelSafeNamesAndKeepsLongOnesDistinct) {
  EXPECT_EQ(domain::McpExposedName("github", "create_issue"), "mcp__github__create_issue");
  EXPECT_EQ(domain::McpExposedName("my server", "a.b/c"), "mcp__my_server__a_b_c");
  std::string a = domain::McpExposedName(std::string(200, 's'), "tool_one");
  std::string b = domain::McpExposedName(std::string(200, 's'), "tool_two");
  EXPECT_LE(a.size(), 128u);
  EXPECT_NE(a, b);
  for (char c : a) EXPECT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-');
}

TEST(McpContent, ConvertsBlocksAndCutsLargeText) {
  bool is_error = false;
  Json result = {{"content",
                  {{{"type", "text"}, {"text", std::string(1000, 'x')}},
                   {{"type", "image"}, {"mimeType", "image/png"}, {"data", "AAAA"}}}},
                 {"isError", true}};
  Json c = ContentFromMcpResult(result, 100, &is_error);
  EXPECT_TRUE(is_error);
  ASSERT_GE(c.size(), 2u);
  EXPECT_EQ(c[0]["text"].get<std::string>().size(), 100u);
  EXPECT_NE(c.back()["text"].get<std::string>().find("1000 bytes"), std::string::npos);
  // A cut inside a multi-byte character backs off to the character's start.
  Json utf = ContentFromMcpResult({{"content", {{{"type", "text"}, {"text", "ab\xc3\xa9\xc3\xa9"}}}}}, 3, &is_error);
  EXPECT_EQ(utf[0]["text"], "ab");
  EXPECT_NO_THROW((void)utf.dump());
  Json small = ContentFromMcpResult({{"content", {{{"type", "image"}, {"mimeType", "image/png"}, {"data", "AAAA"}}}}},
                                    100, &is_error);
  EXPECT_FALSE(is_error);
  EXPECT_EQ(small[0]["source"]["media_type"], "image/png");
}

// A cut result hands the whole text back for the sandbox file; one that fits
// does not (no copy for the common case).
TEST(McpContent, FullTextComesBackOnlyWhenCut) {
  bool is_error = false;
  std::string full;
  Json big = {{"content", {{{"type", "text"}, {"text", std::string(150, 'a')}}, {{"type", "text"}, {"text", "tail"}}}}};
  Json c = ContentFromMcpResult(big, 100, &is_error, &full);
  EXPECT_EQ(full, std::string(150, 'a') + "\ntail");
  EXPECT_EQ(c[0]["text"].get<std::string>().size(), 100u);
  std::string none;
  (void)ContentFromMcpResult({{"content", {{{"type", "text"}, {"text", "short"}}}}}, 100, &is_error, &none);
  EXPECT_TRUE(none.empty());
}

// A Streamable HTTP server: JSON for initialize, SSE for the rest.
class StreamableServer {
 public:
  StreamableServer()
      : srv_([this](const FakeRequest& r, ResponseWriter& w) { Handle(r, w); }) {}
  std::string url() const { return srv_.url() + "/mcp"; }
  std::vector<FakeRequest> requests() const { return srv_.requests(); }
  std::string token = "good";

 private:
  void Handle(const FakeRequest& r, ResponseWriter& w) {
    if (r.Header("authorization") != "Bearer " + token) return FakeHttpServer::Reply(w, 401, "{}");
    if (r.method == "GET") return FakeHttpServer::Reply(w, 405, "");  // no standalone stream
    Json m = Rpc(r);
    std::string method = m.value("method", "");
    if (method == "initialize") {
      return FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, {{"protocolVersion", "2025-06-18"}})),
                                   {{"Content-Type", "application/json"}, {"Mcp-Session-Id", "sess-1"}});
    }
    if (r.Header("mcp-session-id") != "sess-1") return FakeHttpServer::Reply(w, 400, "{}");
    if (!m.contains("id")) return FakeHttpServer::Reply(w, 202, "");
    Json result;
    if (method == "tools/list") {
      result = {{"tools", {{{"name", "echo"}, {"description", "Echoes"}, {"inputSchema", {{"type", "object"}}}}}}};
    } else {
      result = {{"content", {{{"type", "text"}, {"text", "echo:" + m["params"]["arguments"].value("text", "")}}}}};
    }
    std::string sse = "event: message\ndata: " +
                      DumpJson({{"jsonrpc", "2.0"}, {"method", "notifications/tools/list_changed"}}) +
                      "\n\nevent: message\ndata: " + DumpJson(Answer(m, result)) + "\n\n";
    FakeHttpServer::Reply(w, 200, sse, {{"Content-Type", "text/event-stream"}});
  }
  FakeHttpServer srv_;
};

TEST(McpConnectionTest, StreamableHttpSessionIdSseAnswersAndOneRefreshOn401) {
  StreamableServer server;
  auto http = NewCurlHttpClient();
  int refreshes = 0;
  BearerFn bearer = [&](bool refresh) -> Result<std::string> {
    if (!refresh) return std::string("stale");
    refreshes++;
    return std::string("good");
  };
  McpConnection conn(http.get(), server.url(), bearer);
  ASSERT_TRUE(conn.Initialize(nullptr).ok());
  EXPECT_EQ(conn.transport(), McpTransport::kStreamableHttp);
  EXPECT_EQ(refreshes, 1);
  auto tools = conn.ListTools(nullptr);
  ASSERT_TRUE(tools.ok()) << tools.status().ToString();
  ASSERT_EQ(tools->size(), 1u);
  EXPECT_EQ((*tools)[0]["name"], "echo");
  EXPECT_TRUE(conn.TakeToolsChanged());
  auto r = conn.CallTool("echo", {{"text", "hi"}}, nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["content"][0]["text"], "echo:hi");
  // Every request after initialize carried the session id and the protocol version.
  auto reqs = server.requests();
  int with_session = 0;
  int gets = 0;
  for (const auto& q : reqs) {
    if (q.method == "GET") {
      gets++;  // the standalone stream, refused with 405: not tried again
      continue;
    }
    if (q.Header("mcp-session-id") == "sess-1" && q.Header("mcp-protocol-version") == "2025-06-18") with_session++;
  }
  EXPECT_EQ(with_session, 3);  // initialized, tools/list, tools/call
  EXPECT_LE(gets, 1);
}

// Streamable HTTP beyond one request: a scripted server whose session can
// be forgotten, whose tools/call answer stream breaks after a first event
// (the answer then comes on a GET with Last-Event-ID), and whose standalone
// GET stream carries a list_changed.
class ResumableServer {
 public:
  ResumableServer() : srv_([this](const FakeRequest& r, ResponseWriter& w) { Handle(r, w); }) {}
  ~ResumableServer() { Stop(); }
  std::string url() const { return srv_.url() + "/mcp"; }
  std::vector<FakeRequest> requests() const { return srv_.requests(); }
  void Forget() {
    std::lock_guard<std::mutex> lock(mu_);
    session_.clear();
    cv_.notify_all();
  }
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    cv_.notify_all();
  }
  bool break_calls = false;    // tools/call: the stream ends after one event
  bool standalone = false;     // GET: a stream with a list_changed, held open
  std::atomic<int> calls{0};   // tools/call executed (the side effect)

 private:
  void Handle(const FakeRequest& r, ResponseWriter& w) {
    std::string sid;
    int n = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      sid = session_;
      n = ++inits_;
    }
    if (r.method == "GET") {
      if (r.Header("mcp-session-id").empty() || r.Header("mcp-session-id") != sid) return FakeHttpServer::Reply(w, 404, "");
      if (r.Header("last-event-id") == "call-1") {
        // The resumed stream: the answer, then held open (the client stops reading).
        w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
        w.Write("id: call-2\nevent: message\ndata: " +
                DumpJson({{"jsonrpc", "2.0"}, {"id", pending_id_.load()}, {"result", {{"content", {{{"type", "text"}, {"text", "resumed"}}}}}}}) +
                "\n\n");
        Hold(w);
        return;
      }
      if (!standalone) return FakeHttpServer::Reply(w, 405, "");
      w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
      w.Write("id: s-1\nevent: message\ndata: " + DumpJson({{"jsonrpc", "2.0"}, {"method", "notifications/tools/list_changed"}}) + "\n\n");
      Hold(w);
      return;
    }
    Json m = Rpc(r);
    std::string method = m.value("method", "");
    if (method == "initialize") {
      if (!r.Header("mcp-session-id").empty()) return FakeHttpServer::Reply(w, 400, "{}");
      std::string fresh = "sess-" + std::to_string(n);
      {
        std::lock_guard<std::mutex> lock(mu_);
        session_ = fresh;
      }
      return FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, {{"protocolVersion", "2025-06-18"}})),
                                   {{"Content-Type", "application/json"}, {"Mcp-Session-Id", fresh}});
    }
    if (r.Header("mcp-session-id") != sid || sid.empty()) return FakeHttpServer::Reply(w, 404, "{}");
    if (!m.contains("id")) return FakeHttpServer::Reply(w, 202, "");
    if (method == "tools/call") {
      calls++;
      if (break_calls) {
        pending_id_ = m["id"].get<int64_t>();
        w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
        w.Write("id: call-1\nevent: message\ndata: " +
                DumpJson({{"jsonrpc", "2.0"}, {"method", "notifications/progress"}, {"params", {{"progressToken", 1}, {"progress", 1}}}}) +
                "\n\n");
        w.Close();  // the connection drops before the answer
        return;
      }
      return FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, {{"content", {{{"type", "text"}, {"text", "called"}}}}})),
                                   {{"Content-Type", "application/json"}});
    }
    FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, {{"tools", Json::array()}})), {{"Content-Type", "application/json"}});
  }
  void Hold(ResponseWriter& w) {
    std::unique_lock<std::mutex> lock(mu_);
    while (!stopped_ && !w.PeerClosed()) cv_.wait_for(lock, std::chrono::milliseconds(20));
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::string session_;
  int inits_ = 0;
  bool stopped_ = false;
  std::atomic<int64_t> pending_id_{0};
  FakeHttpServer srv_;
};

TEST(McpConnectionTest, ABrokenAnswerStreamIsResumedWithLastEventId) {
  ResumableServer server;
  server.break_calls = true;
  auto http = NewCurlHttpClient();
  McpConnection conn(http.get(), server.url(), nullptr);
  ASSERT_TRUE(conn.Initialize(nullptr).ok());
  auto r = conn.CallTool("t", Json::object(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["content"][0]["text"], "resumed");
  EXPECT_EQ(conn.resumptions(), 1);
  EXPECT_EQ(server.calls.load(), 1);  // resumed, not called again
  bool resumed_with_id = false;
  for (const auto& q : server.requests())
    if (q.method == "GET" && q.Header("last-event-id") == "call-1" && q.Header("mcp-session-id") == "sess-1")
      resumed_with_id = true;
  EXPECT_TRUE(resumed_with_id);
  server.Stop();
}

TEST(McpConnectionTest, AForgottenSessionIsReinitialisedAndTheRequestSentOnce) {
  ResumableServer server;
  auto http = NewCurlHttpClient();
  McpConnection conn(http.get(), server.url(), nullptr);
  ASSERT_TRUE(conn.Initialize(nullptr).ok());
  ASSERT_TRUE(conn.CallTool("t", Json::object(), nullptr).ok());
  EXPECT_FALSE(conn.TakeToolsChanged());
  server.Forget();  // a restart: the old session id now gets 404
  auto r = conn.CallTool("t", Json::object(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["content"][0]["text"], "called");
  EXPECT_EQ(conn.reinitializations(), 1);
  EXPECT_EQ(server.calls.load(), 2);  // once before, once after: the 404 ran nothing
  EXPECT_TRUE(conn.TakeToolsChanged()) << "a new session is listed again";
  // The new initialize carried no session id; later requests carry the new one.
  auto reqs = server.requests();
  int inits = 0;
  for (const auto& q : reqs)
    if (q.method == "POST" && Rpc(q).value("method", "") == "initialize") {
      inits++;
      EXPECT_EQ(q.Header("mcp-session-id"), "");
    }
  EXPECT_EQ(inits, 2);
  ASSERT_FALSE(reqs.empty());
  EXPECT_NE(reqs.back().Header("mcp-session-id"), "");
  EXPECT_NE(reqs.back().Header("mcp-session-id"), "sess-1");
  server.Stop();
}

TEST(McpConnectionTest, TheStandaloneStreamCarriesListChangedOutsideRequests) {
  ResumableServer server;
  server.standalone = true;
  auto http = NewCurlHttpClient();
  {
    McpConnection conn(http.get(), server.url(), nullptr);
    ASSERT_TRUE(conn.Initialize(nullptr).ok());
    // No request is made: the notification can only come on the GET stream.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!conn.TakeToolsChanged()) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no list_changed seen";
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // The destructor ends the held-open GET stream (it must not hang).
  }
  server.Stop();
}

TEST(McpConnectionTest, RefusedTwiceIsAnAuthenticationFailure) {
  StreamableServer server;
  server.token = "never";
  auto http = NewCurlHttpClient();
  int refreshes = 0;
  McpConnection conn(http.get(), server.url(), [&](bool refresh) -> Result<std::string> {
    if (refresh) refreshes++;
    return std::string("wrong");
  });
  Status st = conn.Initialize(nullptr);
  EXPECT_EQ(st.code(), Code::kUnauthenticated);
  EXPECT_EQ(refreshes, 1);
  EXPECT_EQ(st.message().find("wrong"), std::string::npos) << "no token in errors: " << st.message();
}

// A server that echoes the Authorization header it got: in a tool's
// description, in a result and in a JSON-RPC error. None of it comes back
// with the token: neither the first one nor the one after a 401 refresh.
TEST(McpConnectionTest, WhatTheServerEchoesIsScrubbedOfTheTokensSent) {
  std::string valid = "tok/first+1";
  std::mutex mu;
  FakeHttpServer srv([&](const FakeRequest& r, ResponseWriter& w) {
    std::string auth = r.Header("authorization");
    {
      std::lock_guard<std::mutex> lock(mu);
      if (auth != "Bearer " + valid) return FakeHttpServer::Reply(w, 401, "{\"seen\":\"" + auth + "\"}");
    }
    if (r.method == "GET") return FakeHttpServer::Reply(w, 405, "");
    Json m = Rpc(r);
    const std::string method = m.value("method", "");
    if (!m.contains("id")) return FakeHttpServer::Reply(w, 202, "");
    Json answer;
    if (method == "initialize") {
      answer = Answer(m, {{"protocolVersion", "2025-06-18"}});
    } else if (method == "tools/list") {
      answer = Answer(m, {{"tools", {{{"name", "whoami"}, {"description", "Called with " + auth}}}}});
    } else if (m["params"].value("name", "") == "whoami") {
      answer = Answer(m, {{"content", {{{"type", "text"}, {"text", "you sent " + auth + " (form: " +
                                                                         "tok%2Ffirst%2B1, json: tok\\/first+1)"}}}},
                          {"structuredContent", {{"headers", {{"authorization", auth}}}}}});
    } else {
      answer = {{"jsonrpc", "2.0"}, {"id", m["id"]}, {"error", {{"code", -32000}, {"message", "refused " + auth}}}};
    }
    FakeHttpServer::Reply(w, 200, DumpJson(answer), {{"Content-Type", "application/json"}, {"Mcp-Session-Id", "echo-1"}});
  });
  auto http = NewCurlHttpClient();
  std::string current = "tok/first+1";
  BearerFn bearer = [&](bool refresh) -> Result<std::string> {
    if (refresh) current = "tok-second-2";
    return current;
  };
  McpConnection conn(http.get(), srv.url() + "/mcp", bearer);
  ASSERT_TRUE(conn.Initialize(nullptr).ok());
  auto tools = conn.ListTools(nullptr);
  ASSERT_TRUE(tools.ok()) << tools.status().ToString();
  ASSERT_EQ(tools->size(), 1u);
  EXPECT_EQ((*tools)[0]["description"], "Called with Bearer [redacted]");
  auto r = conn.CallTool("whoami", Json::object(), nullptr);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["content"][0]["text"], "you sent Bearer [redacted] (form: [redacted], json: [redacted])");
  EXPECT_EQ((*r)["structuredContent"]["headers"]["authorization"], "Bearer [redacted]");
  auto e = conn.CallTool("other", Json::object(), nullptr);
  ASSERT_EQ(e.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(e.status().message().find("tok/first"), std::string::npos) << e.status().message();
  // The server now wants another token: one 401, one refresh; the new
  // token is scrubbed as well as the old.
  {
    std::lock_guard<std::mutex> lock(mu);
    valid = "tok-second-2";
  }
  auto r2 = conn.CallTool("whoami", Json::object(), nullptr);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ((*r2)["content"][0]["text"], "you sent Bearer [redacted] (form: [redacted], json: [redacted])");
  EXPECT_EQ(DumpJson(*r2).find("tok-second-2"), std::string::npos);
}

TEST(McpConnectionTest, DeadServerIsAConnectionFailure) {
  auto http = NewCurlHttpClient();
  McpConnection conn(http.get(), "http://127.0.0.1:1/mcp", nullptr);
  Status st = conn.Initialize(nullptr);
  EXPECT_EQ(st.code(), Code::kUnavailable) << st.ToString();
}

// The older HTTP+SSE transport: GET /sse streams `endpoint` then answers.
TEST(McpConnectionTest, LegacyHttpSseTransport) {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> outbox;
  bool done = false;
  FakeHttpServer srv([&](const FakeRequest& r, ResponseWriter& w) {
    if (r.method == "POST" && r.target == "/sse") return FakeHttpServer::Reply(w, 405, "");
    if (r.method == "GET" && r.target == "/sse") {
      w.WriteHead(200, {{"Content-Type", "text/event-stream"}});
      w.Write("event: endpoint\ndata: /messages?sessionId=abc\n\n");
      std::unique_lock<std::mutex> lock(mu);
      while (!done && !w.PeerClosed()) {
        cv.wait_for(lock, std::chrono::milliseconds(20));
        for (auto& m : outbox) w.Write("event: message\ndata: " + m + "\n\n");
        outbox.clear();
      }
      return;
    }
    if (r.method == "POST" && r.target == "/messages?sessionId=abc") {
      Json m = Rpc(r);
      if (m.contains("id")) {
        std::string method = m.value("method", "");
        Json result = method == "tools/list" ? Json{{"tools", {{{"name", "t1"}}}}} : Json{{"protocolVersion", "2024-11-05"}};
        std::lock_guard<std::mutex> lock(mu);
        outbox.push_back(DumpJson(Answer(m, result)));
        cv.notify_all();
      }
      return FakeHttpServer::Reply(w, 202, "Accepted");
    }
    FakeHttpServer::Reply(w, 404, "");
  });
  auto http = NewCurlHttpClient();
  {
    McpConnection conn(http.get(), srv.url() + "/sse", nullptr);
    ASSERT_TRUE(conn.Initialize(nullptr).ok());
    EXPECT_EQ(conn.transport(), McpTransport::kHttpSse);
    auto tools = conn.ListTools(nullptr);
    ASSERT_TRUE(tools.ok()) << tools.status().ToString();
    EXPECT_EQ((*tools)[0]["name"], "t1");
  }
  std::lock_guard<std::mutex> lock(mu);
  done = true;
  cv.notify_all();
}

// Credentials: matching by URL across the session's vaults, OAuth refresh.
class CredentialsTest : public ::testing::Test {
 protected:
  CredentialsTest() : store_(&clock_), box_(*SecretBox::FromHex(std::string(64, 'a'))) {}

  void AddVault(const std::string& id) {
    ASSERT_TRUE(store_.CreateVault({{"id", id}, {"archived_at", nullptr}}).ok());
  }
  void AddCredential(const std::string& vault, const std::string& id, Json auth, domain::CredentialSecrets sec) {
    Json body = {{"id", id}, {"vault_id", vault}, {"auth", auth}, {"archived_at", nullptr}};
    ASSERT_TRUE(store_.CreateCredential({body, *domain::SealCredentialSecrets(box_, id, sec)}, 20).ok());
  }

  FakeClock clock_;
  store::MemoryStore store_;
  SecretBox box_;
};

TEST_F(CredentialsTest, MatchesByUrlInVaultOrder) {
  AddVault("vlt_a");
  AddVault("vlt_b");
  domain::CredentialSecrets s;
  s.token = "tok-b";
  AddCredential("vlt_b", "vcrd_b", {{"type", "static_bearer"}, {"mcp_server_url", "http://x/mcp/"}}, s);
  s.token = "tok-a";
  AddCredential("vlt_a", "vcrd_a", {{"type", "static_bearer"}, {"mcp_server_url", "http://x/mcp"}}, s);
  auto http = NewCurlHttpClient();
  CredentialResolver r(&store_, http.get(), &box_, &clock_);
  Json session = {{"vault_ids", {"vlt_b", "vlt_a"}}};
  auto c = r.Find(session, "http://x/mcp");
  ASSERT_TRUE(c.ok() && *c);
  EXPECT_EQ((*c)->credential_id, "vcrd_b");  // first vault wins; trailing '/' ignored
  EXPECT_EQ(*r.Bearer(**c, false, nullptr), "tok-b");
  EXPECT_FALSE(*r.Find(session, "http://other/mcp"));
  EXPECT_FALSE(*r.Find(Json{{"vault_ids", Json::array()}}, "http://x/mcp"));
}

TEST_F(CredentialsTest, OAuthRefreshesWhenExpiredStoresRotatedTokensAndReportsFailure) {
  int calls = 0;
  bool fail = false;
  FakeHttpServer token_endpoint([&](const FakeRequest& r, ResponseWriter& w) {
    calls++;
    if (fail) return FakeHttpServer::Reply(w, 400, "{\"error\":\"invalid_grant\"}");
    // client_secret_basic: base64("cid:csecret")
    EXPECT_EQ(r.Header("authorization"), "Basic Y2lkOmNzZWNyZXQ=");
    EXPECT_NE(r.body.find("grant_type=refresh_token"), std::string::npos);
    EXPECT_NE(r.body.find("refresh_token=rt-" + std::to_string(calls)), std::string::npos) << r.body;
    FakeHttpServer::Reply(w, 200,
                          "{\"access_token\":\"at-" + std::to_string(calls + 1) + "\",\"refresh_token\":\"rt-" +
                              std::to_string(calls + 1) + "\",\"expires_in\":3600}",
                          {{"Content-Type", "application/json"}});
  });
  AddVault("vlt_a");
  domain::CredentialSecrets s;
  s.access_token = "at-1";
  s.refresh_token = "rt-1";
  s.client_secret = "csecret";
  Json auth = {{"type", "mcp_oauth"},
               {"mcp_server_url", "http://x/mcp"},
               {"expires_at", FormatRfc3339(clock_.NowMicros() - 1)},
               {"refresh",
                {{"client_id", "cid"},
                 {"token_endpoint", token_endpoint.url() + "/token"},
                 {"token_endpoint_auth", {{"type", "client_secret_basic"}}}}}};
  AddCredential("vlt_a", "vcrd_o", auth, s);
  auto http = NewCurlHttpClient();
  CredentialResolver r(&store_, http.get(), &box_, &clock_);
  std::vector<std::string> failed;
  r.on_refresh_failed = [&](const std::string& v, const std::string& c) { failed.push_back(v + "/" + c); };
  ResolvedCredential c{"vlt_a", "vcrd_o", "mcp_oauth"};
  EXPECT_EQ(*r.Bearer(c, false, nullptr), "at-2");  // expired: refreshed before use
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(*r.Bearer(c, false, nullptr), "at-2");  // fresh now: no call
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(*r.Bearer(c, true, nullptr), "at-3");  // a 401: one forced refresh with the rotated token
  EXPECT_EQ(calls, 2);
  auto rec = store_.GetCredential("vlt_a", "vcrd_o");
  auto opened = domain::OpenCredentialSecrets(box_, "vcrd_o", rec->sealed);
  EXPECT_EQ(opened->refresh_token, "rt-3");
  EXPECT_EQ(DumpJson(rec->body).find("at-3"), std::string::npos) << "no secret in the public body";
  fail = true;
  auto bad = r.Bearer(c, true, nullptr);
  EXPECT_EQ(bad.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(failed, std::vector<std::string>{"vlt_a/vcrd_o"});
  EXPECT_EQ(bad.status().message().find("rt-3"), std::string::npos);
}

TEST_F(CredentialsTest, GatewayListsLiveServersReportsAFailureOnceAndBacksOff) {
  StreamableServer live;
  live.token = "";  // no credential needed... the server still checks "Bearer " + token
  std::atomic<int> broken_hits{0};
  FakeHttpServer broken([&](const FakeRequest&, ResponseWriter& w) {
    broken_hits++;
    FakeHttpServer::Reply(w, 500, "oops");
  });
  auto http = NewCurlHttpClient();
  AddVault("vlt_g");
  domain::CredentialSecrets sec;
  sec.token = "live-token";
  AddCredential("vlt_g", "vcrd_g", {{"type", "static_bearer"}, {"mcp_server_url", live.url()}}, sec);
  live.token = "live-token";
  McpGateway gw(&store_, http.get(), &box_, &clock_);
  Json toolset = {{"type", "mcp_toolset"}, {"default_config", {{"enabled", true}, {"permission_policy", {{"type", "always_allow"}}}}}};
  Json t1 = toolset, t2 = toolset;
  t1["mcp_server_name"] = "live";
  t2["mcp_server_name"] = "broken";
  Json session = {{"id", "sesn_g"},
                  {"vault_ids", {"vlt_g"}},
                  {"agent",
                   {{"mcp_servers",
                     {{{"type", "url"}, {"name", "live"}, {"url", live.url()}},
                      {{"type", "url"}, {"name", "broken"}, {"url", broken.url() + "/mcp"}}}},
                    {"tools", {t1, t2}}}}};
  auto l1 = gw.ListTools(session, nullptr);
  ASSERT_EQ(l1.tools.size(), 1u);
  EXPECT_EQ(l1.tools[0].exposed_name, "mcp__live__echo");
  ASSERT_EQ(l1.failures.size(), 1u);
  EXPECT_EQ(l1.failures[0].server, "broken");
  EXPECT_EQ(l1.failures[0].error_type, "mcp_connection_failed_error");
  int hits = broken_hits.load();
  // Within the backoff: not tried, not reported again; the live server's tools stay.
  auto l2 = gw.ListTools(session, nullptr);
  EXPECT_EQ(l2.tools.size(), 1u);
  EXPECT_TRUE(l2.failures.empty());
  EXPECT_EQ(broken_hits.load(), hits);
  // After it: tried again (still failing, still reported only once).
  clock_.Advance(31'000'000);
  auto l3 = gw.ListTools(session, nullptr);
  EXPECT_GT(broken_hits.load(), hits);
  EXPECT_TRUE(l3.failures.empty());
  // A call goes through the cached connection with the vault's token.
  auto out = gw.CallTool(session, "live", "echo", {{"text", "x"}}, nullptr);
  EXPECT_FALSE(out.is_error);
  EXPECT_EQ(out.content[0]["text"], "echo:x");
}

// Holds requests until opened; `GateGuard` opens it before the servers
// whose handlers wait on it are destroyed (declared after them).
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  std::atomic<int> waiting{0};
  void Wait() {
    waiting++;
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return open; });
  }
  void Open() {
    std::lock_guard<std::mutex> lock(mu);
    open = true;
    cv.notify_all();
  }
};
struct GateGuard {
  Gate* gate;
  ~GateGuard() { gate->Open(); }
};

// Timeouts: a server that accepts connections and never answers
// `initialize`, and one that never answers a `tools/call`, each end in
// mcp_connection_failed_error naming the server, within the gateway's
// timeouts; the live server's tools are listed and called meanwhile.
TEST_F(CredentialsTest, HangingServersTimeOutAndTheOthersGoOn) {
  Gate gate;
  StreamableServer live;
  FakeHttpServer hang_init([&](const FakeRequest&, ResponseWriter&) { gate.Wait(); });
  FakeHttpServer hang_call([&](const FakeRequest& r, ResponseWriter& w) {
    if (r.method == "GET") return FakeHttpServer::Reply(w, 405, "");
    Json m = Rpc(r);
    const std::string method = m.value("method", "");
    if (!m.contains("id")) return FakeHttpServer::Reply(w, 202, "");
    Json result;
    if (method == "initialize") {
      return FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, {{"protocolVersion", "2025-06-18"}})),
                                   {{"Content-Type", "application/json"}, {"Mcp-Session-Id", "hang-1"}});
    }
    if (method == "tools/list") {
      result = {{"tools", {{{"name", "wait"}, {"description", "Never answers"}, {"inputSchema", {{"type", "object"}}}}}}};
      return FakeHttpServer::Reply(w, 200, DumpJson(Answer(m, result)), {{"Content-Type", "application/json"}});
    }
    gate.Wait();  // tools/call: no answer until the test ends
    FakeHttpServer::Reply(w, 500, "");
  });
  GateGuard guard{&gate};
  AddVault("vlt_h");
  domain::CredentialSecrets sec;
  sec.token = "live-token";
  AddCredential("vlt_h", "vcrd_h", {{"type", "static_bearer"}, {"mcp_server_url", live.url()}}, sec);
  live.token = "live-token";
  // Short, but generous for the live server's loopback round trips on a
  // loaded machine (they share these timeouts).
  McpGatewayOptions opts;
  opts.connection.request_timeout_ms = 2000;
  opts.connection.call_timeout_ms = 2000;
  auto http = NewCurlHttpClient();
  McpGateway gw(&store_, http.get(), &box_, &clock_, opts);
  Json servers = Json::array();
  Json tools = Json::array();
  for (auto [name, url] : {std::pair<std::string, std::string>{"live", live.url()}, {"hanginit", hang_init.url() + "/mcp"},
                           {"hangcall", hang_call.url() + "/mcp"}}) {
    servers.push_back({{"type", "url"}, {"name", name}, {"url", url}});
    tools.push_back({{"type", "mcp_toolset"},
                     {"mcp_server_name", name},
                     {"default_config", {{"enabled", true}, {"permission_policy", {{"type", "always_allow"}}}}}});
  }
  Json session = {{"id", "sesn_h"}, {"vault_ids", {"vlt_h"}}, {"agent", {{"mcp_servers", servers}, {"tools", tools}}}};
  auto listing = gw.ListTools(session, nullptr);
  std::vector<std::string> names;
  for (const auto& d : listing.tools) names.push_back(d.exposed_name);
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"mcp__hangcall__wait", "mcp__live__echo"}));
  ASSERT_EQ(listing.failures.size(), 1u);
  EXPECT_EQ(listing.failures[0].server, "hanginit");
  EXPECT_EQ(listing.failures[0].error_type, "mcp_connection_failed_error");
  EXPECT_GE(gate.waiting.load(), 1) << "the hanging server was reached";
  auto hung = gw.CallTool(session, "hangcall", "wait", Json::object(), nullptr);
  EXPECT_TRUE(hung.is_error);
  ASSERT_TRUE(hung.failure.has_value());
  EXPECT_EQ(hung.failure->server, "hangcall");
  EXPECT_EQ(hung.failure->error_type, "mcp_connection_failed_error");
  EXPECT_NE(hung.failure->message.find("hangcall"), std::string::npos) << hung.failure->message;
  auto ok = gw.CallTool(session, "live", "echo", {{"text", "still here"}}, nullptr);
  EXPECT_FALSE(ok.is_error);
  EXPECT_EQ(ok.content[0]["text"], "echo:still here");
}

}  // namespace
}  // namespace warren::mcp
