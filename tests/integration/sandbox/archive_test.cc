// Root integration tests: archive/restore (what a round trip keeps, state
// rules, crash recovery), idle policies (auto-archive, auto-delete) on a
// fake clock, per-sandbox disk quotas (btrfs qgroups) and CRIU detection.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <archive.h>
#include <archive_entry.h>

#include <array>

#include "harness.h"
#include "sandbox/archive.h"

namespace warren::sandbox::testing {
namespace {

constexpr int64_t kMiB = 1 << 20;
constexpr int64_t kMinute = 60LL * 1000000;

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

struct StatOf {
  uint32_t mode = 0, uid = 0, gid = 0;
  int64_t size = 0, blocks = 0;
  ino_t ino = 0;
  nlink_t nlink = 0;
};

StatOf LStat(const std::string& p) {
  struct stat st;
  StatOf s;
  EXPECT_EQ(lstat(p.c_str(), &st), 0) << p;
  s.mode = st.st_mode;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  s.size = st.st_size;
  s.blocks = st.st_blocks;
  s.ino = st.st_ino;
  s.nlink = st.st_nlink;
  return s;
}

// Writes a tar.zst with the given {name, "file"|"symlink", data or target}
// entries, as an attacker who altered an archive would.
void WriteRawArchive(const std::string& file, const std::vector<std::array<std::string, 3>>& entries) {
  struct archive* a = archive_write_new();
  archive_write_add_filter_zstd(a);
  archive_write_set_format_pax(a);
  ASSERT_EQ(archive_write_open_filename(a, file.c_str()), ARCHIVE_OK);
  for (const auto& [name, kind, data] : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    if (kind == "symlink") {
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_symlink(e, data.c_str());
    } else {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    if (kind == "file") archive_write_data(a, data.data(), data.size());
    archive_entry_free(e);
  }
  archive_write_close(a);
  archive_write_free(a);
}

// Overwrites the persisted record of `id` with `state` (what a process that
// died mid-transition leaves behind).
void ForceState(const std::string& data_dir, const std::string& id, const std::string& state) {
  JsonDir dir(data_dir + "/sandboxes");
  auto j = dir.Get(id);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  (*j)["prev_state"] = (*j)["state"];
  (*j)["state"] = state;
  ASSERT_TRUE(dir.Put(id, *j).ok());
}

TEST_F(RuntimeTest, ArchiveRestoreRoundTrip) {
  auto sb = MustCreate();
  ASSERT_EQ(sb.state, SandboxState::kStarted);
  // Inside the sandbox: owners and modes as the sandbox sees them.
  auto r = Sh(sb.id,
              "mkdir -p /home/u && echo owned > /home/u/f && chown 1000:1001 /home/u/f && chmod 4750 /home/u/f && "
              "echo data > /root/data.txt && chmod 0640 /root/data.txt && ln /root/data.txt /root/hard && "
              "ln -s ../etc/passwd /root/link && mkdir -m 1777 /root/sticky");
  ASSERT_EQ(r.exit_code, 0) << r.stderr_data;
  const std::string root = rt_->RootfsPath(sb.id);
  // From the host: an xattr and a 100 MiB sparse file with data at both ends.
  ASSERT_EQ(setxattr((root + "/root/data.txt").c_str(), "user.warren", "v1", 2, 0), 0);
  {
    UniqueFd fd(open((root + "/root/sparse").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
    ASSERT_TRUE(fd);
    ASSERT_EQ(pwrite(fd.get(), "head", 4, 0), 4);
    ASSERT_EQ(pwrite(fd.get(), "tail", 4, 100 * kMiB - 4), 4);
  }
  StatOf f0 = LStat(root + "/home/u/f"), d0 = LStat(root + "/root/data.txt"), h0 = LStat(root + "/root/hard"),
         l0 = LStat(root + "/root/link"), s0 = LStat(root + "/root/sticky"), sp0 = LStat(root + "/root/sparse");

  auto a = rt_->Archive(sb.id);  // from started: stops first
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->state, SandboxState::kArchived);
  EXPECT_FALSE(Exists(root)) << "archive must free the subvolume";
  const std::string archive = data_dir_ + "/archives/" + sb.id + ".tar.zst";
  ASSERT_TRUE(Exists(archive));
  EXPECT_LT(LStat(archive).size, 4 * kMiB) << "holes must not be stored";
  EXPECT_EQ(a->archive_bytes, LStat(archive).size);
  EXPECT_EQ(rt_->Get(sb.id)->state, SandboxState::kArchived);

  // Archived: file API, exec and fork fail clearly.
  EXPECT_EQ(rt_->Files(sb.id).status().code(), Code::kFailedPrecondition);
  ExecRequest req;
  req.argv = {"true"};
  EXPECT_EQ(rt_->Exec(sb.id, req).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(rt_->Fork(sb.id, 1).status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(rt_->Archive(sb.id).ok());  // idempotent

  auto back = rt_->Restore(sb.id);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->state, SandboxState::kStopped);
  EXPECT_FALSE(Exists(archive));
  StatOf f1 = LStat(root + "/home/u/f"), d1 = LStat(root + "/root/data.txt"), h1 = LStat(root + "/root/hard"),
         l1 = LStat(root + "/root/link"), s1 = LStat(root + "/root/sticky"), sp1 = LStat(root + "/root/sparse");
  // On-disk owners stay in 0..65535 (the idmapped rootfs's view).
  EXPECT_EQ(f1.uid, 1000u);
  EXPECT_EQ(f1.gid, 1001u);
  EXPECT_EQ(f1.mode, f0.mode);
  EXPECT_EQ(f1.mode & 07777, 04750u);
  EXPECT_EQ(d1.mode & 07777, 0640u);
  EXPECT_EQ(s1.mode, s0.mode);
  EXPECT_EQ(d1.ino, h1.ino) << "hardlink kept";
  EXPECT_EQ(d1.nlink, 2u);
  EXPECT_EQ(d0.nlink, h0.nlink);
  EXPECT_TRUE(S_ISLNK(l1.mode));
  EXPECT_EQ(l1.size, l0.size);
  char target[64] = {};
  ASSERT_GT(readlink((root + "/root/link").c_str(), target, sizeof(target) - 1), 0);
  EXPECT_STREQ(target, "../etc/passwd");
  char xv[16] = {};
  EXPECT_EQ(getxattr((root + "/root/data.txt").c_str(), "user.warren", xv, sizeof(xv)), 2);
  EXPECT_STREQ(xv, "v1");
  EXPECT_EQ(sp1.size, 100 * kMiB);
  EXPECT_EQ(sp1.size, sp0.size);
  EXPECT_LT(sp1.blocks * 512, 4 * kMiB) << "sparse file must stay sparse";

  // It starts and works: contents, and ids as the sandbox sees them.
  auto st = rt_->Start(sb.id);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  auto r2 = Sh(sb.id,
               "cat /root/hard /home/u/f; stat -c '%u:%g %a' /home/u/f; head -c 4 /root/sparse; "
               "tail -c 4 /root/sparse; echo; head -1 /root/link; echo new > /root/new && cat /root/new");
  EXPECT_EQ(r2.exit_code, 0) << r2.stderr_data;
  EXPECT_EQ(r2.stdout_data, "data\nowned\n1000:1001 4750\nheadtail\nroot:x:0:0:root:/root:/bin/sh\nnew\n");
}

TEST_F(RuntimeTest, StartRestoresArchivedAndDeleteRemovesArchive) {
  auto sb = MustCreate();
  ASSERT_EQ(Sh(sb.id, "echo kept > /root/k").exit_code, 0);
  ASSERT_TRUE(rt_->Archive(sb.id).ok());
  auto st = rt_->Start(sb.id);
  ASSERT_TRUE(st.ok()) << st.status().ToString();
  EXPECT_EQ(st->state, SandboxState::kStarted);
  EXPECT_EQ(Sh(sb.id, "cat /root/k").stdout_data, "kept\n");

  ASSERT_TRUE(rt_->Pause(sb.id).ok());
  auto from_paused = rt_->Archive(sb.id);  // a paused sandbox is stopped first too
  ASSERT_TRUE(from_paused.ok()) << from_paused.status().ToString();
  EXPECT_EQ(from_paused->state, SandboxState::kArchived);
  EXPECT_FALSE(Exists(rt_->RootfsPath(sb.id)));
  const std::string archive = data_dir_ + "/archives/" + sb.id + ".tar.zst";
  ASSERT_TRUE(Exists(archive));
  EXPECT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_FALSE(Exists(archive));
  EXPECT_EQ(rt_->Get(sb.id).status().code(), Code::kNotFound);
  // Restore of something not archived is a no-op; of nothing, NotFound.
  auto other = MustCreate();
  EXPECT_TRUE(rt_->Restore(other.id).ok());
  EXPECT_EQ(rt_->Restore(sb.id).status().code(), Code::kNotFound);
}

TEST_F(RuntimeTest, ExtractRefusesEscapes) {
  // An altered archive must not write outside the rootfs it is restored into.
  std::string dst = data_dir_ + "/dst", outside = data_dir_ + "/outside", file = data_dir_ + "/evil.tar.zst";
  ASSERT_TRUE(MkdirAll(dst).ok());
  ASSERT_TRUE(MkdirAll(outside).ok());
  WriteRawArchive(file, {{"../evil", "file", "x"}});
  EXPECT_EQ(ExtractTreeArchive(file, dst, kIdRangeSize).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(Exists(data_dir_ + "/evil"));
  WriteRawArchive(file, {{"/abs-evil", "file", "x"}});
  EXPECT_EQ(ExtractTreeArchive(file, dst, kIdRangeSize).status().code(), Code::kInvalidArgument);
  EXPECT_FALSE(Exists("/abs-evil"));
  // A symlink planted first, then a file "through" it.
  WriteRawArchive(file, {{"link", "symlink", outside}, {"link/x", "file", "x"}});
  EXPECT_FALSE(ExtractTreeArchive(file, dst, kIdRangeSize).ok());
  EXPECT_FALSE(Exists(outside + "/x"));
}

TEST_F(RuntimeTest, ExtractRejectsIdsOutsideTheRange) {
  // An archive whose files are owned by a host id (not 0..65535) must not be
  // restored into a sandbox rootfs.
  std::string src = data_dir_ + "/src", dst = data_dir_ + "/dst", file = data_dir_ + "/bad.tar.zst";
  ASSERT_TRUE(MkdirAll(src).ok());
  ASSERT_TRUE(MkdirAll(dst).ok());
  ASSERT_TRUE(WriteStringToFile(src + "/f", "x").ok());
  ASSERT_EQ(chown((src + "/f").c_str(), 70000, 70000), 0);
  ASSERT_TRUE(WriteTreeArchive(src, file).ok());
  auto r = ExtractTreeArchive(file, dst, kIdRangeSize);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
}

TEST_F(RuntimeTest, RecoverUndoesOrFinishesArchiveAndRestore) {
  CreateOptions o;
  o.start = false;
  auto a = MustCreate(o);
  auto b = MustCreate(o);
  auto c = MustCreate(o);
  ASSERT_TRUE(rt_->Files(a.id)->WriteFile("/root/a", "A").ok());
  // a: died while writing the archive: record "archiving", a partial temp
  // file, subvolume still there -> back to stopped, temp file gone.
  ForceState(data_dir_, a.id, "archiving");
  std::string tmp = data_dir_ + "/archives/" + a.id + ".tar.zst.tmp";
  ASSERT_TRUE(WriteStringToFile(tmp, "partial").ok());
  // b: died after the subvolume was deleted -> finish: archived.
  ASSERT_TRUE(rt_->Archive(b.id).ok());
  ForceState(data_dir_, b.id, "archiving");
  // c: died while extracting: record "restoring", a half-made rootfs ->
  // back to archived, the half-made rootfs removed.
  ASSERT_TRUE(rt_->Archive(c.id).ok());
  ForceState(data_dir_, c.id, "restoring");
  ASSERT_TRUE(MkdirAll(rt_->RootfsPath(c.id) + "/half").ok());
  // A stray archive nobody owns.
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/archives/sbx_gone.tar.zst", "x").ok());

  auto rep = rt_->Recover();
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_EQ(rep->orphan_archives, 1);
  EXPECT_EQ(rt_->Get(a.id)->state, SandboxState::kStopped);
  EXPECT_FALSE(Exists(tmp));
  EXPECT_FALSE(Exists(data_dir_ + "/archives/" + a.id + ".tar.zst"));
  EXPECT_EQ(*rt_->Files(a.id)->ReadFile("/root/a"), "A");
  EXPECT_EQ(rt_->Get(b.id)->state, SandboxState::kArchived);
  EXPECT_EQ(rt_->Get(c.id)->state, SandboxState::kArchived);
  EXPECT_FALSE(Exists(rt_->RootfsPath(c.id)));
  EXPECT_FALSE(Exists(data_dir_ + "/archives/sbx_gone.tar.zst"));
  // Both archives still restore, and the sandboxes run.
  for (const auto& id : {b.id, c.id}) {
    auto s = rt_->Start(id);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    EXPECT_EQ(Sh(id, "echo ok").stdout_data, "ok\n");
  }

  // The same rules apply when a later call finds the transitional record
  // (LoadLocked) rather than Recover().
  ASSERT_TRUE(rt_->Archive(b.id).ok());
  ForceState(data_dir_, b.id, "restoring");
  ASSERT_TRUE(MkdirAll(rt_->RootfsPath(b.id) + "/half").ok());
  EXPECT_EQ(rt_->Get(b.id)->state, SandboxState::kArchived);
  EXPECT_FALSE(Exists(rt_->RootfsPath(b.id)));
}

class ArchiveIdleTest : public RuntimeTest {
 protected:
  void SetUp() override {
    clock_ = &fake_;
    RuntimeTest::SetUp();
  }
  FakeClock fake_{Clock::Real()->NowMicros()};
};

TEST_F(ArchiveIdleTest, AutoArchiveAndAutoDeleteCountFromStop) {
  CreateOptions arch;
  arch.auto_archive_minutes = 10;
  auto a = MustCreate(arch);
  CreateOptions now;
  now.auto_delete_minutes = 0;  // deleted at the first sweep after it stops
  auto b = MustCreate(now);
  CreateOptions both;
  both.auto_archive_minutes = 10;
  both.auto_delete_minutes = 30;
  auto c = MustCreate(both);
  auto d = MustCreate();  // no policies
  CreateOptions chain;
  chain.auto_stop_minutes = 5;
  chain.auto_delete_minutes = 0;
  auto e = MustCreate(chain);
  EXPECT_EQ(rt_->Get(c.id)->auto_archive_minutes, 10);
  EXPECT_EQ(rt_->Get(c.id)->auto_delete_minutes, 30);
  EXPECT_EQ(rt_->Get(d.id)->auto_delete_minutes, kNeverDelete);

  // Running sandboxes are never archived or deleted, however old.
  fake_.Advance(60 * kMinute);
  ASSERT_TRUE(rt_->Exec(e.id, ExecRequest{{"true"}}).ok());  // e stays active for now
  auto rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  EXPECT_TRUE(rep->archived.empty());
  EXPECT_TRUE(rep->deleted.empty());

  for (const auto& id : {a.id, b.id, c.id, d.id}) ASSERT_TRUE(rt_->Stop(id).ok());
  rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->deleted, std::vector<std::string>{b.id});
  EXPECT_EQ(rt_->Get(b.id).status().code(), Code::kNotFound);

  fake_.Advance(9 * kMinute);
  rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->archived.empty());
  // e: idle > 5 min -> stopped and, auto_delete 0, deleted in the same sweep.
  EXPECT_EQ(rep->stopped, std::vector<std::string>{e.id});
  EXPECT_EQ(rep->deleted, std::vector<std::string>{e.id});

  // A file call on a stopped sandbox counts as activity.
  fake_.Advance(30 * 1000000);
  ASSERT_TRUE(rt_->Files(a.id).ok());
  fake_.Advance(90 * 1000000);  // c: 11 min since stop; a: 10.5 since stop, 1.5 since its file call
  rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->archived, std::vector<std::string>{c.id});
  EXPECT_EQ(rt_->Get(c.id)->state, SandboxState::kArchived);
  EXPECT_EQ(rt_->Get(a.id)->state, SandboxState::kStopped);

  fake_.Advance(10 * kMinute);
  rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->archived, std::vector<std::string>{a.id});

  fake_.Advance(10 * kMinute);  // c: 31 min since it stopped, archived or not
  rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->deleted, std::vector<std::string>{c.id});
  EXPECT_FALSE(Exists(data_dir_ + "/archives/" + c.id + ".tar.zst"));
  EXPECT_EQ(rt_->Get(a.id)->state, SandboxState::kArchived);
  EXPECT_EQ(rt_->Get(d.id)->state, SandboxState::kStopped);

