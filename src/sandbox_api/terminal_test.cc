// Terminal ticket rules (terminal.h): single use, 30 s, bound to the
// sandbox, bounded in number. The WebSocket bridge to a real PTY is tested
// against a real sandbox in tests/conformance/terminal.test.mjs.
#include "sandbox_api/terminal.h"

#include <gtest/gtest.h>

namespace warren::sandbox_api {
namespace {

TerminalSpec Spec(const std::string& id, const std::string& name = "") {
  TerminalSpec s;
  s.sandbox_id = id;
  s.sandbox_name = name;
  s.pty.cols = 120;
  s.pty.rows = 40;
  s.pty.argv = {"/bin/sh"};
  return s;
}

TEST(TerminalTickets, SingleUseAndCarriesTheSpec) {
  FakeClock clock;
  TerminalTickets t(&clock);
  auto issued = t.Issue(Spec("sb_1"));
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(issued->ticket.rfind("wtt_", 0), 0u);
  EXPECT_EQ(issued->ticket.size(), 44u);
  EXPECT_EQ(issued->expires_at_micros, clock.NowMicros() + 30'000'000);
  auto spec = t.Redeem(issued->ticket, "sb_1");
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->pty.cols, 120);
  EXPECT_EQ(spec->pty.rows, 40);
  EXPECT_EQ(spec->pty.argv, std::vector<std::string>{"/bin/sh"});
  auto again = t.Redeem(issued->ticket, "sb_1");
  EXPECT_EQ(again.status().code(), Code::kUnauthenticated);
  EXPECT_EQ(t.outstanding(), 0u);
}

TEST(TerminalTickets, ExpiresAfterThirtySeconds) {
  FakeClock clock;
  TerminalTickets t(&clock);
  auto a = t.Issue(Spec("sb_1"));
  auto b = t.Issue(Spec("sb_1"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->ticket, b->ticket);
  clock.Advance(29'999'999);
  EXPECT_TRUE(t.Redeem(a->ticket, "sb_1").ok());
  clock.Advance(1);
  auto late = t.Redeem(b->ticket, "sb_1");
  EXPECT_EQ(late.status().code(), Code::kUnauthenticated);
  EXPECT_NE(late.status().message().find("expired"), std::string::npos);
}

TEST(TerminalTickets, BoundToItsSandboxAndConsumedByAWrongOne) {
  FakeClock clock;
  TerminalTickets t(&clock);
  auto a = t.Issue(Spec("sb_1", "web"));
  ASSERT_TRUE(a.ok());
  auto wrong = t.Redeem(a->ticket, "sb_2");
  EXPECT_EQ(wrong.status().code(), Code::kUnauthenticated);
  // A guess at the right sandbox afterwards finds nothing.
  EXPECT_EQ(t.Redeem(a->ticket, "sb_1").status().code(), Code::kUnauthenticated);
  // The sandbox's name works like its id.
  auto b = t.Issue(Spec("sb_1", "web"));
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(t.Redeem(b->ticket, "web").ok());
  EXPECT_EQ(t.Redeem("wtt_made_up", "sb_1").status().code(), Code::kUnauthenticated);
}

TEST(TerminalTickets, OutstandingTicketsAreBoundedAndExpiredOnesFreed) {
  FakeClock clock;
  TerminalTickets t(&clock);
  for (size_t i = 0; i < TerminalTickets::kMaxOutstanding; i++) ASSERT_TRUE(t.Issue(Spec("sb_1")).ok());
  EXPECT_EQ(t.Issue(Spec("sb_1")).status().code(), Code::kResourceExhausted);
  clock.Advance(30'000'001);
  EXPECT_TRUE(t.Issue(Spec("sb_1")).ok());
  EXPECT_EQ(t.outstanding(), 1u);
}

}  // namespace
}  // namespace warren::sandbox_api
