// bench_exec_spawn [--iterations N] [--heaps 0,256,1024] [--live K] [--markdown]
//
// What an exec into a running sandbox costs the process that starts it, as a
// function of that process's size, for the two SpawnMethods of
// sandbox/process.h: kFork (fork() of the caller, the former way: the peer)
// and kVfork (clone(CLONE_VM|CLONE_VFORK) + exec of warren-exec). For each
// populated heap size (MiB, touched page by page before measuring):
//  - exec latency: ExecInSandbox(`true`), p50/p99 over N, one at a time;
//  - exec throughput: execs/s with 4 threads calling ExecInSandbox at once;
//  - heap rewrite: time for the caller to write one byte in every page of
//    its heap while K long-lived commands (SpawnInSandbox `sleep`, like a
//    session's runner) are running. With kFork each of their intermediates
//    is a copy of the caller, so every page written faults and is copied;
//    with kVfork the intermediates own their memory and nothing is shared.
//  - intermediate RSS: VmRSS of one live intermediate.
// Prints a table with kVfork / kFork ratios. Uses the process API directly
// (no runtime, no storage pool): a busybox rootfs in /tmp, one cgroup, one
// init. Must run as root; leaves nothing behind.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/ids.h"
#include "sandbox/process.h"
#include "sandbox/sys.h"

using namespace warren;
using namespace warren::sandbox;
using SteadyClock = std::chrono::steady_clock;