  // Bad values are refused.
  CreateOptions bad;
  bad.auto_delete_minutes = -2;
  EXPECT_EQ(rt_->Create(bad).status().code(), Code::kInvalidArgument);
}

// Lines of `btrfs qgroup show` for the pool (level-0 ids as "0/<id>").
std::string QgroupShow(const std::string& pool) {
  std::string out;
  (void)RunCommand({"btrfs", "subvolume", "sync", pool}, nullptr);
  auto rc = RunCommand({"btrfs", "qgroup", "show", "--raw", pool}, &out);
  EXPECT_TRUE(rc.ok() && *rc == 0) << out;
  return out;
}

bool HasQgroup(const std::string& show, uint64_t id) {
  std::string needle = "0/" + std::to_string(id) + " ";
  return show.find("\n" + needle) != std::string::npos || show.rfind(needle, 0) == 0;
}

TEST_F(RuntimeTest, DiskQuotaLimitsWritesAndFollowsTheSandbox) {
  if (!rt_->features().disk_quota) GTEST_SKIP() << rt_->features().disk_quota_reason;
  CreateOptions lim;
  lim.resources.disk_bytes = 64 * kMiB;
  auto a = MustCreate(lim);
  auto b = MustCreate();
  const char* kFill = "dd if=/dev/zero of=/root/big bs=1M count=100 2>&1; rc=$?; sync; echo rc=$rc";

  auto ra = Sh(a.id, kFill);
  EXPECT_EQ(ra.stdout_data.find("rc=0"), std::string::npos) << ra.stdout_data;
  EXPECT_NE(ra.stdout_data.find("quota"), std::string::npos) << ra.stdout_data;  // EDQUOT
  EXPECT_LT(LStat(rt_->RootfsPath(a.id) + "/root/big").size, 64 * kMiB);
  auto rb = Sh(b.id, kFill);
  EXPECT_NE(rb.stdout_data.find("rc=0"), std::string::npos) << rb.stdout_data;
  EXPECT_EQ(LStat(rt_->RootfsPath(b.id) + "/root/big").size, 100 * kMiB);

  auto q = rt_->DiskQuota(a.id);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->limit_bytes, 64 * kMiB);
  EXPECT_EQ(rt_->DiskQuota(b.id)->limit_bytes, 0);

