#include "sandbox/state.h"

#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>

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

// The record cache reads a file only when it changed, and sees every change
// made behind its back (another process writing or removing a record).
TEST(StateTest, RecordCacheRereadsOnlyChangedFiles) {
  std::string dir = "/tmp/warren-reccache-" + NewId("", 8);
  JsonDir d(dir);
  RecordCache cache(&d);
  EXPECT_TRUE(cache.All().empty());  // no directory yet
  auto rec = [](const std::string& id, const std::string& name, SandboxState st) {
    SandboxRecord r;
    r.id = id;
    r.name = name;
    r.state = st;
    r.id_slot = static_cast<int>(id.back() - '0');
    return r;
  };
  // Written by "another process": straight to the directory.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(d.Put("s" + std::to_string(i), rec("s" + std::to_string(i), "n" + std::to_string(i), SandboxState::kStopped).ToJson()).ok());
  ASSERT_EQ(cache.All().size(), 5u);
  EXPECT_EQ(cache.reads(), 5);
  // Nothing changed: a full scan, a lookup by id and by name read nothing.
  ASSERT_EQ(cache.All().size(), 5u);
  ASSERT_TRUE(cache.Get("s3").ok());
  EXPECT_EQ(*cache.FindByName("n4"), "s4");
  EXPECT_EQ(cache.reads(), 5);
  // Changed behind its back (same size: only the state's letters differ).
  ASSERT_TRUE(d.Put("s2", rec("s2", "n2", SandboxState::kStarted).ToJson()).ok());
  auto all = cache.All();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[2].state, SandboxState::kStarted);
  EXPECT_EQ(cache.reads(), 6);
  ASSERT_TRUE(d.Put("s2", rec("s2", "n2", SandboxState::kStopped).ToJson()).ok());
  EXPECT_EQ(cache.Get("s2")->state, SandboxState::kStopped);
  EXPECT_EQ(cache.reads(), 7);
  // Removed behind its back.
  ASSERT_TRUE(d.Remove("s1").ok());
  EXPECT_EQ(cache.Get("s1").status().code(), Code::kNotFound);
  EXPECT_EQ(cache.All().size(), 4u);
  EXPECT_EQ(cache.FindByName("n1").status().code(), Code::kNotFound);
  // A destroyed record keeps its file (tombstone) but not its name.
  ASSERT_TRUE(cache.Put(rec("s4", "n4", SandboxState::kDestroyed)).ok());
  EXPECT_EQ(cache.FindByName("n4").status().code(), Code::kNotFound);
  // Put caches what it wrote: no read, and the file holds it.
  ASSERT_TRUE(cache.Put(rec("s5", "n5", SandboxState::kStopped)).ok());
  const int64_t before = cache.reads();
  EXPECT_EQ(*cache.FindByName("n5"), "s5");
  EXPECT_EQ(cache.reads(), before);
  EXPECT_EQ((*d.Get("s5"))["name"], "n5");
  ASSERT_TRUE(cache.Remove("s5").ok());
  EXPECT_EQ(d.Get("s5").status().code(), Code::kNotFound);
  // A file that is not a record is skipped by scans and an error by id;
  // a key that is not a plain file name is not found.
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.json", "{not json").ok());
  EXPECT_EQ(cache.All().size(), 4u);
  EXPECT_FALSE(cache.Get("bad").ok());
  EXPECT_NE(cache.Get("bad").status().code(), Code::kNotFound);
  EXPECT_EQ(cache.Get("../" + dir.substr(5) + "/s0").status().code(), Code::kNotFound);
  (void)RemoveTree(dir);
}

