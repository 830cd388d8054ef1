#include "sandbox/cgroups.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <sstream>
#include <thread>

#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

bool PathExists(const std::string& p) {
  struct stat st;
  return stat(p.c_str(), &st) == 0;
}

Status WriteCg(const std::string& path, const std::string& value) {
  Status s = WriteStringToFile(path, value);
  return s.WithContext("cgroup write '" + value + "'");
}

Result<std::vector<pid_t>> ReadPids(const std::string& procs_file) {
  auto text = ReadFileToString(procs_file);
  if (!text.ok()) return text.status();
  std::vector<pid_t> pids;
  std::istringstream in(*text);
  long p;
  while (in >> p) pids.push_back(static_cast<pid_t>(p));
  return pids;
}

// `dir` and every cgroup below it, children before parents.
std::vector<std::string> TreePostOrder(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.is_directory(ec)) {
      auto sub = TreePostOrder(e.path());
      out.insert(out.end(), sub.begin(), sub.end());
    }
  }
  out.push_back(dir);
  return out;
}

// The pids in cgroup `dir` and all its descendants (sub-cgroups such as a
// shell session's belong to the sandbox too).
Result<std::vector<pid_t>> ReadTreePids(const std::string& dir) {
  std::vector<pid_t> all;
  for (const auto& d : TreePostOrder(dir)) {
    auto p = ReadPids(d + "/cgroup.procs");
    if (!p.ok()) {
      if (d != dir && p.status().code() == Code::kNotFound) continue;  // removed meanwhile
      return p.status();
    }
    all.insert(all.end(), p->begin(), p->end());
  }
  return all;
}

// Removes `dir` and its sub-cgroups (must be empty of tasks).
Status RemoveCgroupTree(const std::string& dir) {
  for (const auto& d : TreePostOrder(dir)) {
    // A just-killed task may linger a moment before rmdir succeeds.
    bool gone = false;
    for (int i = 0; i < 500; ++i) {
      if (rmdir(d.c_str()) == 0 || errno == ENOENT) {
        gone = true;
        break;
      }
      if (errno != EBUSY) return ErrnoStatus("rmdir " + d);
      std::this_thread::sleep_for(milliseconds(2));
    }
    if (!gone) return Status::Timeout("rmdir " + d);
  }
  return Status::Ok();
}

int64_t ReadInt(const std::string& path) {
  auto t = ReadFileToString(path);
  if (!t.ok()) return 0;
  try {
    return std::stoll(*t);
  } catch (...) {
    return 0;
  }
}

