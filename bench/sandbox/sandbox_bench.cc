// bench_sandbox [--iterations N] [--data-dir DIR] [--markdown]
//
// Measures, on this machine, the sandbox runtime's create-to-first-exec,
// exec, shell session create/exec/delete, PTY open, stop, start, pause,
// resume, fork (with 0, 100 MiB and 1 GiB of data in the parent's rootfs),
// archive and restore (0 and 100 MiB of random data), fork again once btrfs
// quotas are on (a parent with a disk limit: the cost qgroups add), and
// delete, as p50/p99 over N runs; and, in the same run, Debian's bubblewrap
// (`bwrap`) launching the same command over the same rootfs, printed as
// ratios (bwrap has no peer for sessions, archive/restore). Must run as root.
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "common/ids.h"
#include "sandbox/runtime.h"
#include "sandbox/sys.h"

using namespace warren;
using namespace warren::sandbox;
using SteadyClock = std::chrono::steady_clock;

namespace {

struct Stat {
  std::string name;
  std::vector<double> ms;
  double Pct(double p) const {
    if (ms.empty()) return 0;
    std::vector<double> v = ms;
    std::sort(v.begin(), v.end());
    size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
    return v[std::min(i, v.size() - 1)];
  }
};

double Ms(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

void Die(const Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s.ToString() << "\n";
    exit(1);
  }
}

int RunBwrap(const std::string& rootfs) {
  pid_t pid = fork();
  if (pid == 0) {
    int null = open("/dev/null", O_RDWR);
    dup2(null, 1);
    dup2(null, 2);
    execlp("bwrap", "bwrap", "--ro-bind", rootfs.c_str(), "/", "--proc", "/proc", "--dev", "/dev",
           "--unshare-all", "--die-with-parent", "--new-session", "/bin/sh", "-c", "true", nullptr);
    _exit(127);
  }
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 20;
  std::string data_dir = "/var/tmp/warren-bench-" + NewId("", 8);
  bool markdown = false;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc) n = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) data_dir = argv[++i];
    else if (!strcmp(argv[i], "--markdown")) markdown = true;
  }
  if (geteuid() != 0) {
    std::cerr << "bench_sandbox needs root\n";
    return 1;
  }
  RuntimeOptions o;
  o.data_dir = data_dir;
  o.cgroup_prefix = "warren-bench-" + NewId("", 6);
  o.stop_grace = std::chrono::milliseconds(1000);
  auto rto = SandboxRuntime::Open(o);
  Die(rto.status(), "open");
  auto& rt = **rto;
  // Warm the builtin image.
  {
    CreateOptions co;
    co.start = false;
    auto w = rt.Create(co);
    Die(w.status(), "warm");
    Die(rt.Delete(w->id), "warm delete");
  }
  ExecRequest truth;
  truth.argv = {"/bin/sh", "-c", "true"};
  std::map<std::string, Stat> stats;
  auto add = [&](const std::string& k, double v) {
    stats[k].name = k;
    stats[k].ms.push_back(v);
  };
  std::vector<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto t0 = SteadyClock::now();
    auto c = rt.Create({});
    Die(c.status(), "create");
    auto t1 = SteadyClock::now();
    auto e = rt.Exec(c->id, truth);
    Die(e.status(), "exec");
    auto t2 = SteadyClock::now();
    add("create", Ms(t0, t1));
    add("create_to_first_exec", Ms(t0, t2));
    auto t3 = SteadyClock::now();
    Die(rt.Exec(c->id, truth).status(), "exec");
    add("exec", Ms(t3, SteadyClock::now()));
    // Shell sessions: create, a command in the running shell, delete (with a
    // background job to kill); a PTY open until the program has exec'd.
    auto s0 = SteadyClock::now();
    Die(rt.CreateSession(c->id, "b").status(), "session create");
    auto s1 = SteadyClock::now();
    Die(rt.SessionExec(c->id, "b", "true").status(), "session exec");
    auto s2 = SteadyClock::now();
    Die(rt.SessionExec(c->id, "b", "sleep 1000 &").status(), "session exec");
    auto s3 = SteadyClock::now();
    Die(rt.DeleteSession(c->id, "b"), "session delete");
    auto s4 = SteadyClock::now();
    add("session_create", Ms(s0, s1));
    add("session_exec", Ms(s1, s2));
    add("session_delete", Ms(s3, s4));
    PtyOptions po;
    po.argv = {"true"};
    auto p0 = SteadyClock::now();
    auto pty = rt.OpenPty(c->id, po);
    Die(pty.status(), "pty");
    add("pty_open", Ms(p0, SteadyClock::now()));
    (void)(*pty)->Wait();
    ids.push_back(c->id);
  }
  for (const auto& id : ids) {
    auto t0 = SteadyClock::now();
    Die(rt.Pause(id).status(), "pause");
    auto t1 = SteadyClock::now();
    Die(rt.Resume(id).status(), "resume");
    auto t2 = SteadyClock::now();
    add("pause", Ms(t0, t1));
    add("resume", Ms(t1, t2));
    auto t3 = SteadyClock::now();
    Die(rt.Stop(id).status(), "stop");
    auto t4 = SteadyClock::now();
    Die(rt.Start(id).status(), "start");
    auto t5 = SteadyClock::now();
    add("stop", Ms(t3, t4));
    add("start", Ms(t4, t5));
  }
  // Fork at 0, 100 MiB and 1 GiB of data in a running parent.
  for (auto [label, mib] : {std::pair<const char*, int>{"fork_0", 0}, {"fork_100MiB", 100}, {"fork_1GiB", 1024}}) {
    CreateOptions co;
    auto p = rt.Create(co);
    Die(p.status(), "create parent");
    if (mib > 0) {
      ExecRequest w;
      w.argv = {"/bin/sh", "-c", "dd if=/dev/zero of=/root/data bs=1M count=" + std::to_string(mib) + " 2>/dev/null"};
      w.timeout = std::chrono::minutes(5);
      auto r = rt.Exec(p->id, w);
      Die(r.status(), "fill");
    }
    int iters = mib >= 1024 ? std::max(5, n / 4) : n;
    for (int i = 0; i < iters; ++i) {
      auto t0 = SteadyClock::now();
      auto k = rt.Fork(p->id, 1);
      Die(k.status(), "fork");
      add(label, Ms(t0, SteadyClock::now()));
      Die(rt.Delete((*k)[0].id), "delete child");
    }
    ids.push_back(p->id);
  }
  // Archive and restore of a stopped sandbox holding 0 or 100 MiB of random
  // (incompressible) data.
  for (auto [label, mib] : {std::pair<const char*, int>{"0", 0}, {"100MiB", 100}}) {
    auto p = rt.Create({});
    Die(p.status(), "create archived");
    if (mib > 0) {
      ExecRequest w;
      w.argv = {"/bin/sh", "-c", "dd if=/dev/urandom of=/root/data bs=1M count=" + std::to_string(mib) + " 2>/dev/null"};
      w.timeout = std::chrono::minutes(5);
      Die(rt.Exec(p->id, w).status(), "fill");
    }
    Die(rt.Stop(p->id).status(), "stop");
    int iters = mib > 0 ? std::max(5, n / 2) : n;
    for (int i = 0; i < iters; ++i) {
      auto t0 = SteadyClock::now();
      Die(rt.Archive(p->id).status(), "archive");
      auto t1 = SteadyClock::now();
      Die(rt.Restore(p->id).status(), "restore");
      add(std::string("archive_") + label, Ms(t0, t1));
      add(std::string("restore_") + label, Ms(t1, SteadyClock::now()));
    }
    ids.push_back(p->id);
  }
  // The same forks once quota accounting is on: the first disk limit turns
  // btrfs qgroups on for the whole pool.
  for (auto [label, mib] : {std::pair<const char*, int>{"fork_0_quota", 0}, {"fork_100MiB_quota", 100}}) {
    CreateOptions co;
    co.resources.disk_bytes = 2LL << 30;
    auto p = rt.Create(co);
    Die(p.status(), "create parent with disk limit");
    if (mib > 0) {
      ExecRequest w;
      w.argv = {"/bin/sh", "-c", "dd if=/dev/zero of=/root/data bs=1M count=" + std::to_string(mib) + " 2>/dev/null"};
      w.timeout = std::chrono::minutes(5);
      Die(rt.Exec(p->id, w).status(), "fill");
    }
    for (int i = 0; i < n; ++i) {
      auto t0 = SteadyClock::now();
      auto k = rt.Fork(p->id, 1);
      Die(k.status(), "fork");
      add(label, Ms(t0, SteadyClock::now()));
      auto t1 = SteadyClock::now();
      Die(rt.Delete((*k)[0].id), "delete child");
      add("delete_quota", Ms(t1, SteadyClock::now()));
    }
    ids.push_back(p->id);
  }
  for (const auto& id : ids) {
    auto t0 = SteadyClock::now();
    Die(rt.Delete(id), "delete");
    add("delete", Ms(t0, SteadyClock::now()));
  }
  // bwrap over the same (read-only) builtin rootfs, same command.
  auto snap = rt.GetSnapshot("builtin:minimal");
  Die(snap.status(), "snapshot");
  std::string layer = data_dir + "/pool/layers/" + snap->layers.back();
  bool have_bwrap = RunBwrap(layer) == 0;
  if (have_bwrap) {
    for (int i = 0; i < n; ++i) {
      auto t0 = SteadyClock::now();
      RunBwrap(layer);
      add("bwrap_launch", Ms(t0, SteadyClock::now()));
    }
  }
  auto features = rt.features().ToJson();
  Die(rt.UnmountPoolIfIdle(), "unmount");
  (void)RemoveTree(data_dir);
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
    rmdir((std::string("/sys/fs/cgroup/") + c + "/" + o.cgroup_prefix).c_str());
  }

  const char* order[] = {"create",         "create_to_first_exec", "exec",           "session_create",
                         "session_exec",   "session_delete",       "pty_open",       "stop",
                         "start",          "pause",                "resume",         "fork_0",
                         "fork_100MiB",    "fork_1GiB",            "delete",         "archive_0",
                         "restore_0",      "archive_100MiB",       "restore_100MiB", "fork_0_quota",
                         "fork_100MiB_quota", "delete_quota",      "bwrap_launch"};
  double bw50 = have_bwrap ? stats["bwrap_launch"].Pct(0.5) : 0;
  double bw99 = have_bwrap ? stats["bwrap_launch"].Pct(0.99) : 0;
  if (markdown) {
    std::printf("| operation | n | p50 ms | p99 ms | p50 / bwrap p50 |\n|---|---|---|---|---|\n");
  } else {
    std::printf("%-22s %4s %9s %9s %14s\n", "operation", "n", "p50 ms", "p99 ms", "p50/bwrap");
  }
  for (const char* k : order) {
    if (!stats.count(k)) continue;
    const Stat& s = stats[k];
    // bwrap has no archive/restore: no ratio for those.
    bool peer = std::strncmp(k, "archive", 7) != 0 && std::strncmp(k, "restore", 7) != 0;
    double ratio = bw50 > 0 && peer ? s.Pct(0.5) / bw50 : 0;
    char rs[32] = "-";
    if (ratio > 0) std::snprintf(rs, sizeof(rs), "%.2fx", ratio);
    if (markdown) {
      std::printf("| %s | %zu | %.2f | %.2f | %s |\n", k, s.ms.size(), s.Pct(0.5), s.Pct(0.99), rs);
    } else {
      std::printf("%-22s %4zu %9.2f %9.2f %14s\n", k, s.ms.size(), s.Pct(0.5), s.Pct(0.99), rs);
    }
  }
  if (!have_bwrap) std::printf("(bwrap not available: no comparison)\n");
  else std::printf("bwrap p50 %.2f ms, p99 %.2f ms\n", bw50, bw99);
  std::printf("features: %s\n", features.dump().c_str());
  return 0;
}