// With the shared write counter a scan answers from memory while no other
// cache (another process) wrote since its last walk, and walks again as
// soon as one did, or died half-way through a write.
TEST(StateTest, RecordCacheWalksOnlyAfterAnotherWriter) {
  const std::string dir = "/tmp/warren-recseq-" + NewId("", 8);
  ASSERT_TRUE(MkdirAll(dir).ok());
  JsonDir d(dir + "/sandboxes");
  const std::string seq = dir + "/records.seq";
  RecordCache a(&d, seq), b(&d, seq);
  auto rec = [](const std::string& id) {
    SandboxRecord r;
    r.id = id;
    r.name = "n" + id;
    r.state = SandboxState::kStopped;
    return r;
  };
  ASSERT_TRUE(a.Put(rec("1")).ok());
  EXPECT_EQ(a.All().size(), 1u);  // walks
  const int64_t w = a.walks();
  EXPECT_EQ(a.All().size(), 1u);
  EXPECT_EQ(*a.FindByName("n1"), "1");
  ASSERT_TRUE(a.Put(rec("2")).ok());  // its own write: still from memory
  EXPECT_EQ(a.All().size(), 2u);
  EXPECT_EQ(*a.FindByName("n2"), "2");
  EXPECT_EQ(a.walks(), w);
  ASSERT_TRUE(b.Put(rec("3")).ok());  // another writer
  EXPECT_EQ(*a.FindByName("n3"), "3");
  EXPECT_EQ(a.walks(), w + 1);
  ASSERT_TRUE(b.Remove("1").ok());
  EXPECT_EQ(a.FindByName("n1").status().code(), Code::kNotFound);
  EXPECT_EQ(a.walks(), w + 2);
  EXPECT_EQ(a.All().size(), 2u);
  EXPECT_EQ(a.walks(), w + 2);
  // A writer that bumped the counter and died before its second bump.
  {
    UniqueFd fd(::open(seq.c_str(), O_RDWR | O_CLOEXEC));
    ASSERT_TRUE(fd.valid());
    uint64_t v = 0;
    ASSERT_EQ(::pread(fd.get(), &v, sizeof(v), 0), static_cast<ssize_t>(sizeof(v)));
    ++v;
    ASSERT_EQ(::pwrite(fd.get(), &v, sizeof(v), 0), static_cast<ssize_t>(sizeof(v)));
  }
  EXPECT_EQ(a.All().size(), 2u);
  EXPECT_EQ(a.walks(), w + 3);
  EXPECT_EQ(a.All().size(), 2u);
  EXPECT_EQ(a.walks(), w + 3);
  (void)RemoveTree(dir);
}

// Keyset pages: every record present throughout is returned exactly once,
// in (created_at, id) order, while records are added and removed between
// pages, by this cache and by another writer (which makes the next page
// walk); with no other writer a page is answered from the index.
TEST(StateTest, RecordCachePagesInKeysetOrder) {
  const std::string dir = "/tmp/warren-recpage-" + NewId("", 8);
  ASSERT_TRUE(MkdirAll(dir).ok());
  JsonDir d(dir + "/sandboxes");
  const std::string seq = dir + "/records.seq";
  RecordCache a(&d, seq), other(&d, seq);
  auto rec = [](const std::string& id, int64_t t) {
    SandboxRecord r;
    r.id = id;
    r.name = "n" + id;
    r.created_at = t;
    r.state = SandboxState::kStopped;
    return r;
  };
  // 60 records; ids not in creation order, and pairs sharing a created_at
  // (ordered by id then).
  std::map<std::string, int64_t> live;
  for (int i = 0; i < 60; ++i) {
    const std::string id = "r" + std::to_string((i * 37) % 60 + 100);
    const int64_t t = 1000 + (i / 2) * 10;
    ASSERT_TRUE(a.Put(rec(id, t)).ok());
    live[id] = t;
  }
  EXPECT_TRUE(a.Page(std::nullopt, 0).empty());
  std::vector<RecordKey> seen;
  std::set<std::string> removed_ahead, added_ahead;
  std::optional<RecordKey> after;
  int page_no = 0;
  for (;; ++page_no) {
    auto page = a.Page(after, 7);
    for (const auto& r : page) seen.push_back(RecordKey{r.created_at, r.id});
    if (page.size() < 7) break;
    after = RecordKey{page.back().created_at, page.back().id};
    // Between pages: one record ahead of the cursor goes, one already
    // listed goes, one is added ahead and one behind the cursor.
    RecordCache& w = page_no % 2 == 0 ? a : other;
    for (const auto& [id, t] : live) {
      if (*after < RecordKey{t, id}) {
        ASSERT_TRUE(w.Remove(id).ok());
        removed_ahead.insert(id);
        live.erase(id);
        break;
      }
    }
    for (const auto& r : page) {
      if (r.id[0] != 'r') continue;
      ASSERT_TRUE(w.Remove(r.id).ok());
      live.erase(r.id);
      break;
    }
    const std::string ahead = "z" + std::to_string(page_no), behind = "b" + std::to_string(page_no);
    ASSERT_TRUE(w.Put(rec(ahead, after->created_at + 1)).ok());
    added_ahead.insert(ahead);
    ASSERT_TRUE(w.Put(rec(behind, after->created_at - 1)).ok());
  }
  ASSERT_GT(page_no, 5);
  // Strictly increasing: nothing twice, nothing out of order.
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_TRUE(seen[i - 1] < seen[i]) << i;
  std::set<std::string> ids;
  for (const auto& k : seen) ids.insert(k.id);
  for (const auto& id : removed_ahead) EXPECT_EQ(ids.count(id), 0u) << id;
  for (const auto& id : added_ahead) EXPECT_EQ(ids.count(id), 1u) << id;
  for (const auto& k : seen) EXPECT_NE(k.id[0], 'b') << "added behind the cursor: " << k.id;
  // Every original record not removed ahead of the cursor was listed.
  for (int i = 0; i < 60; ++i) {
    const std::string id = "r" + std::to_string(i + 100);
    EXPECT_EQ(ids.count(id), removed_ahead.count(id) ? 0u : 1u) << id;
  }
  // No other writer: pages come from the index, without a walk, and a
  // filter applies before the limit.
  (void)a.Page(std::nullopt, 1);  // brings the cache up to date after `other`
  const int64_t walks = a.walks(), reads = a.reads();
  auto z = a.Page(std::nullopt, 3, [](const SandboxRecord& r) { return r.id[0] == 'z'; });
  ASSERT_EQ(z.size(), 3u);
  EXPECT_EQ(z[0].id, "z0");
  EXPECT_EQ(z[1].id, "z1");
  auto from_mid = a.Page(RecordKey{z[0].created_at, z[0].id}, 1000);
  ASSERT_FALSE(from_mid.empty());
  EXPECT_TRUE((RecordKey{z[0].created_at, z[0].id}) < (RecordKey{from_mid[0].created_at, from_mid[0].id}));
  EXPECT_EQ(a.walks(), walks);
  EXPECT_EQ(a.reads(), reads);
  (void)RemoveTree(dir);
}