  // Survives stop/start.
  ASSERT_TRUE(rt_->Stop(a.id).ok());
  ASSERT_TRUE(rt_->Start(a.id).ok());
  ra = Sh(a.id, std::string("rm -f /root/big; ") + kFill);
  EXPECT_EQ(ra.stdout_data.find("rc=0"), std::string::npos) << ra.stdout_data;

  // Fork children inherit it.
  ASSERT_EQ(Sh(a.id, "rm -f /root/big").exit_code, 0);
  auto kids = rt_->Fork(a.id, 1);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  const std::string kid = (*kids)[0].id;
  auto qk = rt_->DiskQuota(kid);
  ASSERT_TRUE(qk.ok()) << qk.status().ToString();
  EXPECT_EQ(qk->limit_bytes, 64 * kMiB);
  EXPECT_NE(qk->qgroup, q->qgroup);
  auto rk = Sh(kid, kFill);
  EXPECT_EQ(rk.stdout_data.find("rc=0"), std::string::npos) << rk.stdout_data;
  // ... unless overridden: a bigger limit, or none.
  auto bigger = rt_->Fork(a.id, 1, 256 * kMiB);
  ASSERT_TRUE(bigger.ok()) << bigger.status().ToString();
  EXPECT_EQ(rt_->DiskQuota((*bigger)[0].id)->limit_bytes, 256 * kMiB);
  EXPECT_EQ((*bigger)[0].resources.disk_bytes, 256 * kMiB);
  auto rbig = Sh((*bigger)[0].id, kFill);
  EXPECT_NE(rbig.stdout_data.find("rc=0"), std::string::npos) << rbig.stdout_data;
  auto unlimited = rt_->Fork(a.id, 1, 0);
  ASSERT_TRUE(unlimited.ok()) << unlimited.status().ToString();
  EXPECT_EQ(rt_->DiskQuota((*unlimited)[0].id)->limit_bytes, 0);
  EXPECT_EQ(rt_->Fork(a.id, 1, -5).status().code(), Code::kInvalidArgument);

