// Root integration tests: lifecycle, stop/start, pause/resume, fork, fork
// trees, isolation, resource limits and restart recovery.
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <iostream>
#include <set>

#include "harness.h"

namespace warren::sandbox::testing {
namespace {

using std::chrono::milliseconds;

TEST_P(PoolTest, CreateExecDelete) {
  auto sb = MustCreate();
  ASSERT_EQ(sb.state, SandboxState::kStarted);
  EXPECT_EQ(rt_->features().pool_kind, overlay() ? "overlay" : "btrfs-loop");
  EXPECT_EQ(rt_->features().copy_on_write_fork, !overlay());

  auto r = Sh(sb.id, "echo out; echo err >&2; exit 7");
  EXPECT_EQ(r.exit_code, 7);
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");

  // cwd, env, user.
  ExecRequest req;
  req.argv = {"sh", "-c", "pwd; echo $FOO; id -u; id -g"};
  req.cwd = "/tmp";
  req.env = {"FOO=bar"};
  req.user = "sandbox";
  auto r2 = rt_->Exec(sb.id, req);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->stdout_data, "/tmp\nbar\n1000\n1000\n");
  EXPECT_EQ(r2->exit_code, 0);

  // Streaming and stdin.
  std::string streamed;
  int chunks = 0;
  ExecRequest req3;
  req3.argv = {"sh", "-c", "cat; echo one; sleep 0.1; echo two"};
  req3.stdin_data = "from-stdin\n";
  req3.on_stdout = [&](std::string_view d) {
    streamed.append(d);
    ++chunks;
  };
  auto r3 = rt_->Exec(sb.id, req3);
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(streamed, "from-stdin\none\ntwo\n");
  EXPECT_GE(chunks, 2);

  // Timeout kills the command.
  auto r4 = Sh(sb.id, "sleep 30", milliseconds(300));
  EXPECT_TRUE(r4.timed_out);
  EXPECT_NE(r4.exit_code, 0);

  // Missing command: 127 like a shell.
  ExecRequest req5;
  req5.argv = {"no-such-command"};
  auto r5 = rt_->Exec(sb.id, req5);
  ASSERT_TRUE(r5.ok());
  EXPECT_EQ(r5->exit_code, 127);

