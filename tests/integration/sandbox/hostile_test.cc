// The hostile-tenant suite: a sandbox's root is an attacker. Each probe is
// set up so that the operation would succeed if it were allowed, and checks
// the errno or outcome that proves the block (docs/SECURITY.md):
//  - symlink, hardlink and swap races against every host-side path
//    operation on a tree a sandbox can write (volumes and their subpaths,
//    the file API, archive/restore, fork, the idle sweep, delete);
//  - nested btrfs subvolumes, snapshots and qgroup ioctls (disk quota), in
//    the rootfs and in a volume, and a volume's own size (EDQUOT);
//  - builder COPY through links a RUN step planted;
//  - forged signals to pid 1;
//  - host paths read from /proc and /sys, and the whole mount table
//    (mountinfo, mounts) searched for host paths in every pool kind;
//  - a data dir below a 0700 directory (the sandbox ids cannot traverse it).
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "harness.h"
#include "sandbox/state.h"

#ifndef WARREN_ESCAPE_PROBE
#define WARREN_ESCAPE_PROBE ""
#endif

namespace warren::sandbox::testing {
namespace {

constexpr int64_t kMiB = 1 << 20;

bool Exists(const std::string& p) {
  struct stat st;
  return lstat(p.c_str(), &st) == 0;
}

bool HasErrno(const Status& s, int err) { return s.message().find(std::strerror(err)) != std::string::npos; }

class HostileTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // A host file a successful escape could read or clobber, in a host
    // directory the sandbox never sees.
    secret_dir_ = "/tmp/warren-hostile-" + NewId("", 8);
    ASSERT_TRUE(MkdirAll(secret_dir_, 0700).ok());
    secret_ = secret_dir_ + "/secret";
    ASSERT_TRUE(WriteStringToFile(secret_, "host-secret").ok());
  }
  void TearDown() override {
    if (!secret_dir_.empty()) {
      EXPECT_EQ(*ReadFileToString(secret_), "host-secret") << "a host file was modified";
      (void)RemoveTree(secret_dir_);
    }
    RuntimeTest::TearDown();
  }
  SandboxRecord WithProbe(CreateOptions o = {}) {
    auto sb = MustCreate(std::move(o));
    auto fs = rt_->Files(sb.id);
    EXPECT_TRUE(fs.ok());
    if (fs.ok()) {
      EXPECT_TRUE(fs->CopyIn(WARREN_ESCAPE_PROBE, "/usr/bin/probe").ok()) << WARREN_ESCAPE_PROBE;
    }
    return sb;
  }
  ExecResult Probe(const std::string& id, const std::string& attempt, const std::string& arg = "") {
    ExecRequest req;
    req.argv = {"/usr/bin/probe", attempt};
    if (!arg.empty()) req.argv.push_back(arg);
    req.timeout = std::chrono::milliseconds(60000);
    auto r = rt_->Exec(id, req);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : ExecResult{};
  }
  // The probe must report exactly `errname` (e.g. "EPERM").
  void ExpectErrno(const std::string& id, const std::string& attempt, const std::string& errname,
                   const std::string& arg = "") {
    auto r = Probe(id, attempt, arg);
    EXPECT_EQ(r.exit_code, 0) << attempt << ": " << r.stdout_data << r.stderr_data;
    EXPECT_NE(r.stdout_data.find("blocked: " + errname + " "), std::string::npos)
        << attempt << ": " << r.stdout_data << r.stderr_data;
  }
  std::string RootfsOnHost(const std::string& id) const { return data_dir_ + "/pool/sandboxes/" + id; }
  bool PoolIsBtrfs() const {
    struct statfs sf;
    return statfs((data_dir_ + "/pool").c_str(), &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
  }
  std::string secret_dir_, secret_;
};

// --- hole 1: volume subpaths -------------------------------------------

// The original escape: sandbox A plants `rootlink -> /` in a shared volume;
// sandbox B asks for that subpath. The link resolves (so a path-following
// mount would succeed, and did: B got the host's /); it must fail with
// ELOOP instead and B must not start.
TEST_F(HostileTest, VolumeSubpathSymlinkToHostRootIsRefused) {
  CreateOptions a;
  a.volumes = {VolumeMount{"probe", "/probe", "", false}};
  auto sa = MustCreate(a);
  ASSERT_EQ(Sh(sa.id, "ln -s / /probe/rootlink && mkdir -p /probe/d && ln -s " + secret_dir_ +
                          " /probe/d/sec && ln -s d /probe/reldir")
                .exit_code,
            0);
  for (const std::string sub : {"rootlink", "rootlink/etc", "d/sec", "reldir/sec", "reldir"}) {
    CreateOptions b;
    b.volumes = {VolumeMount{"probe", "/hostroot", sub, false}};
    auto r = rt_->Create(b);
    ASSERT_FALSE(r.ok()) << "subpath " << sub << " was mounted";
    EXPECT_TRUE(HasErrno(r.status(), ELOOP)) << sub << ": " << r.status().ToString();
  }
  // Nothing was created on the host through the links.
  EXPECT_FALSE(Exists("/etc/hostroot"));
  EXPECT_EQ(Sh(sa.id, "ls " + secret_dir_ + " 2>&1; echo rc=$?").stdout_data.find("secret"), std::string::npos);
  // A plain subpath still works, with the mode the runtime asked for.
  CreateOptions ok;
  ok.volumes = {VolumeMount{"probe", "/v", "fresh/dir", false}};
  auto sb = MustCreate(ok);
  EXPECT_EQ(Sh(sb.id, "echo hi > /v/f && cat /v/f").stdout_data, "hi\n");
  struct stat st;
  ASSERT_EQ(stat((rt_->VolumeDir("probe") + "/fresh/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
}

// A hardlink inside a volume to a host file cannot be made (the sandbox
// cannot name one), and a volume path that is a file, not a directory, is
// refused rather than mounted.
TEST_F(HostileTest, VolumeSubpathFileAndHardlinkTricks) {
  CreateOptions a;
  a.volumes = {VolumeMount{"probe", "/probe", "", false}};
  auto sa = WithProbe(a);
  // Would succeed for a file the sandbox can name: proves the link call works.
  EXPECT_EQ(Sh(sa.id, "echo x > /probe/own && ln /probe/own /probe/own2 && echo ok").stdout_data, "ok\n");
  EXPECT_NE(Sh(sa.id, "ln " + secret_ + " /probe/stolen").exit_code, 0);
  CreateOptions b;
  b.volumes = {VolumeMount{"probe", "/f", "own", false}};
  auto r = rt_->Create(b);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(HasErrno(r.status(), ENOTDIR)) << r.status().ToString();
}

// The race: while sandbox A keeps swapping a subpath component between a
// directory and a symlink to /, the host repeatedly starts sandbox B with
// that subpath. B must never see the host's root (a marker only the host
// has); each start either mounts the real directory or fails with ELOOP.
TEST_F(HostileTest, VolumeSubpathSwapRaceNeverMountsTheHost) {
  CreateOptions a;
  a.volumes = {VolumeMount{"probe", "/probe", "", false}};
  auto sa = MustCreate(a);
  ASSERT_EQ(Sh(sa.id, "mkdir -p /probe/race/inner && echo vol > /probe/race/inner/mark").exit_code, 0);
  // Runs until the marker file /probe/stop appears.
  ExecRequest swap;
  swap.argv = {"/bin/sh", "-c",
               "cd /probe; while [ ! -e stop ]; do mv race real; ln -s / race; rm race; mv real race; done"};
  swap.timeout = std::chrono::milliseconds(120000);
  std::atomic<bool> swapped{false};
  std::thread swapper([&] {
    auto r = rt_->Exec(sa.id, swap);
    swapped = r.ok();
  });
  CreateOptions b;
  b.volumes = {VolumeMount{"probe", "/v", "race", false}};
  b.start = false;
  auto sb = MustCreate(b);
  int mounted = 0, refused = 0;
  for (int i = 0; i < 25; ++i) {
    auto st = rt_->Start(sb.id);
    if (!st.ok()) {
      EXPECT_TRUE(HasErrno(st.status(), ELOOP) || HasErrno(st.status(), ENOENT)) << st.status().ToString();
      ++refused;
      continue;
    }
    ++mounted;
    auto r = Sh(sb.id, "ls /v; test -e /v" + secret_dir_ + " && echo HOST; cat /v/inner/mark 2>/dev/null");
    EXPECT_EQ(r.stdout_data.find("HOST"), std::string::npos) << "host root mounted: " << r.stdout_data;
    EXPECT_EQ(r.stdout_data.find("proc"), std::string::npos) << "host root mounted: " << r.stdout_data;
    ASSERT_TRUE(rt_->Stop(sb.id, true).ok());
  }
  ASSERT_TRUE(WriteStringToFile(rt_->VolumeDir("probe") + "/stop", "").ok());
  swapper.join();
  EXPECT_TRUE(swapped.load());
  EXPECT_EQ(mounted + refused, 25);
}

// --- the file API -------------------------------------------------------

// Host-side writes through the file API while the sandbox swaps a
// directory for a symlink pointing at the host secret's directory (as the
// host names it): every write lands inside the sandbox.
TEST_F(HostileTest, FileApiSwapRaceStaysInside) {
  auto sa = MustCreate();
  ASSERT_EQ(Sh(sa.id, "mkdir -p /work/d" + secret_dir_).exit_code, 0);
  ExecRequest swap;
  swap.argv = {"/bin/sh", "-c",
               "cd /work; while [ ! -e /stop ]; do mv d real; ln -s /../../../../../../.. d; rm d; mv real d; done"};
  swap.timeout = std::chrono::milliseconds(120000);
  std::thread swapper([&] { (void)rt_->Exec(sa.id, swap); });
  auto fs = rt_->Files(sa.id);
  ASSERT_TRUE(fs.ok());
  for (int i = 0; i < 400; ++i) {
    (void)fs->WriteFile("/work/d" + secret_, "pwned");
    (void)fs->Mkdir("/work/d" + secret_dir_ + "/made", true);
    (void)fs->Chmod("/work/d" + secret_, 0777);
    (void)fs->Delete("/work/d" + secret_dir_ + "/made", true);
  }
  ASSERT_TRUE(fs->WriteFile("/stop", "").ok());
  swapper.join();
  struct stat st;
  ASSERT_EQ(stat(secret_.c_str(), &st), 0);
  EXPECT_NE(st.st_mode & 0777, 0777u);
  EXPECT_FALSE(Exists(secret_dir_ + "/made"));
}

// --- archive / restore, fork, delete and the idle sweep ------------------

TEST_F(HostileTest, ArchiveRestoreKeepsLinksAsLinks) {
  auto sa = MustCreate();
  ASSERT_EQ(Sh(sa.id, "ln -s / /rootlink && ln -s " + secret_ + " /seclink && mkdir -p /data && echo d > /data/f && "
                      "ln /data/f /data/hard && ln -s /data /datalink")
                .exit_code,
            0);
  ASSERT_TRUE(rt_->Stop(sa.id).ok());
  ASSERT_TRUE(rt_->Archive(sa.id).ok());
  ASSERT_TRUE(rt_->Restore(sa.id).ok());
  ASSERT_TRUE(rt_->Start(sa.id).ok());
  EXPECT_EQ(Sh(sa.id, "readlink /rootlink; readlink /seclink; cat /data/hard; stat -c %h /data/f").stdout_data,
            "/\n" + secret_ + "\n" + "d\n2\n");
  auto fs = rt_->Files(sa.id);
  ASSERT_TRUE(fs.ok());
  EXPECT_FALSE(fs->ReadFile("/seclink").ok());  // resolves inside the sandbox, where it does not exist
}

// Builder COPY after a RUN step (hostile code at build time) planted links
// to host directories: the links resolve on the host (to this test's secret
// directory, and to /), so a path-following copy would write there. COPY
// resolves its destination inside the layer being built, so the host is
// untouched; where the link's target does not exist inside the image, the
// step fails instead.
TEST_F(HostileTest, BuilderCopyThroughPlantedLinksStaysInside) {
  std::string ctx = secret_dir_ + "-ctx";
  ASSERT_TRUE(MkdirAll(ctx, 0755).ok());
  ASSERT_TRUE(WriteStringToFile(ctx + "/payload", "pwned").ok());
  const std::string recipe = "FROM builtin:minimal\nRUN ln -s " + secret_dir_ + " /planted && ln -s / /rootlink && mkdir -p /rootlink" +
                             secret_dir_ + "\nCOPY payload /rootlink" + secret_dir_ + "/made\nCOPY payload /planted/secret\n";
  auto snap = rt_->BuildSnapshot("hostile-copy", recipe, ctx);
  EXPECT_FALSE(Exists(secret_dir_ + "/made")) << "COPY wrote into a host directory";
  EXPECT_TRUE(snap.ok()) << snap.status().ToString();
  if (snap.ok()) {
    CreateOptions o;
    o.snapshot = "hostile-copy";
    auto sb = MustCreate(o);
    // Both copies landed inside the image, where its own links lead.
    EXPECT_EQ(Sh(sb.id, "cat " + secret_dir_ + "/made " + secret_dir_ + "/secret").stdout_data, "pwnedpwned");
  }
  (void)RemoveTree(ctx);
}

// Fork and delete do not walk into links, and an overlay/copy pool's
// path-walking delete never follows a symlink (to an absolute host path)
// planted in the rootfs, even while the sandbox swaps it in and out.
TEST_P(PoolTest, DeleteAndForkDoNotFollowPlantedLinks) {
  std::string secret_dir = "/tmp/warren-hostile-" + NewId("", 8);
  ASSERT_TRUE(MkdirAll(secret_dir + "/sub", 0700).ok());
  ASSERT_TRUE(WriteStringToFile(secret_dir + "/sub/secret", "host-secret").ok());
  auto sa = MustCreate();
  ASSERT_EQ(Sh(sa.id, "ln -s " + secret_dir + " /hostlink && mkdir -p /x/y && ln -s " + secret_dir + "/sub /x/y/z")
                .exit_code,
            0);
  auto kids = rt_->Fork(sa.id, 1);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  ExecRequest swap;
  swap.argv = {"/bin/sh", "-c", "while :; do mv /x/y /x/t; ln -s " + secret_dir + " /x/y; rm /x/y; mv /x/t /x/y; done"};
  swap.timeout = std::chrono::milliseconds(120000);
  std::thread swapper([&] { (void)rt_->Exec((*kids)[0].id, swap); });
  std::this_thread::yield();
  ASSERT_TRUE(rt_->Delete((*kids)[0].id).ok());  // deletes while the swap loop runs
  swapper.join();
  ASSERT_TRUE(rt_->Delete(sa.id).ok());
  EXPECT_EQ(*ReadFileToString(secret_dir + "/sub/secret"), "host-secret");
  EXPECT_TRUE(RemoveTree(secret_dir).ok());
}

// Both pools: the rootfs line of a sandbox without volumes names no path of
// the data dir (btrfs: /sandboxes/<id> on the pool device; overlay: layers
// passed as /proc/self/fd/N).
TEST_P(PoolTest, RootfsMountinfoNamesNoDataDir) {
  auto sa = MustCreate();
  auto mi = Sh(sa.id, "cat /proc/self/mountinfo");
  ASSERT_EQ(mi.exit_code, 0);
  EXPECT_EQ(mi.stdout_data.find(data_dir_.substr(data_dir_.rfind('/') + 1)), std::string::npos) << mi.stdout_data;
}

INSTANTIATE_TEST_SUITE_P(Pools, PoolTest, ::testing::Values("", "overlay"), PoolName);

TEST_F(HostileTest, IdleSweepDeleteDoesNotFollowLinks) {
  CreateOptions o;
  o.auto_delete_minutes = 0;
  auto sa = MustCreate(o);
  ASSERT_EQ(Sh(sa.id, "ln -s " + secret_dir_ + " /hostlink && ln -s " + secret_ + " /secfile").exit_code, 0);
  ASSERT_TRUE(rt_->Stop(sa.id).ok());
  auto rep = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(rep.ok()) << rep.status().ToString();
  ASSERT_EQ(rep->deleted.size(), 1u);
  EXPECT_FALSE(rt_->Get(sa.id).ok());
}

// --- hole 2: nested subvolumes and qgroups -------------------------------

TEST_F(HostileTest, BtrfsIoctlsAreRefused) {
  auto sa = WithProbe();
  if (!PoolIsBtrfs()) GTEST_SKIP() << "pool is not btrfs";
  // Each would succeed for the rootfs's owner without the filter (the
  // kernel allows subvolume create/snapshot to the directory's owner, and
  // the sandbox's root owns its rootfs through the idmapped mount).
  ASSERT_EQ(Sh(sa.id, "mkdir -p /tmp/nest").exit_code, 0);
  ExpectErrno(sa.id, "btrfs_subvol_create", "EPERM", "/tmp/nest");
  ExpectErrno(sa.id, "btrfs_snapshot", "EPERM", "/tmp/nest");
  ExpectErrno(sa.id, "btrfs_qgroup_create", "EPERM");
  ExpectErrno(sa.id, "btrfs_qgroup_limit", "EPERM");
  ExpectErrno(sa.id, "btrfs_subvol_setflags", "EPERM");
  EXPECT_FALSE(Exists(RootfsOnHost(sa.id) + "/tmp/nest/nested"));
  EXPECT_FALSE(Exists(RootfsOnHost(sa.id) + "/tmp/nest/snap"));
  // Reflinks share the ioctl type and stay allowed.
  auto r = Probe(sa.id, "reflink");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data;
}

// The disk limit holds: 100 MiB into a 64 MiB sandbox fails however the
// sandbox tries (a plain dir, or a nested subvolume it can no longer make).
TEST_F(HostileTest, DiskLimitCannotBeEscapedWithSubvolumes) {
  if (!PoolIsBtrfs()) GTEST_SKIP() << "pool is not btrfs";
  CreateOptions o;
  o.resources.disk_bytes = 64 * kMiB;
  auto sa = WithProbe(o);
  ExpectErrno(sa.id, "btrfs_subvol_create", "EPERM", "/tmp");
  auto w = Sh(sa.id, "dd if=/dev/zero of=/tmp/big bs=1M count=100 2>&1; sync; echo rc=$?");
  auto q = rt_->DiskQuota(sa.id);
  ASSERT_TRUE(q.ok());
  EXPECT_LE(q->exclusive_bytes, 64 * kMiB + 4 * kMiB) << w.stdout_data;
  EXPECT_EQ(Sh(sa.id, "ls -la /tmp/nested 2>&1 | grep -c 'No such'").stdout_data, "1\n");
}

// A volume's size is a qgroup limit on its own subvolume. The same fill
// succeeds in a volume without a size (so the write would succeed if the
// limit were not there), and fails with EDQUOT in a 16 MiB one; the volume
// holds no more than its limit, and the rest of the pool (the sandbox's
// rootfs, other volumes) is unaffected. Nested subvolumes and snapshots
// inside the volume, which would carry qgroups of their own without a
// limit, are refused (EPERM) as in the rootfs.
TEST_F(HostileTest, VolumeSizeLimitHoldsWithEdquot) {
  if (!PoolIsBtrfs()) GTEST_SKIP() << "volume sizes need a btrfs pool";
  auto made = rt_->CreateVolume("quota", 16 * kMiB);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_TRUE(made->subvolume);
  EXPECT_EQ(made->size_bytes, 16 * kMiB);
  CreateOptions o;
  o.volumes = {VolumeMount{"quota", "/q", "", false}, VolumeMount{"free", "/free", "", false}};
  auto sa = WithProbe(o);
  ASSERT_EQ(sa.state, SandboxState::kStarted) << sa.error;
  // The control: 64 MiB fit in a volume without a size.
  auto ok = Probe(sa.id, "fill", "/free/f");
  EXPECT_EQ(ok.exit_code, 1) << ok.stdout_data << ok.stderr_data;
  EXPECT_NE(ok.stdout_data.find("filled 64 MiB"), std::string::npos) << ok.stdout_data;
  ExpectErrno(sa.id, "fill", "EDQUOT", "/q/f");
  auto q = rt_->GetVolume("quota");
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_LE(q->used_bytes, 16 * kMiB) << "the volume holds more than its size";
  EXPECT_EQ(q->sandboxes, std::vector<std::string>{sa.id});
  // The rest of the pool still takes writes.
  EXPECT_EQ(Sh(sa.id, "dd if=/dev/zero of=/root/after bs=1M count=8 2>/dev/null && rm /q/f && "
                      "echo again > /q/g && cat /q/g")
                .stdout_data,
            "again\n");
  // Nested subvolumes and snapshots in the volume: refused, none made.
  ExpectErrno(sa.id, "btrfs_subvol_create", "EPERM", "/q");
  ExpectErrno(sa.id, "btrfs_snapshot_of", "EPERM", "/q");
  ExpectErrno(sa.id, "btrfs_qgroup_limit", "EPERM");
  EXPECT_FALSE(Exists(rt_->VolumeDir("quota") + "/nested"));
  EXPECT_FALSE(Exists(rt_->VolumeDir("quota") + "/snap"));
  // Deleting a volume a sandbox lists is refused; after the sandbox, it goes
  // with its quota group.
  EXPECT_EQ(rt_->DeleteVolume("quota").code(), Code::kConflict);
  ASSERT_TRUE(rt_->Delete(sa.id).ok());
  ASSERT_TRUE(rt_->DeleteVolume("quota").ok());
  EXPECT_FALSE(Exists(rt_->VolumeDir("quota")));
  EXPECT_EQ(rt_->GetVolume("quota").status().code(), Code::kNotFound);
}

// Subvolumes nested in a rootfs (made by a sandbox under an older runtime)
// no longer make delete fail and stick in "destroying": they are removed
// depth-first, read-only snapshots included, and recovery finishes a
// record left in "destroying".
TEST_F(HostileTest, NestedSubvolumesNeverStickDelete) {
  if (!PoolIsBtrfs()) GTEST_SKIP() << "pool is not btrfs";
  auto make_nested = [&](const std::string& id) {
    std::string root = RootfsOnHost(id);
    UniqueFd tmp(open((root + "/tmp").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(tmp);
    struct btrfs_ioctl_vol_args va;
    memset(&va, 0, sizeof(va));
    strcpy(va.name, "nested");
    ASSERT_EQ(ioctl(tmp.get(), BTRFS_IOC_SUBVOL_CREATE, &va), 0) << strerror(errno);
    ASSERT_TRUE(WriteStringToFile(root + "/tmp/nested/data", "x").ok());
    UniqueFd nested(open((root + "/tmp/nested").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    memset(&va, 0, sizeof(va));
    strcpy(va.name, "deeper");
    ASSERT_EQ(ioctl(nested.get(), BTRFS_IOC_SUBVOL_CREATE, &va), 0) << strerror(errno);
    struct btrfs_ioctl_vol_args_v2 sv;
    memset(&sv, 0, sizeof(sv));
    sv.fd = nested.get();
    sv.flags = BTRFS_SUBVOL_RDONLY;
    strcpy(sv.name, "rosnap");
    ASSERT_EQ(ioctl(tmp.get(), BTRFS_IOC_SNAP_CREATE_V2, &sv), 0) << strerror(errno);
  };
  auto sa = MustCreate();
  make_nested(sa.id);
  Status d = rt_->Delete(sa.id);
  ASSERT_TRUE(d.ok()) << d.ToString();
  EXPECT_FALSE(Exists(RootfsOnHost(sa.id)));
  EXPECT_FALSE(rt_->Get(sa.id).ok());

  // A record stuck in "destroying" by the old failure: recovery finishes it.
  auto sb = MustCreate();
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  make_nested(sb.id);
  auto rec = rt_->Get(sb.id);
  ASSERT_TRUE(rec.ok());
  rec->state = SandboxState::kDestroying;
  ASSERT_TRUE(JsonDir(data_dir_ + "/sandboxes").Put(sb.id, rec->ToJson()).ok());
  rt_.reset();
  auto reopened = Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  rt_ = std::move(*reopened);
  EXPECT_FALSE(Exists(RootfsOnHost(sb.id)));
  EXPECT_EQ(rt_->Get(sb.id).status().code(), Code::kNotFound);
  auto all = rt_->List();
  ASSERT_TRUE(all.ok());
  for (const auto& r : *all) EXPECT_NE(r.id, sb.id);
}

// --- hole 3: forged signals to pid 1 --------------------------------------

TEST_F(HostileTest, ForgedTermToInitIsIgnored) {
  auto sa = WithProbe();
  auto before = rt_->Get(sa.id);
  ASSERT_TRUE(before.ok());
  // Delivered (the syscall succeeds: pid 1 blocks every signal, so it is
  // queued), handled by pid 1, and ignored: nothing forwarded, pid 1 alive.
  for (const char* how : {"forge_term_sigqueue", "forge_term_pidfd"}) {
    auto r = Probe(sa.id, how);
    EXPECT_EQ(r.exit_code, 0) << how << ": " << r.stdout_data << r.stderr_data;
    EXPECT_NE(r.stdout_data.find("ignored"), std::string::npos) << how << ": " << r.stdout_data;
  }
  // The code the host's TERM carries cannot be forged at all.
  ExpectErrno(sa.id, "forge_term_si_user", "EPERM");
  EXPECT_TRUE(ProcessAlive(before->init_pid, before->init_start_time));
  EXPECT_EQ(Sh(sa.id, "echo alive").stdout_data, "alive\n");
  // The host's own TERM still stops it gracefully.
  ASSERT_TRUE(rt_->Stop(sa.id).ok());
  EXPECT_FALSE(ProcessAlive(before->init_pid, before->init_start_time));
}

// --- hole 4: host information in /proc and /sys ---------------------------

TEST_F(HostileTest, HostPathsAreHiddenInProcAndSys) {
  // On the host each of these names host paths or devices.
  ASSERT_FALSE(ReadFileToString("/proc/cmdline")->empty());
  ASSERT_FALSE(LoopsBacking(data_dir_ + "/pool.img").empty() && PoolIsBtrfs());
  auto sa = MustCreate();
  EXPECT_EQ(Sh(sa.id, "cat /proc/cmdline | wc -c").stdout_data, "0\n");
  EXPECT_EQ(Sh(sa.id, "ls -A /sys/block /sys/class/block /sys/dev/block /sys/devices/virtual/block /sys/fs/btrfs "
                      "2>/dev/null | grep -v : | grep -v '^$' | wc -l")
                .stdout_data,
            "0\n");
  EXPECT_EQ(Sh(sa.id, "find /sys -name backing_file 2>/dev/null | wc -l").stdout_data, "0\n");
  // sysfs itself is still there (tools read cpu and memory topology).
  EXPECT_EQ(Sh(sa.id, "test -e /sys/devices/system/cpu/online && echo yes").stdout_data, "yes\n");
  // Without volumes, the mount table names no host path of the data dir.
  auto mi = Sh(sa.id, "cat /proc/self/mountinfo");
  EXPECT_EQ(mi.stdout_data.find(data_dir_), std::string::npos) << mi.stdout_data;
}

// A volume's mount root is printed relative to its filesystem's root: under
// <data dir>/volumes it named the data dir (the marker: this test's unique
// data dir name). In a loop pool the volume lives on the pool filesystem and
// its root reads /volumes/<name>/<subpath>; the volume still works both ways.
TEST_F(HostileTest, VolumeMountinfoNamesNoHostPath) {
  if (rt_->LoopDevice().empty()) GTEST_SKIP() << "volumes hide the host path only in a btrfs loop pool";
  const std::string marker = data_dir_.substr(data_dir_.rfind('/') + 1);
  ASSERT_NE(marker.find("warren-it-"), std::string::npos);
  CreateOptions o;
  o.volumes = {VolumeMount{"mivol", "/data", "sub", false}, VolumeMount{"mivol", "/whole", "", true}};
  auto sa = MustCreate(o);
  ASSERT_EQ(sa.state, SandboxState::kStarted) << sa.error;
  EXPECT_EQ(Sh(sa.id, "echo hi > /data/f && cat /whole/sub/f").stdout_data, "hi\n");
  // The file is in the volume on the host, where VolumeDir says.
  EXPECT_EQ(*ReadFileToString(rt_->VolumeDir("mivol") + "/sub/f"), "hi\n");
  auto mi = Sh(sa.id, "cat /proc/self/mountinfo");
  ASSERT_NE(mi.stdout_data.find(" /data "), std::string::npos) << mi.stdout_data;
  EXPECT_EQ(mi.stdout_data.find(marker), std::string::npos) << mi.stdout_data;
  EXPECT_NE(mi.stdout_data.find(" /volumes/mivol/sub /data "), std::string::npos) << mi.stdout_data;
  EXPECT_NE(mi.stdout_data.find(" /volumes/mivol /whole "), std::string::npos) << mi.stdout_data;
  // Every process's view, not only the reader's own.
  EXPECT_EQ(Sh(sa.id, "cat /proc/1/mountinfo /proc/self/mounts | grep -c " + marker).stdout_data, "0\n");
}

// A volume made under <data dir>/volumes by an older runtime stays there
// (its data is not moved); only its mountinfo line still names the data dir.
TEST_F(HostileTest, LegacyVolumeDirectoryIsStillUsed) {
  ASSERT_TRUE(MkdirAll(data_dir_ + "/volumes/old", 0755).ok());
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/volumes/old/keep", "kept").ok());
  EXPECT_EQ(rt_->VolumeDir("old"), data_dir_ + "/volumes/old");
  CreateOptions o;
  o.volumes = {VolumeMount{"old", "/old", "", true}};
  auto sa = MustCreate(o);
  ASSERT_EQ(sa.state, SandboxState::kStarted) << sa.error;
  EXPECT_EQ(Sh(sa.id, "cat /old/keep").stdout_data, "kept");
}

// Every storage mode this host can run: the sandbox's whole mount table
// (its own /proc/self/mountinfo and /proc/self/mounts, and pid 1's) is
// searched for host paths: the data dir (by its unique name), the directory
// the data dirs live in, and the host's root device. With a btrfs loop pool
// (the default) none appears, volumes included. The overlay and copy pools
// keep their files in directories of the host filesystem, and the kernel
// prints a bind's root relative to its filesystem: exactly the lines
// docs/SECURITY.md lists may show them (volumes; the copy pool's rootfs),
// and no other.
// "native": the data dir on a btrfs filesystem of its own (a loop-mounted
// image made here), where the runtime auto-selects the native btrfs pool.
class MountTableTest : public PoolTest {
 protected:
  void SetUp() override {
    if (GetParam() != "native") return PoolTest::SetUp();
    std::string why = SkipReason();
    if (!why.empty()) GTEST_SKIP() << why;
    native_root_ = "/var/tmp/warren-it-native-" + NewId("", 8);
    ASSERT_TRUE(MkdirAll(native_root_ + "/mnt", 0755).ok());
    const std::string img = native_root_ + "/fs.img";
    {
      UniqueFd fd(open(img.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
      ASSERT_TRUE(fd);
      ASSERT_EQ(ftruncate(fd.get(), 4LL << 30), 0);
    }
    std::string out;
    auto mk = RunCommand({"mkfs.btrfs", "-q", "-f", img}, &out);
    if (!mk.ok() || *mk != 0) GTEST_SKIP() << "no mkfs.btrfs: " << out;
    auto mnt = RunCommand({"mount", "-o", "loop", img, native_root_ + "/mnt"}, &out);
    if (!mnt.ok() || *mnt != 0) GTEST_SKIP() << "cannot loop-mount a btrfs image: " << out;
    mounted_ = true;
    data_root_ = native_root_ + "/mnt";
    RuntimeTest::SetUp();  // pool kind "" (auto): the native btrfs pool
    if (rt_) {
      ASSERT_TRUE(rt_->LoopDevice().empty());
    }
  }
  void TearDown() override {
    RuntimeTest::TearDown();
    if (native_root_.empty()) return;
    if (mounted_ && umount2((native_root_ + "/mnt").c_str(), 0) != 0) {
      EXPECT_EQ(umount2((native_root_ + "/mnt").c_str(), MNT_DETACH), 0) << strerror(errno);
    }
    (void)RemoveTree(native_root_);
  }
  std::string native_root_;
  bool mounted_ = false;
};

std::string HostRootDevice() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string a, b, c, root, mp;
    ls >> a >> b >> c >> root >> mp;
    size_t dash = line.find(" - ");
    if (mp != "/" || dash == std::string::npos) continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string fstype, source;
    rest >> fstype >> source;
    return source.rfind("/dev/", 0) == 0 ? source : "";
  }
  return "";
}

TEST_P(MountTableTest, NamesNoHostPath) {
  const std::string marker = data_dir_.substr(data_dir_.rfind('/') + 1);
  std::vector<std::string> host = {marker, data_root_ + "/", rt_->options().data_dir};
  if (std::string dev = HostRootDevice(); !dev.empty()) host.push_back(dev + " ");
  CreateOptions o;
  o.volumes = {VolumeMount{"mt", "/data", "sub", false}, VolumeMount{"mt", "/whole", "", true}};
  auto sa = MustCreate(o);
  ASSERT_EQ(sa.state, SandboxState::kStarted) << sa.error;
  EXPECT_EQ(Sh(sa.id, "echo hi > /data/f && cat /whole/sub/f").stdout_data, "hi\n");
  // Mount points whose line names a host path, per file.
  std::set<std::string> leaking;
  for (const char* file : {"/proc/self/mountinfo", "/proc/self/mounts", "/proc/1/mountinfo"}) {
    auto r = Sh(sa.id, std::string("cat ") + file);
    ASSERT_EQ(r.exit_code, 0) << file;
    ASSERT_NE(r.stdout_data.find(" /data "), std::string::npos) << file << ": " << r.stdout_data;
    std::istringstream in(r.stdout_data);
    std::string line;
    bool mountinfo = std::string(file).find("mountinfo") != std::string::npos;
    while (std::getline(in, line)) {
      std::istringstream ls(line);
      std::string f[5];
      for (auto& x : f) ls >> x;
      const std::string& mp = mountinfo ? f[4] : f[1];
      for (const auto& h : host) {
        if (line.find(h) != std::string::npos) leaking.insert(mp);
      }
    }
  }
  std::set<std::string> expected;
  if (GetParam() != "") expected = {"/data", "/whole"};  // volumes in <data dir>/volumes
  // The rootfs is a host directory (copy), or a subvolume whose path in the
  // host's btrfs names the data dir (native).
  if (GetParam() == "copy" || GetParam() == "native") expected.insert("/");
  EXPECT_EQ(leaking, expected) << "pool kind \"" << GetParam() << "\"";
}

INSTANTIATE_TEST_SUITE_P(Pools, MountTableTest, ::testing::Values("", "overlay", "copy", "native"), PoolName);

// --- issue 14: a data dir below a 0700 directory --------------------------

class PrivateParentTest : public RuntimeTest {
 protected:
  void SetUp() override {
    std::string why = SkipReason();
    if (!why.empty()) GTEST_SKIP() << why;
    parent_ = "/var/tmp/warren-it-priv-" + NewId("", 8);
    ASSERT_EQ(mkdir(parent_.c_str(), 0700), 0);
    ASSERT_EQ(chmod(parent_.c_str(), 0700), 0);
    data_root_ = parent_;
    RuntimeTest::SetUp();
  }
  void TearDown() override {
    RuntimeTest::TearDown();
    if (!parent_.empty()) rmdir(parent_.c_str());
  }
  std::string parent_;
};

TEST_F(PrivateParentTest, LifecycleWithDataDirBelowA0700Directory) {
  ASSERT_EQ(data_dir_.rfind(parent_ + "/", 0), 0u);
  CreateOptions o;
  o.volumes = {VolumeMount{"vol", "/data", "sub", false}};
  auto sa = MustCreate(o);
  ASSERT_EQ(sa.state, SandboxState::kStarted) << sa.error;
  EXPECT_EQ(Sh(sa.id, "echo hi > /data/f && cat /data/f && id -u").stdout_data, "hi\n0\n");
  auto kids = rt_->Fork(sa.id, 1);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  EXPECT_EQ(Sh((*kids)[0].id, "cat /data/f").stdout_data, "hi\n");
  ASSERT_TRUE(rt_->Stop(sa.id).ok());
  ASSERT_TRUE(rt_->Start(sa.id).ok());
  EXPECT_EQ(Sh(sa.id, "cat /data/f").stdout_data, "hi\n");
  // The 0700 parent keeps its mode: nothing was opened up to make it work.
  struct stat st;
  ASSERT_EQ(stat(parent_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

}  // namespace
}  // namespace warren::sandbox::testing