  // Archive and restore re-apply it.
  ASSERT_TRUE(rt_->Archive(a.id).ok());
  ASSERT_TRUE(rt_->Restore(a.id).ok());
  EXPECT_EQ(rt_->DiskQuota(a.id)->limit_bytes, 64 * kMiB);

  // Delete removes the child's qgroup (at once, or via Recover's sweep once
  // the kernel has cleaned the subvolume).
  const std::string pool = data_dir_ + "/pool";
  EXPECT_TRUE(HasQgroup(QgroupShow(pool), qk->qgroup));
  ASSERT_TRUE(rt_->Delete(kid).ok());
  ASSERT_TRUE(rt_->Recover().ok());
  std::string show = QgroupShow(pool);
  if (HasQgroup(show, qk->qgroup)) {  // the kernel was still cleaning during the first sweep
    ASSERT_TRUE(rt_->Recover().ok());
    show = QgroupShow(pool);
  }
  EXPECT_FALSE(HasQgroup(show, qk->qgroup)) << show;
  // Leave the pool with nothing for the btrfs cleaner to account, so the
  // teardown's unmount does not race a long qgroup commit.
  auto list = rt_->List();
  ASSERT_TRUE(list.ok());
  for (const auto& r : *list) EXPECT_TRUE(rt_->Delete(r.id).ok());
  QgroupShow(pool);
}