  EXPECT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_EQ(rt_->Get(sb.id).status().code(), Code::kNotFound);
  EXPECT_TRUE(rt_->Delete(sb.id).ok());  // idempotent
}

TEST_P(PoolTest, StopStartKeepsFiles) {
  CreateOptions o;
  o.name = "keeper";
  o.labels = {{"team", "a"}};
  auto sb = MustCreate(o);
  EXPECT_EQ(Sh(sb.id, "echo persisted > /root/data.txt; sleep 1000 >/dev/null 2>&1 &").exit_code, 0);
  auto stopped = rt_->Stop("keeper");
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  EXPECT_EQ(stopped->state, SandboxState::kStopped);
  ExecRequest req;
  req.argv = {"true"};
  EXPECT_EQ(rt_->Exec(sb.id, req).status().code(), Code::kFailedPrecondition);
  // Files API works on a stopped sandbox.
  auto fs = rt_->Files(sb.id);
  ASSERT_TRUE(fs.ok());
  EXPECT_EQ(*fs->ReadFile("/root/data.txt"), "persisted\n");
  ASSERT_TRUE(fs->WriteFile("/root/while-stopped.txt", "hello").ok());
  auto started = rt_->Start(sb.id);
  ASSERT_TRUE(started.ok()) << started.status().ToString();
  auto r = Sh(sb.id, "cat /root/data.txt /root/while-stopped.txt; echo; pidof sleep || echo none");
  EXPECT_EQ(r.stdout_data, "persisted\nhello\nnone\n");  // the old sleep is gone
  auto labels = rt_->SetLabels(sb.id, {{"team", "b"}});
  ASSERT_TRUE(labels.ok());
  EXPECT_EQ(rt_->Get("keeper")->labels.at("team"), "b");
  // Stop twice is fine; start twice is fine.
  EXPECT_TRUE(rt_->Stop(sb.id).ok());
  EXPECT_TRUE(rt_->Stop(sb.id).ok());
  EXPECT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_TRUE(rt_->Start(sb.id).ok());
}

TEST_P(PoolTest, StopSendsTermThenKills) {
  auto sb = MustCreate();
  // One process exits cleanly on TERM (leaves a mark), one ignores it. Each
  // marks that its trap is set, and the exec waits for both marks (a fixed
  // sleep could stop the sandbox before a shell set its trap).
  Sh(sb.id,
     "sh -c 'trap \"echo termed > /root/term; exit 0\" TERM; touch /tmp/t1; while true; do sleep 0.05; done' "
     ">/dev/null 2>&1 & sh -c 'trap \"\" TERM; touch /tmp/t2; while true; do sleep 0.05; done' >/dev/null 2>&1 & "
     "while [ ! -e /tmp/t1 ] || [ ! -e /tmp/t2 ]; do sleep 0.01; done");
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(took, milliseconds(900));  // waited out the grace for the stubborn one
  auto fs = rt_->Files(sb.id);
  EXPECT_EQ(*fs->ReadFile("/root/term"), "termed\n");
}

TEST_P(PoolTest, PauseStopsCounterAndResumeContinuesFromMemory) {
  auto sb = MustCreate();
  // Write-then-rename: the freezer may stop the loop between a truncate and
  // a write, and /tmp/c must never be read half-written.
  Sh(sb.id, "sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/c.new; mv /tmp/c.new /tmp/c; sleep 0.02; done' "
            ">/dev/null 2>&1 & while [ ! -e /tmp/c ]; do sleep 0.01; done");
  auto fs = rt_->Files(sb.id);
  ASSERT_TRUE(fs.ok());
  auto paused = rt_->Pause(sb.id);
  ASSERT_TRUE(paused.ok()) << paused.status().ToString();
  EXPECT_EQ(paused->state, SandboxState::kPaused);
  int c1 = std::stoi(Trim(*fs->ReadFile("/tmp/c")));
  EXPECT_GT(c1, 0);
  std::this_thread::sleep_for(milliseconds(400));
  int c2 = std::stoi(Trim(*fs->ReadFile("/tmp/c")));
  EXPECT_EQ(c1, c2) << "counter advanced while paused";
  ExecRequest req;
  req.argv = {"true"};
  EXPECT_EQ(rt_->Exec(sb.id, req).status().code(), Code::kFailedPrecondition);
  ASSERT_TRUE(rt_->Resume(sb.id).ok());
  // Wait for the loop to advance (how soon depends on the machine's load).
  int c3 = c2;
  for (int i = 0; i < 3000 && c3 <= c2; ++i) {
    std::this_thread::sleep_for(milliseconds(20));
    c3 = std::stoi(Trim(*fs->ReadFile("/tmp/c")));
  }
  EXPECT_GT(c3, c2);
  // It continued from memory: far from a restart at 0, and close to c2.
  EXPECT_LT(c3 - c2, 100);
  EXPECT_EQ(Sh(sb.id, "true").exit_code, 0);
}

TEST_P(PoolTest, ForkRunningSandbox) {
  auto sb = MustCreate();
  Sh(sb.id, "echo parent-data > /root/f; sh -c 'while true; do date > /tmp/tick; sleep 0.01; done' "
            ">/dev/null 2>&1 &");
  auto kids = rt_->Fork(sb.id, 3);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  ASSERT_EQ(kids->size(), 3u);
  std::set<int> slots{sb.id_slot};
  for (const auto& k : *kids) {
    EXPECT_EQ(k.state, SandboxState::kStarted);
    EXPECT_EQ(k.parent, sb.id);
    slots.insert(k.id_slot);
    EXPECT_EQ(Sh(k.id, "cat /root/f").stdout_data, "parent-data\n");
    EXPECT_EQ(Sh(k.id, "echo child > /root/f; cat /root/f").stdout_data, "child\n");
  }
  EXPECT_EQ(slots.size(), 4u) << "each sandbox owns its own id range";
  EXPECT_EQ(Sh(sb.id, "cat /root/f").stdout_data, "parent-data\n");
  EXPECT_EQ(rt_->Get(sb.id)->state, SandboxState::kStarted);
  auto tree = rt_->Tree(sb.id);
  ASSERT_TRUE(tree.ok());
  EXPECT_EQ(tree->children.size(), 3u);
  auto ktree = rt_->Tree((*kids)[0].id);
  ASSERT_TRUE(ktree.ok());
  EXPECT_EQ(ktree->parent, sb.id);
  EXPECT_EQ(ktree->ancestors, std::vector<std::string>{sb.id});
  // Deleting the parent leaves the children working.
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  for (const auto& k : *kids) EXPECT_EQ(Sh(k.id, "cat /root/f").stdout_data, "child\n");
  ktree = rt_->Tree((*kids)[1].id);
  ASSERT_TRUE(ktree.ok());
  EXPECT_EQ(ktree->ancestors, std::vector<std::string>{sb.id});
}

TEST_P(PoolTest, ForkOneGiBRunningSandbox) {
  CreateOptions o;
  o.resources.memory_bytes = 2LL << 30;
  auto sb = MustCreate(o);
  auto w = Sh(sb.id, "dd if=/dev/zero of=/root/big bs=1M count=1024 2>/dev/null; head -c 4096 /dev/urandom >> /root/big; md5sum /root/big",
              milliseconds(120000));
  ASSERT_EQ(w.exit_code, 0) << w.stderr_data;
  auto kids = rt_->Fork(sb.id, 1);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  EXPECT_EQ(Sh((*kids)[0].id, "md5sum /root/big", milliseconds(120000)).stdout_data, w.stdout_data);
}

TEST_P(PoolTest, ForkTreeDepth20) {
  CreateOptions o;
  o.start = false;
  auto root = MustCreate(o);
  std::string cur = root.id;
  std::vector<std::string> chain{root.id};
  for (int depth = 1; depth <= 20; ++depth) {
    auto fs = rt_->Files(cur);
    ASSERT_TRUE(fs.ok());
    ASSERT_TRUE(fs->WriteFile("/root/level-" + std::to_string(depth), std::to_string(depth)).ok());
    auto kids = rt_->Fork(cur, 1);
    ASSERT_TRUE(kids.ok()) << kids.status().ToString();
    cur = (*kids)[0].id;
    chain.push_back(cur);
  }
  auto tree = rt_->Tree(cur);
  ASSERT_TRUE(tree.ok());
  ASSERT_EQ(tree->ancestors.size(), 20u);
  EXPECT_EQ(tree->ancestors.front(), chain[19]);
  EXPECT_EQ(tree->ancestors.back(), root.id);
  ASSERT_TRUE(rt_->Start(cur).ok());
  EXPECT_EQ(Sh(cur, "ls /root | grep -c level-").stdout_data, "20\n");
  // Deleting a middle ancestor keeps the leaf working and its lineage.
  ASSERT_TRUE(rt_->Delete(chain[10]).ok());
  EXPECT_EQ(Sh(cur, "cat /root/level-20").stdout_data, "20");
  EXPECT_EQ(rt_->Tree(cur)->ancestors.size(), 20u);
}

TEST_P(PoolTest, IsolationFromHostAndBetweenSandboxes) {
  std::string marker = "/tmp/warren-host-marker-" + NewId("", 8);
  ASSERT_TRUE(WriteStringToFile(marker, "host-secret").ok());
  auto a = MustCreate();
  auto b = MustCreate();
  // Host files are invisible.
  EXPECT_NE(Sh(a.id, "cat " + marker).exit_code, 0);
  EXPECT_EQ(Sh(a.id, "grep -r host-secret /tmp /root /etc 2>/dev/null | wc -l").stdout_data, "0\n");
  // Host pids are invisible: only this sandbox's processes are listed.
  auto ps = Sh(a.id, "ls /proc | grep -c '^[0-9]'");
  EXPECT_LT(std::stoi(ps.stdout_data), 5);
  EXPECT_NE(Sh(a.id, "kill -0 " + std::to_string(getpid())).exit_code, 0);
  // Between sandboxes: files and processes.
  Sh(a.id, "echo only-a > /tmp/a-file; sleep 999 >/dev/null 2>&1 &");
  EXPECT_NE(Sh(b.id, "cat /tmp/a-file").exit_code, 0);
  EXPECT_NE(Sh(a.id, "pidof sleep").stdout_data, "");
  EXPECT_EQ(Sh(b.id, "pidof sleep || echo none").stdout_data, "none\n");
  EXPECT_NE(Sh(b.id, "kill -0 " + std::to_string(rt_->Get(a.id)->init_pid)).exit_code, 0);
  // Different hostnames and user id ranges.
  EXPECT_NE(Sh(a.id, "hostname").stdout_data, Sh(b.id, "hostname").stdout_data);
  EXPECT_NE(Sh(a.id, "cat /proc/self/uid_map").stdout_data, Sh(b.id, "cat /proc/self/uid_map").stdout_data);
  // Network: loopback only.
  EXPECT_EQ(Trim(Sh(a.id, "ls /sys/class/net").stdout_data), "lo");
  unlink(marker.c_str());
}

TEST_P(PoolTest, ForkBombStoppedByPidsLimit) {
  CreateOptions o;
  o.resources.pids = 64;
  auto sb = MustCreate(o);
  auto r = Sh(sb.id, "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", milliseconds(10000));
  auto stats = rt_->Stats(sb.id);
  ASSERT_TRUE(stats.ok());
  EXPECT_LE(stats->pids, 64);
  // The host is fine and the sandbox can be stopped cleanly.
  EXPECT_EQ(*RunCommand({"true"}), 0);
  auto stopped = rt_->Stop(sb.id, /*force=*/true);
  ASSERT_TRUE(stopped.ok()) << stopped.status().ToString();
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_EQ(Sh(sb.id, "echo ok").stdout_data, "ok\n");
}

TEST_P(PoolTest, MemoryHogKilledInsideWhileHostIsFine) {
  CreateOptions o;
  o.resources.memory_bytes = 64LL << 20;
  auto sb = MustCreate(o);
  auto r = Sh(sb.id, "dd if=/dev/zero of=/dev/null bs=512M count=1");
  EXPECT_EQ(r.exit_code, 128 + SIGKILL) << r.stderr_data;
  auto stats = rt_->Stats(sb.id);
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats->oom_kills, 1);
  EXPECT_LE(stats->memory_peak_bytes, 64LL << 20);
  // The sandbox itself survives (its init was not the victim) and the host too.
  EXPECT_EQ(Sh(sb.id, "echo alive").stdout_data, "alive\n");
  EXPECT_EQ(*RunCommand({"true"}), 0);
}

