#include "sandbox/state.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>

#include "sandbox/sys.h"

namespace warren::sandbox {
namespace {
const char* const kStateNames[] = {"creating", "starting", "started",  "stopping",   "stopped", "pausing",
                                   "paused",   "resuming", "forking",  "destroying", "destroyed", "error",
                                   "archiving", "archived", "restoring"};
}

std::string StateName(SandboxState s) { return kStateNames[static_cast<int>(s)]; }

Result<SandboxState> ParseState(const std::string& s) {
  for (int i = 0; i < static_cast<int>(std::size(kStateNames)); ++i) {
    if (s == kStateNames[i]) return static_cast<SandboxState>(i);
  }
  return Status::InvalidArgument("unknown sandbox state: " + s);
}

bool IsTransitional(SandboxState s) {
  switch (s) {
    case SandboxState::kCreating:
    case SandboxState::kStarting:
    case SandboxState::kStopping:
    case SandboxState::kPausing:
    case SandboxState::kResuming:
    case SandboxState::kForking:
    case SandboxState::kDestroying:
    case SandboxState::kArchiving:
    case SandboxState::kRestoring:
      return true;
    default:
      return false;
  }
}

Json ResourcesToJson(const Resources& r) {
  return Json{{"cpus", r.cpus}, {"memory_bytes", r.memory_bytes}, {"pids", r.pids}, {"disk_bytes", r.disk_bytes}};
}

Resources ResourcesFromJson(const Json& j) {
  Resources r;
  if (!j.is_object()) return r;
  r.cpus = j.value("cpus", 0.0);
  r.memory_bytes = j.value("memory_bytes", int64_t{0});
  r.pids = j.value("pids", int64_t{0});
  r.disk_bytes = j.value("disk_bytes", int64_t{0});
  return r;
}

Json SandboxRecord::ToJson() const {
  Json binds = Json::array();
  for (const auto& b : host_binds) binds.push_back({{"host_path", b.host_path}, {"path", b.path}});
  Json vols = Json::array();
  for (const auto& v : volumes) {
    vols.push_back({{"volume", v.volume}, {"path", v.path}, {"subpath", v.subpath}, {"read_only", v.read_only}});
  }
  return Json{{"id", id},
              {"name", name},
              {"snapshot", snapshot},
              {"snapshot_hash", snapshot_hash},
              {"state", StateName(state)},
              {"prev_state", StateName(prev_state)},
              {"error", error},
              {"id_slot", id_slot},
              {"init_pid", init_pid},
              {"init_start_time", init_start_time},
              {"labels", labels},
              {"env", env},
              {"resources", ResourcesToJson(resources)},
              {"network", network},
              {"allow_cidrs", allow_cidrs},
              {"allow_hosts", allow_hosts},
              {"block_all", block_all},
              {"dns", dns},
              {"ip", ip},
              {"user", user},
              {"workdir", workdir},
              {"volumes", vols},
              {"host_binds", binds},
              {"parent", parent},
              {"children", children},
              {"created_at", created_at},
              {"updated_at", updated_at},
              {"last_activity", last_activity},
              {"state_deadline", state_deadline},
              {"auto_stop_minutes", auto_stop_minutes},
              {"auto_archive_minutes", auto_archive_minutes},
              {"auto_delete_minutes", auto_delete_minutes},
              {"stopped_at", stopped_at},
              {"archive_bytes", archive_bytes},
              {"deleted", deleted}};
}

Result<SandboxRecord> SandboxRecord::FromJson(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("sandbox record is not an object");
  SandboxRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.name = j.value("name", "");
    r.snapshot = j.value("snapshot", "");
    r.snapshot_hash = j.value("snapshot_hash", "");
    WARREN_ASSIGN_OR_RETURN(r.state, ParseState(j.value("state", "error")));
    WARREN_ASSIGN_OR_RETURN(r.prev_state, ParseState(j.value("prev_state", "stopped")));
    r.error = j.value("error", "");
    r.id_slot = j.value("id_slot", -1);
    r.init_pid = j.value("init_pid", -1);
    r.init_start_time = j.value("init_start_time", uint64_t{0});
    if (j.contains("labels")) r.labels = j.at("labels").get<std::map<std::string, std::string>>();
    if (j.contains("env")) r.env = j.at("env").get<std::vector<std::string>>();
    r.resources = ResourcesFromJson(j.value("resources", Json::object()));
    r.network = j.value("network", "none");
    if (j.contains("allow_cidrs")) r.allow_cidrs = j.at("allow_cidrs").get<std::vector<std::string>>();
    if (j.contains("allow_hosts")) r.allow_hosts = j.at("allow_hosts").get<std::vector<std::string>>();
    r.block_all = j.value("block_all", false);
    if (j.contains("dns")) r.dns = j.at("dns").get<std::vector<std::string>>();
    r.ip = j.value("ip", "");
    r.user = j.value("user", "");
    r.workdir = j.value("workdir", "");
    for (const auto& v : j.value("volumes", Json::array())) {
      r.volumes.push_back(VolumeMount{v.value("volume", ""), v.value("path", ""), v.value("subpath", ""),
                                      v.value("read_only", false)});
    }
    for (const auto& b : j.value("host_binds", Json::array())) {
      r.host_binds.push_back(HostBind{b.value("host_path", ""), b.value("path", "")});
    }
    r.parent = j.value("parent", "");
    if (j.contains("children")) r.children = j.at("children").get<std::vector<std::string>>();
    r.created_at = j.value("created_at", int64_t{0});
    r.updated_at = j.value("updated_at", int64_t{0});
    r.last_activity = j.value("last_activity", int64_t{0});
    r.state_deadline = j.value("state_deadline", int64_t{0});
    r.auto_stop_minutes = j.value("auto_stop_minutes", int64_t{0});
    r.auto_archive_minutes = j.value("auto_archive_minutes", int64_t{0});
    r.auto_delete_minutes = j.value("auto_delete_minutes", kNeverDelete);
    r.stopped_at = j.value("stopped_at", int64_t{0});
    r.archive_bytes = j.value("archive_bytes", int64_t{0});
    r.deleted = j.value("deleted", false);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("bad sandbox record: ") + e.what());
  }
  return r;
}