TEST_F(RuntimeTest, CopyPoolRefusesDiskLimits) {
  RuntimeOptions o;
  o.data_dir = data_dir_ + "-copy";
  o.pool_kind = "copy";
  o.cgroup_prefix = prefix_ + "-copy";  // a data dir of its own needs a prefix of its own (host_claim.h)
  auto rt = SandboxRuntime::Open(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  EXPECT_FALSE((*rt)->features().disk_quota);
  EXPECT_NE((*rt)->features().disk_quota_reason.find("copy"), std::string::npos);
  CreateOptions lim;
  lim.start = false;
  lim.resources.disk_bytes = 64 * kMiB;
  auto r = (*rt)->Create(lim);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition) << r.status().ToString();
  rt->reset();
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) rmdir((std::string("/sys/fs/cgroup/") + c + "/" + o.cgroup_prefix).c_str());
  (void)RemoveTree(o.data_dir);
}

TEST_F(RuntimeTest, CheckpointNeedsCriu) {
  const Features& f = rt_->features();
  EXPECT_FALSE(f.criu_reason.empty());
  if (!f.criu) GTEST_SKIP() << f.criu_reason;
  EXPECT_EQ(f.criu_reason, "criu check passed");
}

}  // namespace
}  // namespace warren::sandbox::testing