// A sandbox volume without a record, as a crash would leave it: a btrfs
// subvolume, or an overlay state dir (which the next Open() mounts).
void MakeRawVolume(const std::string& data_dir, bool overlay, const std::string& id) {
  if (!overlay) {
    ASSERT_EQ(*RunCommand({"btrfs", "subvolume", "create", data_dir + "/pool/sandboxes/" + id}), 0);
    return;
  }
  std::string st = data_dir + "/pool/ovl/sandboxes/" + id;
  ASSERT_TRUE(MkdirAll(st + "/upper").ok());
  ASSERT_TRUE(MkdirAll(st + "/work").ok());
  ASSERT_TRUE(WriteStringToFile(st + "/lowers", "").ok());
  ASSERT_TRUE(MkdirAll(data_dir + "/pool/sandboxes/" + id).ok());
}

TEST_P(PoolTest, RestartRecoveryReadoptsAndCleans) {
  auto MakeRawVolume = [&](const std::string& id) { ::warren::sandbox::testing::MakeRawVolume(data_dir_, overlay(), id); };
  auto live = MustCreate();
  Sh(live.id, "echo before > /root/x");
  CreateOptions so;
  so.start = false;
  auto stopped = MustCreate(so);
  auto paused = MustCreate();
  ASSERT_TRUE(rt_->Pause(paused.id).ok());
  // A half-made sandbox: record in "creating", a subvolume, a cgroup.
  SandboxRecord half = *rt_->Get(stopped.id);
  half.id = "sbx_halfmade0000000000";
  half.state = SandboxState::kCreating;
  half.id_slot = 9999;
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/sandboxes/" + half.id + ".json", half.ToJson().dump()).ok());
  MakeRawVolume(half.id);
  auto cg = NewCgroupV1("/sys/fs/cgroup", prefix_);
  ASSERT_TRUE(cg->Create(half.id, Resources{}).ok());
  // An orphan cgroup and an orphan subvolume with no record at all.
  ASSERT_TRUE(cg->Create("orphan", Resources{}).ok());
  MakeRawVolume("sbx_orphan");
  // A record stuck in "stopping" whose process is already gone.
  SandboxRecord stuck = *rt_->Get(stopped.id);
  stuck.id = "sbx_stuckstopping00000";
  stuck.state = SandboxState::kStopping;
  stuck.id_slot = 9998;
  stuck.init_pid = 999999;
  ASSERT_TRUE(WriteStringToFile(data_dir_ + "/sandboxes/" + stuck.id + ".json", stuck.ToJson().dump()).ok());
  ASSERT_TRUE(rt_->Files(stopped.id).ok());

  // "Restart": a new runtime over the same data dir.
  rt_.reset();
  auto rt2 = Open();
  ASSERT_TRUE(rt2.ok()) << rt2.status().ToString();
  rt_ = std::move(*rt2);
  auto rep = rt_->Recover();  // Open already recovered; a second pass finds nothing.
  ASSERT_TRUE(rep.ok());
  EXPECT_TRUE(rep->removed.empty());
  EXPECT_EQ(rep->orphan_cgroups, 0);
  EXPECT_EQ(rt_->Get(half.id).status().code(), Code::kNotFound);
  EXPECT_EQ(rt_->Get(stuck.id)->state, SandboxState::kStopped);
  EXPECT_FALSE(cg->Exists(half.id));
  EXPECT_FALSE(cg->Exists("orphan"));
  struct stat st;
  EXPECT_NE(stat((data_dir_ + "/pool/sandboxes/" + half.id).c_str(), &st), 0);
  EXPECT_NE(stat((data_dir_ + "/pool/sandboxes/sbx_orphan").c_str(), &st), 0);
  // Live sandboxes were re-adopted, with their processes and state.
  EXPECT_EQ(rt_->Get(live.id)->state, SandboxState::kStarted);
  EXPECT_EQ(Sh(live.id, "cat /root/x").stdout_data, "before\n");
  EXPECT_EQ(rt_->Get(paused.id)->state, SandboxState::kPaused);
  ASSERT_TRUE(rt_->Resume(paused.id).ok());
  EXPECT_EQ(Sh(paused.id, "echo back").stdout_data, "back\n");
  EXPECT_EQ(rt_->Get(stopped.id)->state, SandboxState::kStopped);
  // TearDown deletes everything and checks no mount, loop device or cgroup leaked.
}