Json SnapshotRecord::ToJson() const {
  return Json{{"name", name},       {"hash", hash},     {"env", env},
              {"workdir", workdir}, {"user", user},     {"resources", ResourcesToJson(resources)},
              {"layers", layers},   {"created_at", created_at}, {"recipe", recipe}, {"ref", Ref()}};
}

Result<SnapshotRecord> SnapshotRecord::FromJson(const Json& j) {
  if (!j.is_object()) return Status::InvalidArgument("snapshot record is not an object");
  SnapshotRecord r;
  try {
    r.name = j.at("name").get<std::string>();
    r.hash = j.at("hash").get<std::string>();
    if (j.contains("env")) r.env = j.at("env").get<std::vector<std::string>>();
    r.workdir = j.value("workdir", "/");
    r.user = j.value("user", "root");
    r.resources = ResourcesFromJson(j.value("resources", Json::object()));
    if (j.contains("layers")) r.layers = j.at("layers").get<std::vector<std::string>>();
    r.created_at = j.value("created_at", int64_t{0});
    r.recipe = j.value("recipe", "");
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("bad snapshot record: ") + e.what());
  }
  return r;
}

Status JsonDir::Put(const std::string& key, const Json& value) const {
  WARREN_RETURN_IF_ERROR(MkdirAll(dir_));
  return WriteFileAtomic(dir_ + "/" + key + ".json", value.dump(2) + "\n");
}

Result<Json> JsonDir::Get(const std::string& key) const {
  auto text = ReadFileToString(dir_ + "/" + key + ".json");
  if (!text.ok()) return text.status();
  return ParseJson(*text);
}

Status JsonDir::Remove(const std::string& key) const {
  std::string p = dir_ + "/" + key + ".json";
  if (unlink(p.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("unlink " + p);
  return Status::Ok();
}

std::vector<std::string> JsonDir::Keys() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    std::string f = e.path().filename();
    if (f.size() > 5 && f.substr(f.size() - 5) == ".json") out.push_back(f.substr(0, f.size() - 5));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace warren::sandbox