// Value of "key N" in a flat keyed file (memory.oom_control, memory.events).
int64_t ReadKeyed(const std::string& path, const std::string& key) {
  auto t = ReadFileToString(path);
  if (!t.ok()) return 0;
  std::istringstream in(*t);
  std::string k;
  int64_t v;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

class CgroupV1 final : public CgroupManager {
 public:
  CgroupV1(std::string root, std::string prefix) : root_(std::move(root)), prefix_(std::move(prefix)) {}

  std::string Version() const override { return "v1"; }

  Status Create(const std::string& name, const Resources& res) override {
    for (const char* c : kControllers) {
      std::string dir = Dir(c, name);
      WARREN_RETURN_IF_ERROR(MkdirAll(dir));
    }
    return Update(name, res);
  }

  Status Update(const std::string& name, const Resources& res) override {
    std::string cpu = Dir("cpu", name);
    if (res.cpus > 0) {
      WARREN_RETURN_IF_ERROR(WriteCg(cpu + "/cpu.cfs_period_us", "100000"));
      WARREN_RETURN_IF_ERROR(
          WriteCg(cpu + "/cpu.cfs_quota_us", std::to_string(static_cast<int64_t>(res.cpus * 100000))));
    } else if (PathExists(cpu + "/cpu.cfs_quota_us")) {
      WARREN_RETURN_IF_ERROR(WriteCg(cpu + "/cpu.cfs_quota_us", "-1"));
    }
    std::string mem = Dir("memory", name);
    if (res.memory_bytes > 0) {
      // memsw must stay >= limit: raise memsw first when growing.
      std::string memsw = mem + "/memory.memsw.limit_in_bytes";
      std::string v = std::to_string(res.memory_bytes);
      bool have_memsw = PathExists(memsw);
      if (have_memsw) (void)WriteStringToFile(memsw, v);  // may fail if below limit; retried below
      WARREN_RETURN_IF_ERROR(WriteCg(mem + "/memory.limit_in_bytes", v));
      if (have_memsw) WARREN_RETURN_IF_ERROR(WriteCg(memsw, v));
      if (PathExists(mem + "/memory.swappiness")) (void)WriteStringToFile(mem + "/memory.swappiness", "0");
    }
    std::string pids = Dir("pids", name);
    WARREN_RETURN_IF_ERROR(
        WriteCg(pids + "/pids.max", res.pids > 0 ? std::to_string(res.pids) : std::string("max")));
    return Status::Ok();
  }

  bool Exists(const std::string& name) const override {
    for (const char* c : kControllers) {
      if (PathExists(Dir(c, name))) return true;
    }
    return false;
  }

  std::vector<std::string> ProcsFiles(const std::string& name) const override {
    std::vector<std::string> out;
    for (const char* c : kControllers) out.push_back(Dir(c, name) + "/cgroup.procs");
    return out;
  }

  Status AddProcess(const std::string& name, pid_t pid) override {
    for (const auto& f : ProcsFiles(name)) WARREN_RETURN_IF_ERROR(WriteCg(f, std::to_string(pid)));
    return Status::Ok();
  }

  Result<std::vector<pid_t>> Pids(const std::string& name) const override {
    return ReadTreePids(Dir("freezer", name));
  }

  Status Freeze(const std::string& name, milliseconds timeout) override {
    std::string state = Dir("freezer", name) + "/freezer.state";
    WARREN_RETURN_IF_ERROR(WriteCg(state, "FROZEN"));
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto s = ReadFileToString(state);
      if (!s.ok()) return s.status();
      if (s->rfind("FROZEN", 0) == 0) return Status::Ok();
      if (Clock::now() > deadline) {
        (void)WriteStringToFile(state, "THAWED");
        return Status::Timeout("freezer did not reach FROZEN");
      }
      std::this_thread::sleep_for(milliseconds(1));
      (void)WriteStringToFile(state, "FROZEN");
    }
  }

  Status Thaw(const std::string& name) override {
    return WriteCg(Dir("freezer", name) + "/freezer.state", "THAWED");
  }

  Result<bool> IsFrozen(const std::string& name) const override {
    auto s = ReadFileToString(Dir("freezer", name) + "/freezer.state");
    if (!s.ok()) return s.status();
    return s->rfind("FROZEN", 0) == 0;
  }

  Status KillAll(const std::string& name, milliseconds timeout) override {
    if (!PathExists(Dir("freezer", name))) return Status::Ok();
    auto deadline = Clock::now() + timeout;
    for (;;) {
      auto pids = Pids(name);
      if (!pids.ok()) return pids.status();
      if (pids->empty()) return Status::Ok();
      // Freeze so that nothing forks between listing and killing.
      (void)Freeze(name, milliseconds(500));
      auto frozen_pids = Pids(name);
      if (frozen_pids.ok()) {
        for (pid_t p : *frozen_pids) kill(p, SIGKILL);
      }
      (void)Thaw(name);
      if (Clock::now() > deadline) return Status::Timeout("cgroup " + name + " did not empty");
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  Status Destroy(const std::string& name) override {
    WARREN_RETURN_IF_ERROR(KillAll(name, milliseconds(10000)));
    for (const char* c : kControllers) WARREN_RETURN_IF_ERROR(RemoveCgroupTree(Dir(c, name)));
    return Status::Ok();
  }

  Result<std::vector<std::string>> List() const override {
    std::vector<std::string> out;
    for (const char* c : kControllers) {
      std::string base = root_ + "/" + c + "/" + prefix_;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(base, ec)) {
        if (!e.is_directory()) continue;
        std::string n = e.path().filename();
        if (std::find(out.begin(), out.end(), n) == out.end()) out.push_back(n);
      }
    }
    return out;
  }

  Result<CgroupStats> Stats(const std::string& name) const override {
    CgroupStats st;
    std::string mem = Dir("memory", name);
    st.memory_bytes = ReadInt(mem + "/memory.usage_in_bytes");
    st.memory_peak_bytes = ReadInt(mem + "/memory.max_usage_in_bytes");
    st.oom_kills = ReadKeyed(mem + "/memory.oom_control", "oom_kill");
    st.pids = ReadInt(Dir("pids", name) + "/pids.current");
    st.cpu_usage_ns = static_cast<uint64_t>(ReadInt(root_ + "/cpuacct/" + prefix_ + "/" + name + "/cpuacct.usage"));
    return st;
  }

 private:
  static constexpr const char* kControllers[] = {"cpu", "memory", "pids", "freezer"};
  std::string Dir(const char* controller, const std::string& name) const {
    return root_ + "/" + controller + "/" + prefix_ + "/" + name;
  }
  std::string root_, prefix_;
};

class CgroupV2 final : public CgroupManager {
 public:
  CgroupV2(std::string root, std::string prefix) : root_(std::move(root)), prefix_(std::move(prefix)) {}

  std::string Version() const override { return "v2"; }

  Status Create(const std::string& name, const Resources& res) override {
    std::string parent = root_ + "/" + prefix_;
    WARREN_RETURN_IF_ERROR(MkdirAll(parent));
    // Delegate the controllers to our subtree (ignore ones the host lacks).
    for (const char* c : {"+cpu", "+memory", "+pids"}) {
      (void)WriteStringToFile(root_ + "/cgroup.subtree_control", c);
      (void)WriteStringToFile(parent + "/cgroup.subtree_control", c);
    }
    WARREN_RETURN_IF_ERROR(MkdirAll(Dir(name)));
    return Update(name, res);
  }

  Status Update(const std::string& name, const Resources& res) override {
    std::string d = Dir(name);
    WARREN_RETURN_IF_ERROR(WriteCg(
        d + "/cpu.max",
        res.cpus > 0 ? std::to_string(static_cast<int64_t>(res.cpus * 100000)) + " 100000" : "max 100000"));
    WARREN_RETURN_IF_ERROR(
        WriteCg(d + "/memory.max", res.memory_bytes > 0 ? std::to_string(res.memory_bytes) : "max"));
    (void)WriteStringToFile(d + "/memory.swap.max", "0");
    (void)WriteStringToFile(d + "/memory.oom.group", "1");
    WARREN_RETURN_IF_ERROR(WriteCg(d + "/pids.max", res.pids > 0 ? std::to_string(res.pids) : "max"));
    return Status::Ok();
  }

  bool Exists(const std::string& name) const override { return PathExists(Dir(name)); }

  std::vector<std::string> ProcsFiles(const std::string& name) const override {
    return {Dir(name) + "/cgroup.procs"};
  }

  Status AddProcess(const std::string& name, pid_t pid) override {
    return WriteCg(Dir(name) + "/cgroup.procs", std::to_string(pid));
  }

  Result<std::vector<pid_t>> Pids(const std::string& name) const override { return ReadTreePids(Dir(name)); }

  Status Freeze(const std::string& name, milliseconds timeout) override {
    WARREN_RETURN_IF_ERROR(WriteCg(Dir(name) + "/cgroup.freeze", "1"));
    auto deadline = Clock::now() + timeout;
    while (ReadKeyed(Dir(name) + "/cgroup.events", "frozen") != 1) {
      if (Clock::now() > deadline) {
        (void)Thaw(name);
        return Status::Timeout("cgroup did not report frozen");
      }
      std::this_thread::sleep_for(milliseconds(1));
    }
    return Status::Ok();
  }

  Status Thaw(const std::string& name) override { return WriteCg(Dir(name) + "/cgroup.freeze", "0"); }

  Result<bool> IsFrozen(const std::string& name) const override {
    return ReadKeyed(Dir(name) + "/cgroup.events", "frozen") == 1;
  }

  Status KillAll(const std::string& name, milliseconds timeout) override {
    if (!Exists(name)) return Status::Ok();
    auto deadline = Clock::now() + timeout;
    bool have_kill = PathExists(Dir(name) + "/cgroup.kill");
    for (;;) {
      auto pids = Pids(name);
      if (!pids.ok()) return pids.status();
      if (pids->empty()) return Status::Ok();
      if (have_kill) {
        (void)WriteStringToFile(Dir(name) + "/cgroup.kill", "1");
      } else {
        for (pid_t p : *pids) kill(p, SIGKILL);
      }
      if (Clock::now() > deadline) return Status::Timeout("cgroup " + name + " did not empty");
      std::this_thread::sleep_for(milliseconds(2));
    }
  }

  Status Destroy(const std::string& name) override {
    WARREN_RETURN_IF_ERROR(KillAll(name, milliseconds(10000)));
    return RemoveCgroupTree(Dir(name));
  }

  Result<std::vector<std::string>> List() const override {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(root_ + "/" + prefix_, ec)) {
      if (e.is_directory()) out.push_back(e.path().filename());
    }
    return out;
  }

  Result<CgroupStats> Stats(const std::string& name) const override {
    CgroupStats st;
    std::string d = Dir(name);
    st.memory_bytes = ReadInt(d + "/memory.current");
    st.memory_peak_bytes = ReadInt(d + "/memory.peak");
    st.oom_kills = ReadKeyed(d + "/memory.events", "oom_kill");
    st.pids = ReadInt(d + "/pids.current");
    st.cpu_usage_ns = static_cast<uint64_t>(ReadKeyed(d + "/cpu.stat", "usage_usec")) * 1000;
    return st;
  }

 private:
  std::string Dir(const std::string& name) const { return root_ + "/" + prefix_ + "/" + name; }
  std::string root_, prefix_;
};

}  // namespace

std::unique_ptr<CgroupManager> NewCgroupV1(std::string root, std::string prefix) {
  return std::make_unique<CgroupV1>(std::move(root), std::move(prefix));
}

std::unique_ptr<CgroupManager> NewCgroupV2(std::string root, std::string prefix) {
  return std::make_unique<CgroupV2>(std::move(root), std::move(prefix));
}

Result<std::unique_ptr<CgroupManager>> DetectCgroupManager(const std::string& prefix) {
  if (PathExists("/sys/fs/cgroup/cgroup.controllers")) return NewCgroupV2("/sys/fs/cgroup", prefix);
  for (const char* c : {"cpu", "memory", "pids", "freezer"}) {
    if (!PathExists(std::string("/sys/fs/cgroup/") + c + "/cgroup.procs")) {
      return Status::Unavailable(std::string("cgroup v1 controller missing: ") + c);
    }
  }
  return NewCgroupV1("/sys/fs/cgroup", prefix);
}

}  // namespace warren::sandbox