// Pages by state come from a per-state index: in (created_at, id) order
// with cursors; pred (labels) applies on top; a record whose state changes
// moves between the states' pages, a removed one leaves them, and writes by
// another cache on the same directory (the shared counter: the next page
// walks) are seen. pred counts the records a page visits: with no other
// writer, only those of the wanted state.
TEST(StateTest, RecordCachePagesByState) {
  const std::string dir = "/tmp/warren-recstate-" + NewId("", 8);
  ASSERT_TRUE(MkdirAll(dir).ok());
  JsonDir d(dir + "/sandboxes");
  const std::string seq = dir + "/records.seq";
  RecordCache a(&d, seq), other(&d, seq);
  auto rec = [](const std::string& id, int64_t t, SandboxState st, const std::string& team) {
    SandboxRecord r;
    r.id = id;
    r.name = "n" + id;
    r.created_at = t;
    r.state = st;
    r.labels["team"] = team;
    return r;
  };
  // 200 stopped, 9 started (3 per created_at tick, ids out of order), labels
  // alternating between two teams.
  for (int i = 0; i < 200; ++i)
    ASSERT_TRUE(a.Put(rec("s" + std::to_string(1000 + i), 10 + i, SandboxState::kStopped, "x")).ok());
  for (int i = 0; i < 9; ++i)
    ASSERT_TRUE(a.Put(rec("g" + std::to_string(108 - i), 500 + i / 3, SandboxState::kStarted, i % 2 ? "y" : "x")).ok());
  (void)a.All();  // one walk: memory is the directory from here on
  auto ids = [](const std::vector<SandboxRecord>& v) {
    std::vector<std::string> out;
    for (const auto& r : v) out.push_back(r.id);
    return out;
  };
  using V = std::vector<std::string>;
  const V started = {"g106", "g107", "g108", "g103", "g104", "g105", "g100", "g101", "g102"};
  int visited = 0;
  auto count = [&](const SandboxRecord&) { ++visited; return true; };
  const int64_t walks = a.walks();
  // Pages of 4 with cursors: every started record once, in order.
  std::vector<std::string> seen;
  std::optional<RecordKey> after;
  for (;;) {
    auto page = a.Page(after, 4, count, SandboxState::kStarted);
    for (const auto& r : page) EXPECT_EQ(r.state, SandboxState::kStarted) << r.id;
    for (const auto& id : ids(page)) seen.push_back(id);
    if (page.size() < 4) break;
    after = RecordKey{page.back().created_at, page.back().id};
  }
  EXPECT_EQ(seen, started);
  EXPECT_EQ(visited, 9);  // none of the 200 stopped ones
  EXPECT_EQ(a.walks(), walks);
  EXPECT_TRUE(a.Page(std::nullopt, 5, nullptr, SandboxState::kPaused).empty());
  EXPECT_EQ(a.Page(std::nullopt, 1000, nullptr, SandboxState::kStopped).size(), 200u);
  // State and label together: the label filters within the state's index.
  auto team_y = [](const SandboxRecord& r) { return r.labels.at("team") == "y"; };
  EXPECT_EQ(ids(a.Page(std::nullopt, 10, team_y, SandboxState::kStarted)), (V{"g107", "g103", "g105", "g101"}));
  EXPECT_EQ(ids(a.Page(RecordKey{500, "g107"}, 2, team_y, SandboxState::kStarted)), (V{"g103", "g105"}));
  EXPECT_TRUE(a.Page(std::nullopt, 10, team_y, SandboxState::kStopped).empty());
  // This cache stops one started record and starts one stopped record,
  // removes one: each moves between (or leaves) the states' pages.
  ASSERT_TRUE(a.Put(rec("g107", 500, SandboxState::kStopped, "y")).ok());
  ASSERT_TRUE(a.Put(rec("s1005", 15, SandboxState::kStarted, "x")).ok());
  ASSERT_TRUE(a.Remove("g103").ok());
  EXPECT_EQ(ids(a.Page(std::nullopt, 100, nullptr, SandboxState::kStarted)),
            (V{"s1005", "g106", "g108", "g104", "g105", "g100", "g101", "g102"}));
  auto stopped = ids(a.Page(std::nullopt, 1000, nullptr, SandboxState::kStopped));
  EXPECT_EQ(stopped.size(), 200u);
  EXPECT_EQ(std::count(stopped.begin(), stopped.end(), "g107"), 1);
  EXPECT_EQ(std::count(stopped.begin(), stopped.end(), "s1005"), 0);
  EXPECT_EQ(a.walks(), walks);
  // Another writer: pauses g106, deletes g100, adds a started record; the
  // next page walks once and sees all of it, and the index is current
  // again for the pages after it.
  ASSERT_TRUE(other.Put(rec("g106", 500, SandboxState::kPaused, "x")).ok());
  ASSERT_TRUE(other.Remove("g100").ok());
  ASSERT_TRUE(other.Put(rec("g200", 600, SandboxState::kStarted, "y")).ok());
  const V after_other = {"s1005", "g108", "g104", "g105", "g101", "g102", "g200"};
  EXPECT_EQ(ids(a.Page(std::nullopt, 100, nullptr, SandboxState::kStarted)), after_other);
  EXPECT_EQ(a.walks(), walks + 1);
  visited = 0;
  EXPECT_EQ(ids(a.Page(std::nullopt, 100, count, SandboxState::kStarted)), after_other);
  EXPECT_EQ(visited, 7);
  EXPECT_EQ(ids(a.Page(std::nullopt, 100, nullptr, SandboxState::kPaused)), (V{"g106"}));
  EXPECT_EQ(ids(a.Page(RecordKey{15, "s1005"}, 2, team_y, SandboxState::kStarted)), (V{"g105", "g101"}));
  EXPECT_EQ(a.walks(), walks + 1);
  // A page across another writer's change, with a cursor and a label: the
  // walk path filters by state too.
  ASSERT_TRUE(other.Put(rec("g101", 501, SandboxState::kStopped, "y")).ok());
  EXPECT_EQ(ids(a.Page(RecordKey{15, "s1005"}, 2, team_y, SandboxState::kStarted)), (V{"g105", "g200"}));
  EXPECT_EQ(a.walks(), walks + 2);
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
