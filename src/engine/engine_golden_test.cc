// Data-driven engine tests: each tests/golden/engine/*.json file is a
// scripted model, an agent, an environment, and steps of client events in
// and expected events out. See tests/golden/engine/README.md for the format.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "api/auth.h"
#include "api/errors.h"
#include "api/event_bus.h"
#include "api/service.h"
#include "engine/engine.h"
#include "models/scripted_provider.h"
#include "store/sqlite_store.h"

namespace warren::engine {
namespace {

namespace fs = std::filesystem;

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

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

// A whole service in-process: requests go through ApiService::Handle.
class Harness {
 public:
  explicit Harness(const std::string& script, int64_t context_window = 0) {
    char tmpl[] = "/tmp/warren_golden_XXXXXX";
    dir_ = mkdtemp(tmpl);
    store_ = std::move(store::SqliteStore::Open(StoreOptions(dir_), Clock::Real())).value();
    auth_ = std::make_unique<api::Authenticator>(store_.get());
    key_ = *auth_->IssueApiKey();
    api_ = std::make_unique<api::ApiService>(store_.get(), &bus_, auth_.get(), Clock::Real());
    models::ScriptedOptions so;
    so.script_text = script;
    if (context_window > 0) so.context_window = context_window;
    auto p = models::NewScriptedProvider(so);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    provider_ = std::move(p).value();
    engine_ = std::make_unique<Engine>(store_.get(), &bus_, provider_.get(), Clock::Real());
    api_->add_observer(engine_.get());
    EXPECT_TRUE(engine_->Start().ok());
  }
  ~Harness() {
    engine_->Stop();
    fs::remove_all(dir_);
  }

  Json Call(const std::string& method, const std::string& path, const Json& body, int* status = nullptr) {
    http::HttpRequest req;
    req.method = method;
    req.path = path;
    req.target = path;
    req.request_id = "req_test";
    req.headers.Add("x-api-key", key_);
    if (!body.is_null()) req.body = DumpJson(body);
    http::HandlerResult r = api_->Handle(req);
    if (status) *status = r.response.status;
    engine_->WaitIdle();
    return Json::parse(r.response.body);
  }
  std::vector<Json> Events(const std::string& sid) {
    auto page = store_->ListEvents(sid, {}, store::PageSpec{1000, store::Order::kAsc});
    return page.ok() ? page->items : std::vector<Json>{};
  }
  store::Store* store() { return store_.get(); }

