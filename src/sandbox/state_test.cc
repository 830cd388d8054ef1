#include "sandbox/state.h"

#include <gtest/gtest.h>

#include "common/ids.h"
#include "sandbox/caps.h"
#include "sandbox/seccomp.h"
#include "sandbox/sys.h"
#include "sandbox/userns.h"

namespace warren::sandbox {
namespace {

TEST(StateTest, RecordRoundTrips) {
  SandboxRecord r;
  r.id = "sbx_1";
  r.name = "n";
  r.state = SandboxState::kPaused;
  r.prev_state = SandboxState::kStarted;
  r.id_slot = 7;
  r.init_pid = 1234;
  r.init_start_time = 99;
  r.labels = {{"a", "b"}};
  r.env = {"X=1"};
  r.resources = Resources{0.5, 1 << 20, 10, 0};
  r.volumes = {VolumeMount{"v", "/data", "sub", true}};
  r.parent = "sbx_0";
  r.children = {"sbx_2", "sbx_3"};
  r.auto_archive_minutes = 60;
  r.auto_delete_minutes = 0;
  r.stopped_at = 123;
  r.archive_bytes = 456;
  auto back = SandboxRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), r.ToJson());
  EXPECT_FALSE(SandboxRecord::FromJson(Json{{"state", "started"}}).ok());  // no id
  EXPECT_FALSE(SandboxRecord::FromJson(Json{{"id", "x"}, {"state", "flying"}}).ok());
  // Records written before the idle policies existed: delete = never.
  auto old = SandboxRecord::FromJson(Json{{"id", "x"}, {"state", "stopped"}});
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->auto_delete_minutes, kNeverDelete);
  EXPECT_EQ(old->auto_archive_minutes, 0);
}

TEST(StateTest, TransitionalStates) {
  for (auto s : {SandboxState::kCreating, SandboxState::kStarting, SandboxState::kStopping, SandboxState::kPausing,
                 SandboxState::kResuming, SandboxState::kForking, SandboxState::kDestroying,
                 SandboxState::kArchiving, SandboxState::kRestoring}) {
    EXPECT_TRUE(IsTransitional(s)) << StateName(s);
    EXPECT_EQ(*ParseState(StateName(s)), s);
  }
  for (auto s : {SandboxState::kStarted, SandboxState::kStopped, SandboxState::kPaused, SandboxState::kError,
                 SandboxState::kDestroyed, SandboxState::kArchived}) {
    EXPECT_FALSE(IsTransitional(s)) << StateName(s);
    EXPECT_EQ(*ParseState(StateName(s)), s);
  }
}

TEST(StateTest, JsonDir) {
  std::string dir = "/tmp/warren-jsondir-" + NewId("", 8);
  JsonDir d(dir);
  EXPECT_EQ(d.Get("x").status().code(), Code::kNotFound);
  ASSERT_TRUE(d.Put("b", Json{{"v", 2}}).ok());
  ASSERT_TRUE(d.Put("a", Json{{"v", 1}}).ok());
  EXPECT_EQ(d.Keys(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ((*d.Get("b"))["v"], 2);
  ASSERT_TRUE(d.Remove("a").ok());
  ASSERT_TRUE(d.Remove("a").ok());
  EXPECT_EQ(d.Keys(), std::vector<std::string>{"b"});
  (void)RemoveTree(dir);
}

TEST(UsernsTest, ExclusiveRanges) {
  auto r = AllocateIdRange({0, 1, 3});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->slot, 2);
  EXPECT_EQ(r->host_base(), kFirstHostId + 2 * kIdRangeSize);
  EXPECT_EQ(IdMapLine(*r), "0 " + std::to_string(kFirstHostId + 2 * 65536) + " 65536\n");
  std::set<int> all;
  for (int i = 0; i < kMaxIdSlots; ++i) all.insert(i);
  EXPECT_EQ(AllocateIdRange(all).status().code(), Code::kResourceExhausted);
  // The last range stays below the kernel's invalid id (uint32 max).
  EXPECT_LT(static_cast<uint64_t>(IdRange{kMaxIdSlots - 1}.host_base()) + kIdRangeSize, 0xFFFFFFFFull);
}

TEST(SeccompTest, BuildsDenyList) {
  auto p = SeccompProgram::BuildDefault();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_GT(p->size(), 40u);
  auto names = SeccompProgram::DeniedSyscalls();
  for (const char* must : {"keyctl", "add_key", "bpf", "init_module", "finit_module", "kexec_load", "mount",
                           "unshare", "setns", "open_by_handle_at", "userfaultfd", "perf_event_open"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), must), names.end()) << must;
  }
}

TEST(CapsTest, DefaultSetExcludesDangerousCaps) {
  CapSet d = CapSet::Default();
  for (int cap : {21 /*SYS_ADMIN*/, 19 /*SYS_PTRACE*/, 13 /*NET_RAW*/, 27 /*MKNOD*/, 16 /*SYS_MODULE*/,
                  12 /*NET_ADMIN*/, 17 /*SYS_RAWIO*/}) {
    EXPECT_FALSE(d.Has(cap)) << cap;
  }
  EXPECT_TRUE(d.Has(0));  // CHOWN
  auto parsed = CapSet::FromNames(d.Names());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->mask, d.mask);
  EXPECT_FALSE(CapSet::FromNames({"cap_bogus"}).ok());
}

}  // namespace
}  // namespace warren::sandbox