TEST_P(PoolTest, RecoveryAfterInitKilledBehindOurBack) {
  auto sb = MustCreate();
  kill(sb.init_pid, SIGKILL);
  // Gone once the kernel has torn down its pid namespace (not at a fixed time).
  for (int i = 0; i < 3000 && ProcessAlive(sb.init_pid, sb.init_start_time); ++i) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_FALSE(ProcessAlive(sb.init_pid, sb.init_start_time));
  ExecRequest req;
  req.argv = {"true"};
  EXPECT_EQ(rt_->Exec(sb.id, req).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(rt_->Get(sb.id)->state, SandboxState::kStopped);
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_EQ(Sh(sb.id, "echo again").stdout_data, "again\n");
}

TEST_P(PoolTest, VolumesPersistAcrossSandboxes) {
  CreateOptions o;
  o.volumes = {VolumeMount{"shared", "/data", "", false}};
  auto a = MustCreate(o);
  EXPECT_EQ(Sh(a.id, "echo in-volume > /data/v.txt && cat /data/v.txt").stdout_data, "in-volume\n");
  ASSERT_TRUE(rt_->Delete(a.id).ok());
  auto b = MustCreate(o);
  EXPECT_EQ(Sh(b.id, "cat /data/v.txt").stdout_data, "in-volume\n");
  CreateOptions ro;
  ro.volumes = {VolumeMount{"shared", "/ro", "", true}};
  auto c = MustCreate(ro);
  EXPECT_NE(Sh(c.id, "echo x > /ro/new").exit_code, 0);
  EXPECT_EQ(Sh(c.id, "cat /ro/v.txt").stdout_data, "in-volume\n");
  // Shared by two live sandboxes with different host id ranges: each sees
  // the other's files with the right in-sandbox owner (idmapped binds).
  ASSERT_NE(b.id_slot, c.id_slot);
  ExecRequest as_user;
  ASSERT_EQ(Sh(b.id, "mkdir /data/u && chown 1000:1000 /data/u").exit_code, 0);
  as_user.argv = {"sh", "-c", "echo mine > /data/u/user.txt"};
  as_user.user = "sandbox";
  auto w = rt_->Exec(b.id, as_user);
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(w->exit_code, 0) << w->stderr_data;
  EXPECT_EQ(Sh(c.id, "stat -c %u /ro/u/user.txt /ro/v.txt").stdout_data, "1000\n0\n");
  struct stat st;
  ASSERT_EQ(stat((rt_->VolumeDir("shared") + "/u/user.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);  // on-disk ids are sandbox-relative
}

// Named volumes made explicitly: validated, listed with their size and the
// sandboxes that mount them, refused to delete while a sandbox lists them.
// A size needs quota groups (btrfs); the overlay pool says so.
TEST_P(PoolTest, NamedVolumesCreateGetListDelete) {
  EXPECT_EQ(rt_->CreateVolume("bad/name").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(rt_->CreateVolume("small", 4096).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(rt_->CreateVolume("neg", -1).status().code(), Code::kInvalidArgument);
  if (overlay()) {
    auto sized = rt_->CreateVolume("sized", 8 << 20);
    EXPECT_EQ(sized.status().code(), Code::kFailedPrecondition) << sized.status().ToString();
    EXPECT_EQ(rt_->GetVolume("sized").status().code(), Code::kNotFound);
  } else {
    auto sized = rt_->CreateVolume("sized", 8 << 20);
    ASSERT_TRUE(sized.ok()) << sized.status().ToString();
    EXPECT_EQ(sized->size_bytes, 8 << 20);
    EXPECT_TRUE(sized->subvolume);
    EXPECT_GE(sized->used_bytes, 0);
  }
  auto plain = rt_->CreateVolume("plain");
  ASSERT_TRUE(plain.ok()) << plain.status().ToString();
  EXPECT_EQ(plain->size_bytes, 0);
  EXPECT_EQ(plain->subvolume, !overlay());
  EXPECT_EQ(rt_->CreateVolume("plain").status().code(), Code::kConflict);
  CreateOptions o;
  o.volumes = {VolumeMount{"plain", "/p", "", false}, VolumeMount{"implicit", "/i", "", false}};
  auto sb = MustCreate(o);
  auto list = rt_->ListVolumes();
  ASSERT_TRUE(list.ok());
  std::vector<std::string> names;
  for (const auto& v : *list) {
    names.push_back(v.name);
    if (v.name != "sized") {
      EXPECT_EQ(v.sandboxes, std::vector<std::string>{sb.id}) << v.name;
    }
  }
  std::vector<std::string> want = {"implicit", "plain"};
  if (!overlay()) want.push_back("sized");
  EXPECT_EQ(names, want);
  EXPECT_EQ(rt_->DeleteVolume("plain").code(), Code::kConflict);
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  for (const auto& n : want) EXPECT_TRUE(rt_->DeleteVolume(n).ok()) << n;
  EXPECT_EQ(rt_->DeleteVolume("plain").code(), Code::kNotFound);
  list = rt_->ListVolumes();
  ASSERT_TRUE(list.ok());
  EXPECT_TRUE(list->empty());
}

TEST_P(PoolTest, SnapshotBuildWithCache) {
  std::string ctx = data_dir_ + "/ctx";
  ASSERT_TRUE(MkdirAll(ctx + "/app").ok());
  ASSERT_TRUE(WriteStringToFile(ctx + "/app/main.sh", "echo app-ran\n").ok());
  std::string recipe =
      "FROM builtin:minimal\n"
      "ENV GREETING=hello\n"
      "RUN mkdir -p /opt/tool && echo built > /opt/tool/marker\n"
      "COPY app /srv/app\n"
      "WORKDIR /srv/app\n"
      "USER sandbox\n";
  std::vector<std::string> log1;
  auto s1 = rt_->BuildSnapshot("demo", recipe, ctx, [&](std::string_view l) { log1.emplace_back(l); });
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  std::vector<std::string> log2;
  auto s2 = rt_->BuildSnapshot("demo", recipe, ctx, [&](std::string_view l) { log2.emplace_back(l); });
  ASSERT_TRUE(s2.ok());
  EXPECT_EQ(s1->hash, s2->hash);
  int cached = 0;
  for (const auto& l : log2) cached += l.find("cached") != std::string::npos;
  EXPECT_EQ(cached, 6);
  CreateOptions o;
  o.snapshot = "demo";
  auto sb = MustCreate(o);
  auto r = Sh(sb.id, "pwd; id -u; echo $GREETING; cat /opt/tool/marker; sh main.sh");
  EXPECT_EQ(r.stdout_data, "/srv/app\n1000\nhello\nbuilt\napp-ran\n");
  // Changing the context invalidates the COPY step and later ones only.
  ASSERT_TRUE(WriteStringToFile(ctx + "/app/main.sh", "echo v2\n").ok());
  std::vector<std::string> log3;
  auto s3 = rt_->BuildSnapshot("demo", recipe, ctx, [&](std::string_view l) { log3.emplace_back(l); });
  ASSERT_TRUE(s3.ok());
  EXPECT_NE(s3->hash, s1->hash);
  cached = 0;
  for (const auto& l : log3) cached += l.find("cached") != std::string::npos;
  EXPECT_EQ(cached, 4);  // FROM, ENV, RUN and the metadata-only USER
  // A failing RUN fails the build.
  auto bad = rt_->BuildSnapshot("bad", "FROM builtin:minimal\nRUN exit 3\n", "");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(rt_->GetSnapshot("bad").status().code(), Code::kNotFound);
  auto list = rt_->ListSnapshots();
  ASSERT_TRUE(list.ok());
  EXPECT_EQ(list->size(), 2u);  // builtin:minimal, demo
  EXPECT_TRUE(rt_->DeleteSnapshot("demo").ok());
  // The sandbox made from it keeps working.
  EXPECT_EQ(Sh(sb.id, "cat /opt/tool/marker").stdout_data, "built\n");
}

INSTANTIATE_TEST_SUITE_P(Pools, PoolTest, ::testing::Values(std::string(), std::string("overlay")), PoolName);

// FROM debian:bookworm: debootstrap once, then the cached layer. Needs the
// Debian mirror apt uses here; skips with the reason when it is unreachable.
TEST_F(RuntimeTest, DebianBookwormBaseBuiltOnceThenCached) {
  if (access("/usr/sbin/debootstrap", X_OK) != 0) GTEST_SKIP() << "debootstrap is not installed";
  std::vector<std::string> log1, log2;
  const std::string recipe = "FROM debian:bookworm\nRUN echo hi > /x\n";
  auto snap = rt_->BuildSnapshot("deb", recipe, "", [&](std::string_view l) { log1.emplace_back(l); });
  if (!snap.ok() && snap.status().code() == Code::kUnavailable) GTEST_SKIP() << snap.status().ToString();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  auto count = [](const std::vector<std::string>& log, const std::string& needle) {
    return std::count_if(log.begin(), log.end(), [&](const std::string& l) { return l.find(needle) != std::string::npos; });
  };
  EXPECT_EQ(count(log1, "debootstrap --variant=minbase bookworm"), 1);
  EXPECT_GT(count(log1, "fetched]"), 20) << "debootstrap progress is streamed";
  CreateOptions o;
  o.snapshot = "deb";
  auto sb = MustCreate(o);
  EXPECT_EQ(Sh(sb.id, "cat /x").stdout_data, "hi\n");
  EXPECT_EQ(Sh(sb.id, "cut -d. -f1 /etc/debian_version").stdout_data, "12\n");
  auto q = Sh(sb.id, "dpkg-query -W bash");
  EXPECT_EQ(q.exit_code, 0) << q.stderr_data;
  EXPECT_EQ(q.stdout_data.rfind("bash\t", 0), 0u) << q.stdout_data;
  EXPECT_EQ(Sh(sb.id, "apt-get --version | head -1 | cut -d' ' -f1").stdout_data, "apt\n");
  // A second build (and the -slim alias) reuses the cached base: debootstrap does not run again.
  auto again = rt_->BuildSnapshot("deb2", "FROM debian:bookworm-slim\nRUN echo hi > /x\n", "",
                                  [&](std::string_view l) { log2.emplace_back(l); });
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(count(log2, "debootstrap"), 0);
  EXPECT_EQ(count(log2, "base cached"), 1);
  EXPECT_EQ(again->layers, snap->layers) << "same base and same RUN: every layer cached";
  // A recipe option that makes no sense is a clear error.
  auto bad = rt_->BuildSnapshot("deb3", "FROM debian:bookworm colour=blue\n", "");
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

// Two data dirs with one cgroup prefix (two servers left at the default, or
// the CLI's default data dir beside a server's): the second one's recovery
// used to remove the first one's running sandbox's cgroup (killing its init)
// and veth as orphans, and re-render the shared nft table from its own
// records. Now the second open is refused, naming the first data dir, and the
// first one's sandbox keeps running (host_claim.h).
TEST_F(RuntimeTest, ASecondDataDirWithTheSamePrefixIsRefusedAndHarmsNothing) {
  auto sb = MustCreate();
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  ASSERT_EQ(Sh(sb.id, "echo alive").stdout_data, "alive\n");
  const std::string other = data_root_ + "/warren-it-" + NewId("", 10);
  RuntimeOptions o;
  o.data_dir = other;
  o.cgroup_prefix = prefix_;
  o.network_pool = network_pool_;
  o.pool_kind = pool_kind_;
  if (!mkfs_btrfs_.empty()) o.mkfs_btrfs = mkfs_btrfs_;
  {
    auto second = SandboxRuntime::Open(o);
    EXPECT_EQ(second.status().code(), Code::kFailedPrecondition) << second.status().ToString();
    EXPECT_NE(second.status().message().find(data_dir_), std::string::npos) << second.status().ToString();
  }
  EXPECT_EQ(Sh(sb.id, "echo still alive").stdout_data, "still alive\n");
  auto rec = rt_->Get(sb.id);
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->state, SandboxState::kStarted);
  // With a prefix of its own the other data dir opens.
  o.cgroup_prefix = prefix_ + "-2";
  {
    auto second = SandboxRuntime::Open(o);
    ASSERT_TRUE(second.ok()) << second.status().ToString();
    EXPECT_TRUE((*second)->UnmountPoolIfIdle().ok());
  }
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) rmdir((std::string("/sys/fs/cgroup/") + c + "/" + o.cgroup_prefix).c_str());
  (void)RemoveTree(other);
}

TEST_F(RuntimeTest, DebianBaseWithoutDebootstrapIsAClearError) {
  rt_.reset();
  RuntimeOptions o;
  o.data_dir = data_dir_;
  o.cgroup_prefix = prefix_;
  o.debootstrap = "/nonexistent/debootstrap";
  auto rt = SandboxRuntime::Open(o);
  ASSERT_TRUE(rt.ok()) << rt.status().ToString();
  rt_ = std::move(*rt);
  auto r = rt_->BuildSnapshot("deb", "FROM debian:bookworm\n", "");
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().ToString().find("debootstrap"), std::string::npos);
}

// VmRSS of a host process in KiB (-1 if unknown).
int64_t VmRssKiB(pid_t pid) {
  auto st = ReadFileToString("/proc/" + std::to_string(pid) + "/status");
  if (!st.ok()) return -1;
  auto at = st->find("VmRSS:");
  return at == std::string::npos ? -1 : std::stoll(st->substr(at + 6));
}

TEST_F(RuntimeTest, TinyInitIsPid1ReapsOrphansAndExitsOnRequest) {
  auto sb = MustCreate();
  // pid 1 execs warren-init at the end of its setup, which may finish just
  // after Create returns: look at it once it is the init (an exec has gone
  // through), then measure.
  EXPECT_EQ(Sh(sb.id, "i=0; while [ \"$(cat /proc/1/comm)\" != warren-init ] && [ $i -lt 100 ]; do "
                      "sleep 0.05; i=$((i+1)); done; tr '\\0' ' ' < /proc/1/cmdline; cat /proc/1/comm")
                .stdout_data,
            "warren-init warren-init\n");
  int64_t rss = VmRssKiB(sb.init_pid);
  RecordProperty("init_vmrss_kib", std::to_string(rss));
  std::cout << "pid 1 VmRSS: " << rss << " KiB\n";
  char exe[256] = {};
  ASSERT_GT(readlink(("/proc/" + std::to_string(sb.init_pid) + "/exe").c_str(), exe, sizeof(exe) - 1), 0);
  EXPECT_EQ(std::string(exe).rfind("/memfd:warren-init", 0), 0u) << exe;
  EXPECT_GT(rss, 0);
  EXPECT_LT(rss, 1024) << "pid 1 is a few pages, not a copy of the runtime";
  // An orphan is reparented to pid 1, which reaps it when it exits.
  Sh(sb.id, "sh -c 'sleep 0.3 & echo $! > /tmp/orphan'");
  EXPECT_EQ(Sh(sb.id, "p=$(cat /tmp/orphan); grep PPid /proc/$p/status | tr -d '\\t'").stdout_data, "PPid:1\n");
  EXPECT_EQ(Sh(sb.id, "p=$(cat /tmp/orphan); i=0; while [ -e /proc/$p ] && [ $i -lt 200 ]; do i=$((i+1)); "
                      "sleep 0.05; done; [ -e /proc/$p ] && grep State /proc/$p/status || echo reaped")
                .stdout_data,
            "reaped\n");
  // TERM from inside the sandbox does not stop it; SIGKILL is ignored too.
  EXPECT_EQ(Sh(sb.id, "kill -TERM 1; kill -KILL 1; sleep 0.2; echo alive").stdout_data, "alive\n");
  EXPECT_TRUE(ProcessAlive(sb.init_pid, sb.init_start_time));
  // TERM from the host: forwarded to every process, and pid 1 exits once
  // they are gone (the runtime then finds the sandbox stopped).
  Sh(sb.id, "sh -c 'trap \"echo termed > /root/term; exit 0\" TERM; touch /tmp/t1; while true; do sleep 0.05; done' "
            ">/dev/null 2>&1 & while [ ! -e /tmp/t1 ]; do sleep 0.01; done");
  ASSERT_EQ(kill(sb.init_pid, SIGTERM), 0);
  for (int i = 0; i < 400 && ProcessAlive(sb.init_pid, sb.init_start_time); ++i) {
    std::this_thread::sleep_for(milliseconds(25));
  }
  EXPECT_FALSE(ProcessAlive(sb.init_pid, sb.init_start_time)) << "init exits once its sandbox is empty";
  EXPECT_EQ(*rt_->Files(sb.id)->ReadFile("/root/term"), "termed\n");
  // Stop of a started sandbox goes through the init: TERM reaches the
  // process that handles it, and the one ignoring it is killed at the grace.
  // (Start notices the init is gone and boots a new one.)
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_NE(rt_->Get(sb.id)->init_pid, sb.init_pid);
  Sh(sb.id, "rm -f /root/term /tmp/t1 /tmp/t2; sh -c 'trap \"echo termed2 > /root/term; exit 0\" TERM; touch /tmp/t1; "
            "while true; do sleep 0.05; done' >/dev/null 2>&1 & sh -c 'trap \"\" TERM; touch /tmp/t2; "
            "while true; do sleep 0.05; done' >/dev/null 2>&1 & while [ ! -e /tmp/t1 ] || [ ! -e /tmp/t2 ]; do sleep 0.01; done");
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  EXPECT_EQ(*rt_->Files(sb.id)->ReadFile("/root/term"), "termed2\n");
}

class OverlayTest : public RuntimeTest {
 protected:
  void SetUp() override {
    pool_kind_ = "overlay";
    RuntimeTest::SetUp();
  }
};

TEST_F(OverlayTest, OnDiskIdsAndOneCoherentInstance) {
  auto sb = MustCreate();
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "echo u > /home/sandbox/f"};
  req.user = "sandbox";
  auto r = rt_->Exec(sb.id, req);
  ASSERT_TRUE(r.ok() && r->exit_code == 0) << (r.ok() ? r->stderr_data : r.status().ToString());
  Sh(sb.id, "echo r > /root/x");
  // On disk (the upper layer) files keep sandbox ids 0..65535.
  std::string upper = data_dir_ + "/pool/ovl/sandboxes/" + sb.id + "/upper";
  struct stat st;
  ASSERT_EQ(stat((upper + "/home/sandbox/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 1000u);
  ASSERT_EQ(stat((upper + "/root/x").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 0u);
  // The file API on the running sandbox: writes belong to its root, owners
  // read back as sandbox ids, and both sides see each other's writes.
  auto fs = rt_->Files(sb.id);
  ASSERT_TRUE(fs.ok());
  ASSERT_TRUE(fs->WriteFile("/tmp/from-host", "h\n").ok());
  ASSERT_TRUE(fs->Mkdir("/home/sandbox/sub", false).ok());
  EXPECT_EQ(Sh(sb.id, "cat /tmp/from-host; stat -c %u:%g /tmp/from-host /home/sandbox/sub").stdout_data,
            "h\n0:0\n0:0\n");
  EXPECT_EQ(fs->Stat("/home/sandbox/f")->uid, 1000u);
  EXPECT_EQ(*fs->ReadFile("/root/x"), "r\n");
  Sh(sb.id, "echo late > /tmp/late");
  EXPECT_EQ(*fs->ReadFile("/tmp/late"), "late\n");
  // One host mount per volume; stop/start keeps files; delete leaves none.
  EXPECT_EQ(MountsUnder(data_dir_ + "/pool/sandboxes").size(), 1u);
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_EQ(Sh(sb.id, "cat /tmp/from-host /home/sandbox/f").stdout_data, "h\nu\n");
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_TRUE(MountsUnder(data_dir_ + "/pool/sandboxes").empty());
}

TEST_F(OverlayTest, LayersOutliveTheirSnapshotWhileASandboxIsStackedOnThem) {
  auto snap = rt_->BuildSnapshot("img", "FROM builtin:minimal\nRUN echo hi > /x\n", "");
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  std::string top = data_dir_ + "/pool/layers/" + snap->layers.back();
  CreateOptions o;
  o.snapshot = "img";
  auto sb = MustCreate(o);
  ASSERT_TRUE(rt_->DeleteSnapshot("img").ok());
  struct stat st;
  EXPECT_EQ(stat(top.c_str(), &st), 0) << "layer kept while a sandbox is stacked on it";
  ASSERT_TRUE(rt_->Stop(sb.id).ok());
  ASSERT_TRUE(rt_->Start(sb.id).ok());
  EXPECT_EQ(Sh(sb.id, "cat /x").stdout_data, "hi\n");
  ASSERT_TRUE(rt_->Delete(sb.id).ok());
  EXPECT_NE(stat(top.c_str(), &st), 0) << "layer freed with its last user";
}

class NoBtrfsTest : public RuntimeTest {
 protected:
  void SetUp() override {
    mkfs_btrfs_ = "/nonexistent/mkfs.btrfs";
    RuntimeTest::SetUp();
  }
};

TEST_F(NoBtrfsTest, AutoSelectsOverlayAndSaysSo) {
  EXPECT_EQ(rt_->features().pool_kind, "overlay");
  EXPECT_FALSE(rt_->features().copy_on_write_fork);
  struct stat st;
  EXPECT_NE(stat((data_dir_ + "/pool.img").c_str(), &st), 0);
  auto sb = MustCreate();
  Sh(sb.id, "echo p > /root/p");
  auto kids = rt_->Fork(sb.id, 1);
  ASSERT_TRUE(kids.ok()) << kids.status().ToString();
  EXPECT_EQ(Sh((*kids)[0].id, "cat /root/p").stdout_data, "p\n");
  // Reopening with auto-selection keeps the overlay pool.
  rt_.reset();
  mkfs_btrfs_.clear();
  auto rt2 = Open();
  ASSERT_TRUE(rt2.ok()) << rt2.status().ToString();
  rt_ = std::move(*rt2);
  EXPECT_EQ(rt_->features().pool_kind, "overlay");
  EXPECT_EQ(Sh(sb.id, "cat /root/p").stdout_data, "p\n");
}

class IdleTest : public RuntimeTest {
 protected:
  void SetUp() override {
    clock_ = &fake_;
    RuntimeTest::SetUp();
  }
  FakeClock fake_{Clock::Real()->NowMicros()};
};

TEST_F(IdleTest, AutoStopCountsExecAndRunningProcesses) {
  CreateOptions o;
  o.auto_stop_minutes = 10;
  auto idle = MustCreate(o);
  auto busy = MustCreate(o);
  auto never = MustCreate();  // auto-stop off
  Sh(busy.id, "sleep 3600 >/dev/null 2>&1 &");
  fake_.Advance(5LL * 60 * 1000000);
  EXPECT_TRUE(rt_->EnforceIdlePolicies()->stopped.empty());
  Sh(idle.id, "true");  // an exec resets the idle timer
  fake_.Advance(6LL * 60 * 1000000);
  EXPECT_TRUE(rt_->EnforceIdlePolicies()->stopped.empty());
  fake_.Advance(5LL * 60 * 1000000);
  auto stopped = rt_->EnforceIdlePolicies();
  ASSERT_TRUE(stopped.ok());
  EXPECT_EQ(stopped->stopped, std::vector<std::string>{idle.id});
  EXPECT_EQ(rt_->Get(idle.id)->state, SandboxState::kStopped);
  EXPECT_EQ(rt_->Get(busy.id)->state, SandboxState::kStarted);  // its sleep counts as activity
  EXPECT_EQ(rt_->Get(never.id)->state, SandboxState::kStarted);
}

}  // namespace
}  // namespace warren::sandbox::testing
