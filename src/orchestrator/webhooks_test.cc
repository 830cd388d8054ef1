#include "orchestrator/webhooks.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "common/json.h"

namespace warren::orchestrator {
namespace {

constexpr int64_t kSec = 1'000'000;

WebhookKey Key(std::string_view s) {
  auto k = WebhookKey::Parse(s);
  EXPECT_TRUE(k.ok()) << k.status().ToString();
  return *k;
}

// The example of the Standard Webhooks specification (its README and test
// suites use it across languages).
TEST(WebhookSignTest, SpecGoldenVector) {
  WebhookKey k = Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  auto h = SignWebhook(k, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, R"({"test": 2432232314})");
  EXPECT_EQ(h.signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  EXPECT_EQ(h.timestamp, "1614265330");
  EXPECT_EQ(h.id, "msg_p5jXN8AQM9LWM0D4loKWxJek");
}

// Vectors signed by the npm `standardwebhooks` package (Webhook.sign), made
// by tests/conformance/webhooks.test.mjs's generator and committed.
TEST(WebhookSignTest, NodeStandardWebhooksVectors) {
  std::ifstream in(WARREN_WEBHOOK_VECTORS);
  ASSERT_TRUE(in) << WARREN_WEBHOOK_VECTORS;
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = ParseJson(ss.str());
  ASSERT_TRUE(j.ok());
  const Json& v = (*j)["vectors"];
  ASSERT_GE(v.size(), 6u);
  for (const auto& t : v) {
    WebhookKey k = Key(t["key"].get<std::string>());
    int64_t ts = std::stoll(t["timestamp"].get<std::string>());
    EXPECT_EQ(SignWebhook(k, t["id"].get<std::string>(), ts, t["body"].get<std::string>()).signature,
              t["signature"].get<std::string>());
    FakeClock clock(ts * kSec);
    WebhookVerifier ver({k}, &clock);
    EXPECT_TRUE(ver.Verify({t["id"], t["timestamp"], t["signature"]}, t["body"].get<std::string>()).ok());
  }
}

TEST(WebhookKeyTest, ParseAndRoundTrip) {
  EXPECT_FALSE(WebhookKey::Parse("whsec_").ok());
  EXPECT_FALSE(WebhookKey::Parse("whsec_not*base64").ok());
  EXPECT_FALSE(WebhookKey::Parse("whsec_abcde").ok());  // 5 chars: not a base64 length
  WebhookKey g = WebhookKey::Generate();
  EXPECT_EQ(g.raw().size(), 32u);
  EXPECT_EQ(g.ToString().rfind("whsec_", 0), 0u);
  EXPECT_EQ(Key(g.ToString()).raw(), g.raw());
  // Bare base64 (no prefix) and missing padding are accepted.
  EXPECT_EQ(Key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").raw(), Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").raw());
  std::string out;
  for (std::string s : {"", "a", "ab", "abc", "abcd", "\xff\x00\x10"}) {
    ASSERT_TRUE(Base64Decode(Base64Encode(s), &out));
    EXPECT_EQ(out, s);
  }
  EXPECT_EQ(Base64Encode("ab"), "YWI=");
}

class VerifierTest : public ::testing::Test {
 protected:
  FakeClock clock_{1'780'000'000 * kSec};
  WebhookKey key_ = Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  int64_t Now() const { return clock_.NowMicros() / kSec; }
};

TEST_F(VerifierTest, AcceptsThenRefusesReplayUntilItExpires) {
  WebhookVerifier v({key_}, &clock_);
  std::string body = R"({"type":"event"})";
  auto h = SignWebhook(key_, "msg_1", Now(), body);
  ASSERT_TRUE(v.Verify(h, body).ok());
  Status again = v.Verify(h, body);
  EXPECT_EQ(again.code(), Code::kConflict);
  EXPECT_EQ(again.detail_code(), webhook_error::kReplay);
  // The same id re-signed with a fresh timestamp is still a replay (the
  // sender's retries reuse the id: at-least-once delivery, deduplicated).
  clock_.Advance(60 * kSec);
  EXPECT_EQ(v.Verify(SignWebhook(key_, "msg_1", Now(), body), body).detail_code(), webhook_error::kReplay);
  // After twice the tolerance the id is forgotten; the old delivery is then
  // refused by its timestamp, a fresh one goes through.
  clock_.Advance(600 * kSec);
  EXPECT_EQ(v.Verify(h, body).detail_code(), webhook_error::kStaleTimestamp);
  EXPECT_EQ(v.remembered(), 0u);
  EXPECT_TRUE(v.Verify(SignWebhook(key_, "msg_1", Now(), body), body).ok());
}

TEST_F(VerifierTest, StaleAndFutureTimestampsRefused) {
  WebhookVerifier v({key_}, &clock_);
  std::string body = "{}";
  EXPECT_TRUE(v.Verify(SignWebhook(key_, "a", Now() - 300, body), body).ok()) << "edge of the window";
  EXPECT_TRUE(v.Verify(SignWebhook(key_, "b", Now() + 300, body), body).ok());
  Status old = v.Verify(SignWebhook(key_, "c", Now() - 301, body), body);
  EXPECT_EQ(old.code(), Code::kUnauthenticated);
  EXPECT_EQ(old.detail_code(), webhook_error::kStaleTimestamp);
  EXPECT_EQ(v.Verify(SignWebhook(key_, "d", Now() + 301, body), body).detail_code(), webhook_error::kStaleTimestamp);
  WebhookVerifier narrow({key_}, &clock_, {.tolerance = std::chrono::seconds(10)});
  EXPECT_EQ(narrow.Verify(SignWebhook(key_, "e", Now() - 11, body), body).detail_code(),
            webhook_error::kStaleTimestamp);
}

TEST_F(VerifierTest, BadSignaturesRefusedAndNotRemembered) {
  WebhookVerifier v({key_}, &clock_);
  std::string body = R"({"a":1})";
  auto h = SignWebhook(key_, "msg_x", Now(), body);
  auto bad = [&](WebhookHeaders hh, std::string_view b) {
    Status s = v.Verify(hh, b);
    EXPECT_EQ(s.code(), Code::kUnauthenticated) << s.ToString();
    EXPECT_EQ(s.detail_code(), webhook_error::kBadSignature) << s.ToString();
  };
  bad(h, R"({"a":2})");                                                 // body changed
  bad({h.id + "y", h.timestamp, h.signature}, body);                    // id changed
  bad({h.id, std::to_string(Now() + 1), h.signature}, body);            // timestamp changed
  bad({h.id, h.timestamp, "v1a," + h.signature.substr(3)}, body);       // other scheme
  bad({h.id, h.timestamp, "v1," + h.signature.substr(4)}, body);        // truncated
  bad(SignWebhook(WebhookKey::Generate(), h.id, Now(), body), body);    // other key
  EXPECT_EQ(v.remembered(), 0u) << "unauthenticated deliveries never enter the replay cache";
  // Several signatures: one valid among others is enough (rotation on the
  // sender's side), and so is a second configured key (ours).
  ASSERT_TRUE(v.Verify({h.id, h.timestamp, "v1,AAAA v2,xyz " + h.signature}, body).ok());
  WebhookKey next = WebhookKey::Generate();
  WebhookVerifier rot({next, key_}, &clock_);
  EXPECT_TRUE(rot.Verify(SignWebhook(key_, "r1", Now(), body), body).ok());
  EXPECT_TRUE(rot.Verify(SignWebhook(next, "r2", Now(), body), body).ok());
}

TEST_F(VerifierTest, MalformedHeaders) {
  WebhookVerifier v({key_}, &clock_);
  auto h = SignWebhook(key_, "m", Now(), "");
  for (const WebhookHeaders& hh : std::vector<WebhookHeaders>{{"", h.timestamp, h.signature},
                                                              {h.id, "", h.signature},
                                                              {h.id, h.timestamp, ""},
                                                              {h.id, "12x", h.signature},
                                                              {h.id, "-5", h.signature},
                                                              {std::string(300, 'i'), h.timestamp, h.signature}}) {
    Status s = v.Verify(hh, "");
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_EQ(s.detail_code(), webhook_error::kMalformed);
  }
}

TEST_F(VerifierTest, ReplayCacheIsBoundedAndRefusesRatherThanForgets) {
  WebhookVerifier v({key_}, &clock_, {.max_remembered_ids = 3});
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(v.Verify(SignWebhook(key_, "id" + std::to_string(i), Now(), ""), "").ok());
  Status full = v.Verify(SignWebhook(key_, "id3", Now(), ""), "");
  EXPECT_EQ(full.code(), Code::kResourceExhausted);
  EXPECT_EQ(full.detail_code(), webhook_error::kReplayCacheFull);
  EXPECT_EQ(v.Verify(SignWebhook(key_, "id0", Now(), ""), "").detail_code(), webhook_error::kReplay);
  clock_.Advance(601 * kSec);  // the entries expire; room again
  EXPECT_TRUE(v.Verify(SignWebhook(key_, "id3", Now(), ""), "").ok());
  EXPECT_EQ(v.remembered(), 1u);
}

}  // namespace
}  // namespace warren::orchestrator