namespace {

double Ms(SteadyClock::time_point a, SteadyClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

double Pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

void Die(const Status& s, const char* what) {
  if (!s.ok()) {
    std::cerr << what << ": " << s.ToString() << "\n";
    exit(1);
  }
}

long RssKib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

struct Row {
  int heap_mib;
  const char* method;
  double p50, p99, per_sec, rewrite_ms;
  long mid_rss_kib;
};

}  // namespace

int main(int argc, char** argv) {
  int n = 200;
  int live = 16;
  bool markdown = false;
  std::vector<int> heaps = {0, 256, 1024};
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--iterations") && i + 1 < argc) n = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--live") && i + 1 < argc) live = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--markdown")) markdown = true;
    else if (!strcmp(argv[i], "--heaps") && i + 1 < argc) {
      heaps.clear();
      std::stringstream ss(argv[++i]);
      std::string tok;
      while (std::getline(ss, tok, ',')) heaps.push_back(atoi(tok.c_str()));
    }
  }
  if (geteuid() != 0) {
    std::cerr << "bench_exec_spawn needs root\n";
    return 1;
  }
  std::string root = "/tmp/warren-bench-exec-" + NewId("", 8);
  Die(MkdirAll(root + "/bin"), "mkdir rootfs");
  if (*RunCommand({"cp", "/bin/busybox", root + "/bin/busybox"}) != 0) Die(Status::Internal("cp"), "busybox");
  if (symlink("busybox", (root + "/bin/sh").c_str()) != 0) Die(ErrnoStatus("symlink"), "sh");
  std::string prefix = "warren-bench-exec-" + NewId("", 6);
  auto cg = DetectCgroupManager(prefix);
  Die(cg.status(), "cgroups");
  std::string name = NewId("b", 8);
  Die((*cg)->Create(name, Resources{0, 0, 4096, 0}), "cgroup");
  InitSpec spec;
  spec.rootfs = root;
  spec.hostname = "bench";
  spec.ids = IdRange{4000};
  auto init = SpawnInit(spec, **cg, name);
  Die(init.status(), "init");
  auto seccomp = SeccompProgram::BuildDefault();
  Die(seccomp.status(), "seccomp");
  auto procs = (*cg)->ProcsFiles(name);
  ExecSpec truth;
  truth.argv = {"/bin/busybox", "true"};

  std::vector<Row> rows;
  for (int mib : heaps) {
    size_t bytes = static_cast<size_t>(mib) << 20;
    std::vector<char> heap(bytes);
    for (size_t i = 0; i < bytes; i += 4096) heap[i] = 1;
    for (SpawnMethod m : {SpawnMethod::kFork, SpawnMethod::kVfork}) {
      SetSpawnMethod(m);
      Row row{mib, m == SpawnMethod::kFork ? "fork" : "vfork+exec", 0, 0, 0, 0, 0};
      for (int i = 0; i < 5; ++i) Die(ExecInSandbox(init->pid, procs, truth, *seccomp, CapSet::Default()).status(), "warm");
      std::vector<double> lat;
      for (int i = 0; i < n; ++i) {
        auto t0 = SteadyClock::now();
        auto r = ExecInSandbox(init->pid, procs, truth, *seccomp, CapSet::Default());
        lat.push_back(Ms(t0, SteadyClock::now()));
        Die(r.status(), "exec");
        if (r->exit_code != 0) Die(Status::Internal("exit " + std::to_string(r->exit_code)), "exec");
      }
      row.p50 = Pct(lat, 0.5);
      row.p99 = Pct(lat, 0.99);
      // Throughput: 4 threads, n execs in all.
      std::atomic<int> next{0};
      auto t0 = SteadyClock::now();
      std::vector<std::thread> threads;
      for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
          while (next.fetch_add(1) < n) {
            Die(ExecInSandbox(init->pid, procs, truth, *seccomp, CapSet::Default()).status(), "exec");
          }
        });
      }
      for (auto& th : threads) th.join();
      row.per_sec = n / (Ms(t0, SteadyClock::now()) / 1000.0);
      // K live commands, then rewrite the heap.
      std::vector<SandboxProcess> running;
      for (int k = 0; k < live; ++k) {
        SpawnSpec s;
        s.argv = {"/bin/busybox", "sleep", "1000"};
        auto p = SpawnInSandbox(init->pid, procs, s, *seccomp, CapSet::Default());
        Die(p.status(), "spawn");
        running.push_back(std::move(*p));
      }
      row.mid_rss_kib = RssKib(running.front().mid);
      auto w0 = SteadyClock::now();
      for (size_t i = 0; i < bytes; i += 4096) heap[i] = static_cast<char>(heap[i] + 1);
      row.rewrite_ms = Ms(w0, SteadyClock::now());
      running.clear();  // SIGKILL + reap
      rows.push_back(row);
      std::fprintf(stderr, "heap %d MiB %s: exec p50 %.2f ms\n", mib, row.method, row.p50);
    }
  }
  SetSpawnMethod(SpawnMethod::kVfork);

  if (markdown) {
    std::printf("| heap MiB | method | exec p50 ms | exec p99 ms | execs/s (4 threads) | heap rewrite ms (%d live) | "
                "intermediate RSS KiB |\n|---|---|---|---|---|---|---|\n",
                live);
  } else {
    std::printf("%-8s %-11s %11s %11s %12s %16s %10s\n", "heap", "method", "p50 ms", "p99 ms", "execs/s",
                "rewrite ms", "mid KiB");
  }
  for (const auto& r : rows) {
    if (markdown) {
      std::printf("| %d | %s | %.2f | %.2f | %.0f | %.1f | %ld |\n", r.heap_mib, r.method, r.p50, r.p99, r.per_sec,
                  r.rewrite_ms, r.mid_rss_kib);
    } else {
      std::printf("%-8d %-11s %11.2f %11.2f %12.0f %16.1f %10ld\n", r.heap_mib, r.method, r.p50, r.p99, r.per_sec,
                  r.rewrite_ms, r.mid_rss_kib);
    }
  }
  std::printf("\nratios vfork+exec / fork (below 1: vfork+exec is better)\n");
  for (size_t i = 0; i + 1 < rows.size(); i += 2) {
    const Row& f = rows[i];
    const Row& v = rows[i + 1];
    std::printf("heap %4d MiB: exec p50 %.2fx, p99 %.2fx, throughput %.2fx (higher is better), heap rewrite %.2fx\n",
                f.heap_mib, v.p50 / f.p50, v.p99 / f.p99, v.per_sec / f.per_sec,
                f.rewrite_ms > 0 ? v.rewrite_ms / f.rewrite_ms : 0.0);
  }
  std::fflush(stdout);

  kill(init->pid, SIGKILL);
  for (int i = 0; i < 3000 && kill(init->pid, 0) == 0; ++i) usleep(10000);
  Status s = (*cg)->Destroy(name);
  for (int i = 0; i < 100 && !s.ok(); ++i) {
    usleep(20000);
    s = (*cg)->Destroy(name);
  }
  if (!s.ok()) std::cerr << "cgroup destroy: " << s.ToString() << "\n";
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
    rmdir((std::string("/sys/fs/cgroup/") + c + "/" + prefix).c_str());
  }
  (void)RemoveTree(root);
  return 0;
}