 private:
  std::string dir_;
  std::unique_ptr<store::SqliteStore> store_;
  api::EventBus bus_;
  std::unique_ptr<api::Authenticator> auth_;
  std::string key_;
  std::unique_ptr<api::ApiService> api_;
  std::unique_ptr<models::ModelProvider> provider_;
  std::unique_ptr<Engine> engine_;
};

// Replaces "$<type>[n]" / "$<type>[-1]" strings with the id of the n-th
// (or last) event of that type seen so far.
Json Resolve(const Json& j, const std::vector<Json>& events) {
  if (j.is_string()) {
    const std::string& s = j.get_ref<const std::string&>();
    if (s.size() > 3 && s[0] == '$' && s.back() == ']') {
      size_t lb = s.find('[');
      std::string type = s.substr(1, lb - 1);
      int n = std::stoi(s.substr(lb + 1, s.size() - lb - 2));
      std::vector<const Json*> of;
      for (const Json& e : events)
        if (e["type"] == type) of.push_back(&e);
      if (n < 0) n += static_cast<int>(of.size());
      if (n >= 0 && n < static_cast<int>(of.size())) return (*of[n])["id"];
      ADD_FAILURE() << "no event for reference " << s;
    }
    return j;
  }
  if (j.is_object()) {
    Json out = Json::object();
    for (auto it = j.begin(); it != j.end(); ++it) out[it.key()] = Resolve(it.value(), events);
    return out;
  }
  if (j.is_array()) {
    Json out = Json::array();
    for (const Json& x : j) out.push_back(Resolve(x, events));
    return out;
  }
  return j;
}

// `want` is a subset of `got` (objects: listed keys; arrays: same length,
// element-wise; "*" matches anything present).
bool Matches(const Json& want, const Json& got, std::string* why, const std::string& path = "") {
  if (want.is_string() && want == "*") {
    if (got.is_null()) {
      *why = path + ": expected a value, got null";
      return false;
    }
    return true;
  }
  if (want.is_object()) {
    if (!got.is_object()) {
      *why = path + ": expected an object, got " + got.dump();
      return false;
    }
    for (auto it = want.begin(); it != want.end(); ++it) {
      if (!got.contains(it.key())) {
        *why = path + "." + it.key() + ": missing";
        return false;
      }
      if (!Matches(it.value(), got[it.key()], why, path + "." + it.key())) return false;
    }
    return true;
  }
  if (want.is_array()) {
    if (!got.is_array() || got.size() != want.size()) {
      *why = path + ": expected " + want.dump() + ", got " + got.dump();
      return false;
    }
    for (size_t i = 0; i < want.size(); i++)
      if (!Matches(want[i], got[i], why, path + "[" + std::to_string(i) + "]")) return false;
    return true;
  }
  if (want != got) {
    *why = path + ": expected " + want.dump() + ", got " + got.dump();
    return false;
  }
  return true;
}

class GoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(GoldenTest, Run) {
  fs::path file = GetParam();
  auto parsed = ParseJson(ReadFile(file));
  ASSERT_TRUE(parsed.ok()) << file << ": " << parsed.status().ToString();
  const Json& g = *parsed;
  Harness h(DumpJson(g.at("script")), g.value("context_window", int64_t{0}));
  Json agent_body = {{"name", "golden"}, {"model", "scripted"}, {"tools", Json::array({{{"type", "agent_toolset_20260401"}}})}};
  if (g.contains("agent"))
    for (auto it = g["agent"].begin(); it != g["agent"].end(); ++it) agent_body[it.key()] = it.value();
  Json agent = h.Call("POST", "/v1/agents", agent_body);
  ASSERT_TRUE(agent.contains("id")) << agent.dump();
  Json env_body = {{"name", "golden-env"}, {"config", {{"type", "self_hosted"}}}};
  if (g.contains("environment"))
    for (auto it = g["environment"].begin(); it != g["environment"].end(); ++it) env_body[it.key()] = it.value();
  Json env = h.Call("POST", "/v1/environments", env_body);
  ASSERT_TRUE(env.contains("id")) << env.dump();
  Json session_body = {{"agent", agent["id"]}, {"environment_id", env["id"]}};
  if (g.contains("session"))
    for (auto it = g["session"].begin(); it != g["session"].end(); ++it) session_body[it.key()] = it.value();
  Json session = h.Call("POST", "/v1/sessions", session_body);
  ASSERT_TRUE(session.contains("id")) << session.dump();
  const std::string sid = session["id"];
  size_t seen = 0;
  int step_no = 0;
  for (const Json& step : g.at("steps")) {
    step_no++;
    SCOPED_TRACE(file.filename().string() + " step " + std::to_string(step_no));
    auto events = h.Events(sid);
    if (step.contains("send")) {
      int status = 0;
      Json body = {{"events", Resolve(step["send"], events)}};
      Json resp = h.Call("POST", "/v1/sessions/" + sid + "/events", body, &status);
      int want_status = step.value("status", 200);
      ASSERT_EQ(status, want_status) << resp.dump();
      if (step.contains("error")) {
        std::string why;
        EXPECT_TRUE(Matches(step["error"], resp["error"], &why)) << why;
      }
    }
    if (step.contains("expect")) {
      events = h.Events(sid);
      std::vector<Json> fresh(events.begin() + static_cast<long>(std::min(seen, events.size())), events.end());
      // Client events already echoed by the send are part of "fresh"; the
      // expectation lists every new event in log order.
      const Json& want = step["expect"];
      std::string listing;
      for (const Json& e : fresh) listing += "  " + e["type"].get<std::string>() + "\n";
      ASSERT_EQ(fresh.size(), want.size()) << "new events were:\n" << listing;
      for (size_t i = 0; i < want.size(); i++) {
        std::string why;
        Json w = Resolve(want[i], events);
        EXPECT_TRUE(Matches(w, fresh[i], &why)) << "event " << i << " (" << fresh[i]["type"] << "): " << why
                                                << "\nnew events were:\n" << listing;
      }
      seen = events.size();
    }
    if (step.value("mark", false)) {
      seen = h.Events(sid).size();
    }
    if (step.contains("session")) {
      Json s = h.Call("GET", "/v1/sessions/" + sid, nullptr);
      std::string why;
      EXPECT_TRUE(Matches(step["session"], s, &why)) << why;
    }
  }
}

std::vector<std::string> GoldenFiles() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(WARREN_GOLDEN_DIR "/engine"))
    if (e.path().extension() == ".json") out.push_back(e.path().string());
  std::sort(out.begin(), out.end());
  return out;
}

INSTANTIATE_TEST_SUITE_P(Engine, GoldenTest, ::testing::ValuesIn(GoldenFiles()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = fs::path(info.param).stem().string();
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace warren::engine
