#include "store/memory_store.h"

#include <algorithm>
#include <set>

#include "common/ids.h"
#include "store/row_util.h"

namespace warren::store {
namespace {

using internal::ArchivedFlag;
using internal::AwaitingEngine;
using internal::IntField;
using internal::LiveWorkState;
using internal::MemoryStoresOf;
using internal::StrField;
using internal::TimeOf;
using internal::TimeStrOf;
using internal::UpdateChangeType;

// A string member of an object, or "" (never throws on odd rows).
std::string StrOr(const Json& obj, const char* key) {
  if (!obj.is_object() || !obj.contains(key) || !obj[key].is_string()) return "";
  return obj[key].get<std::string>();
}

bool InRange(const TimeRange& r, int64_t t) {
  if (r.gt && !(t > *r.gt)) return false;
  if (r.gte && !(t >= *r.gte)) return false;
  if (r.lt && !(t < *r.lt)) return false;
  if (r.lte && !(t <= *r.lte)) return false;
  return true;
}

// Keyset paging over rows sorted by ascending seq; the same semantics as
// SqliteStore's QueryPage (store.h PageSpec/Page).
Page PageOf(const std::vector<std::pair<int64_t, const Json*>>& rows, const PageSpec& spec) {
  const bool desc = spec.order == Order::kDesc;
  const size_t limit = static_cast<size_t>(std::clamp(spec.limit, 1, 1000));
  bool backwards = false;
  std::vector<std::pair<int64_t, const Json*>> cand;
  for (const auto& r : rows) {
    if (spec.after) {
      if (desc ? !(r.first < *spec.after) : !(r.first > *spec.after)) continue;
    } else if (spec.before) {
      if (desc ? !(r.first > *spec.before) : !(r.first < *spec.before)) continue;
    }
    cand.push_back(r);
  }
  if (!spec.after && spec.before) backwards = true;
  const bool asc_scan = desc == backwards;
  if (!asc_scan) std::reverse(cand.begin(), cand.end());
  bool extra = cand.size() > limit;
  if (extra) cand.resize(limit);
  if (backwards) std::reverse(cand.begin(), cand.end());
  Page page;
  for (const auto& [seq, body] : cand) {
    page.items.push_back(*body);
    page.seqs.push_back(seq);
  }
  if (cand.empty()) {
    page.more_after = spec.before.has_value();
    page.more_before = spec.after.has_value();
    return page;
  }
  auto exists = [&](bool lower, int64_t pivot) {
    for (const auto& r : rows)
      if (lower ? r.first < pivot : r.first > pivot) return true;
    return false;
  };
  if (backwards) {
    page.more_before = extra;
    page.more_after = exists(desc, page.seqs.back());
  } else {
    page.more_after = extra;
    page.more_before = exists(!desc, page.seqs.front());
  }
  return page;
}

}  // namespace

MemoryStore::MemoryStore(Clock* clock, MemoryStoreOptions options)
    : clock_(clock), abort_attempts_(std::max(0, options.abort_attempts)) {}

// Every mutating method computes its writes on copies, so an aborted attempt
// (abort_attempts_) is simply discarded; the committing attempt applies them
// under the same lock and then runs the hook.

// ------------------------------------------------------------------ agents

Status MemoryStore::CreateAgent(const Json& agent) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(agent, "id", "agent"));
  WARREN_ASSIGN_OR_RETURN(int64_t version, IntField(agent, "version", "agent"));
  std::lock_guard<std::mutex> lock(mu_);
  if (agents_.count(id)) return Status::Conflict("agent " + id + " already exists");
  agents_[id] = Row{next_seq_++, TimeOf(agent, "created_at", clock_), ArchivedFlag(agent) != 0, agent};
  versions_[id][version] = {next_seq_++, agent};
  CommitObjectChangeLocked({"agent.created", id, "", "", TimeStrOf(agent, "created_at", clock_)});
  return Status::Ok();
}

Result<Json> MemoryStore::GetAgent(const std::string& id, std::optional<int> version) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = agents_.find(id);
  if (it == agents_.end()) return Status::NotFound("agent " + id + " not found");
  if (!version) return it->second.body;
  auto& vs = versions_[id];
  auto v = vs.find(*version);
  if (v == vs.end()) return Status::NotFound("agent " + id + " has no version " + std::to_string(*version));
  Json j = v->second.second;
  if (j.is_object() && it->second.body.contains("archived_at")) j["archived_at"] = it->second.body["archived_at"];
  return j;
}

Result<Json> MemoryStore::UpdateAgent(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = agents_.find(id);
    if (it == agents_.end()) return Status::NotFound("agent " + id + " not found");
    const Json current = it->second.body;
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (next == current) {
      if (attempt < abort_attempts_) continue;
      return current;
    }
    WARREN_ASSIGN_OR_RETURN(int64_t version, IntField(next, "version", "agent"));
    WARREN_ASSIGN_OR_RETURN(int64_t cur_version, IntField(current, "version", "agent"));
    if (version != cur_version && version != cur_version + 1)
      return Status::Conflict("agent " + id + ": version " + std::to_string(version) + " does not follow " +
                              std::to_string(cur_version));
    if (attempt < abort_attempts_) continue;
    it->second.body = next;
    it->second.archived = ArchivedFlag(next) != 0;
    if (version != cur_version) versions_[id][version] = {next_seq_++, next};
    const std::string change = UpdateChangeType("agent", current, next, version != cur_version ? "agent.updated" : "");
    if (change == "agent.archived")
      CommitObjectChangeLocked({change, id, "", "", TimeStrOf(next, "archived_at", clock_)});
    else if (!change.empty())
      CommitObjectChangeLocked({change, id, "", "v" + std::to_string(version), TimeStrOf(next, "updated_at", clock_)});
    return next;
  }
}

Result<Page> MemoryStore::ListAgents(const AgentFilter& filter, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, r] : agents_)
    if ((filter.include_archived || !r.archived) && InRange(filter.created, r.created_at)) rows.emplace_back(r.seq, &r.body);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Result<Page> MemoryStore::ListAgentVersions(const std::string& id, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!agents_.count(id)) return Status::NotFound("agent " + id + " not found");
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [v, row] : versions_[id]) rows.emplace_back(row.first, &row.second);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

// ------------------------------------------------------------ environments

Status MemoryStore::CreateEnvironment(const Json& env) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(env, "id", "environment"));
  WARREN_ASSIGN_OR_RETURN(std::string name, StrField(env, "name", "environment"));
  std::lock_guard<std::mutex> lock(mu_);
  if (envs_.count(id)) return Status::Conflict("environment " + id + " already exists");
  for (const auto& [other, r] : envs_)
    if (StrOr(r.body, "name") == name)
      return Status::Conflict("an environment named '" + name + "' already exists (" + other + ")");
  envs_[id] = Row{next_seq_++, TimeOf(env, "created_at", clock_), ArchivedFlag(env) != 0, env};
  CommitObjectChangeLocked({"environment.created", id, "", "", TimeStrOf(env, "created_at", clock_)});
  return Status::Ok();
}

Result<Json> MemoryStore::GetEnvironment(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = envs_.find(id);
  if (it == envs_.end()) return Status::NotFound("environment " + id + " not found");
  return it->second.body;
}

Result<Json> MemoryStore::UpdateEnvironment(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = envs_.find(id);
    if (it == envs_.end()) return Status::NotFound("environment " + id + " not found");
    const Json current = it->second.body;
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (next != current) {
      WARREN_ASSIGN_OR_RETURN(std::string name, StrField(next, "name", "environment"));
      for (const auto& [other, r] : envs_)
        if (other != id && StrOr(r.body, "name") == name)
          return Status::Conflict("an environment named '" + name + "' already exists (" + other + ")");
    }
    if (attempt < abort_attempts_) continue;
    it->second.body = next;
    it->second.archived = ArchivedFlag(next) != 0;
    CommitObjectUpdateLocked("environment", id, "", current, next, "environment.updated");
    return next;
  }
}

Result<Page> MemoryStore::ListEnvironments(bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, r] : envs_)
    if (include_archived || !r.archived) rows.emplace_back(r.seq, &r.body);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Status MemoryStore::DeleteEnvironment(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!envs_.erase(id)) return Status::NotFound("environment " + id + " not found");
  for (auto it = keys_.begin(); it != keys_.end();)
    it = it->second.environment_id == id ? keys_.erase(it) : std::next(it);
  holders_.erase(id);
  CommitObjectChangeLocked({"environment.deleted", id, "", "", FormatRfc3339(clock_->NowMicros())});
  return Status::Ok();
}

// ---------------------------------------------------------------- sessions

Result<std::vector<StoredEvent>> MemoryStore::InsertEventsLocked(const std::string& session_id,
                                                                 const std::vector<Json>& events, SessionEvents* log) {
  std::vector<StoredEvent> out;
  for (const Json& ev : events) {
    WARREN_ASSIGN_OR_RETURN(std::string id, StrField(ev, "id", "event"));
    WARREN_ASSIGN_OR_RETURN(std::string type, StrField(ev, "type", "event"));
    if (log->seq_by_id.count(id)) return Status::Conflict("event " + id + " already exists in session " + session_id);
    int64_t seq = next_seq_++;
    log->by_seq[seq] = EventRow{seq, id, type, TimeOf(ev, "processed_at", clock_), ev};
    log->seq_by_id[id] = seq;
    out.push_back(StoredEvent{seq, ev});
    if (outbox_rule_)
      for (OutboxMessage& m : outbox_rule_(session_id, ev)) log->outbox.push_back(std::move(m));
  }
  return out;
}

void MemoryStore::CommitOutboxLocked(SessionEvents* log) {
  CommitMessagesLocked(std::move(log->outbox));
  log->outbox.clear();
}

void MemoryStore::CommitMessagesLocked(std::vector<OutboxMessage> messages) {
  const int64_t now = clock_->NowMicros();
  bool added = false;
  for (OutboxMessage& m : messages) {
    if (!outbox_keys_.insert({m.message_id, m.endpoint}).second) continue;
    OutboxDelivery d;
    d.seq = next_seq_++;
    if (m.object_id.empty()) m.object_id = m.session_id;
    d.message = std::move(m);
    d.created_at = now;
    d.next_attempt_at = now;
    outbox_[d.seq] = std::move(d);
    added = true;
  }
  if (added && outbox_listener_) outbox_listener_();
}

void MemoryStore::CommitObjectChangeLocked(const ObjectChange& change) {
  if (object_rule_) CommitMessagesLocked(object_rule_(change));
}

void MemoryStore::CommitObjectUpdateLocked(const std::string& kind, const std::string& id, const std::string& parent_id,
                                           const Json& current, const Json& next, const std::string& updated_type) {
  if (!object_rule_) return;
  const std::string type = UpdateChangeType(kind, current, next, updated_type);
  if (type.empty()) return;
  if (type == kind + ".archived")
    CommitObjectChangeLocked({type, id, parent_id, "", TimeStrOf(next, "archived_at", clock_)});
  else
    CommitObjectChangeLocked({type, id, parent_id, NewId("chg_", 20), TimeStrOf(next, "updated_at", clock_)});
}

Result<std::vector<StoredEvent>> MemoryStore::CreateSession(const Json& session, const std::vector<Json>& initial_events,
                                                            const CommitHook& hook) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(session, "id", "session"));
  WARREN_RETURN_IF_ERROR(StrField(session, "environment_id", "session").status());
  WARREN_RETURN_IF_ERROR(StrField(session, "status", "session").status());
  const Json agent = session.contains("agent") ? session["agent"] : Json();
  WARREN_RETURN_IF_ERROR(StrField(agent, "id", "session.agent").status());
  WARREN_RETURN_IF_ERROR(IntField(agent, "version", "session.agent").status());
  std::lock_guard<std::mutex> lock(mu_);
  if (sessions_.count(id)) return Status::Conflict("session " + id + " already exists");
  int64_t seq_before = next_seq_;
  SessionEvents log;
  int64_t session_seq = next_seq_++;
  if (outbox_rule_)
    log.outbox = outbox_rule_(id, Json{{"type", "session.created"}, {"processed_at", session.contains("created_at") ? session["created_at"] : Json()}});
  auto stored = InsertEventsLocked(id, initial_events, &log);
  if (!stored.ok()) {
    next_seq_ = seq_before;  // rolled back
    return stored.status();
  }
  sessions_[id] = Row{session_seq, TimeOf(session, "created_at", clock_), ArchivedFlag(session) != 0, session};
  events_[id] = std::move(log);
  CommitOutboxLocked(&events_[id]);
  if (hook && !stored->empty()) hook(*stored);
  return stored;
}

Result<Json> MemoryStore::GetSession(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return Status::NotFound("session " + id + " not found");
  return it->second.body;
}

Result<Json> MemoryStore::UpdateSession(const std::string& id, const SessionMutator& mutate, const CommitHook& hook) {
  return StepSession(
      id, [&](const Json& current, SessionStep* step) { return mutate(current, &step->append); }, hook);
}

Result<Json> MemoryStore::StepSession(const std::string& id, const StepMutator& mutate, const CommitHook& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = sessions_.find(id);
    if (it == sessions_.end()) return Status::NotFound("session " + id + " not found");
    const Json current = it->second.body;
    SessionStep step;
    auto committed = engine_.find(id);
    if (committed != engine_.end()) step.engine_in = committed->second;
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current, &step));
    WARREN_RETURN_IF_ERROR(StrField(next, "status", "session").status());
    {
      const auto rows = transcript_.find(id);
      for (const TranscriptEntry& t : step.transcript)
        if (rows != transcript_.end() && rows->second.count(t.idx))
          return Status::Conflict("transcript row " + std::to_string(t.idx) + " of " + id + " exists");
    }
    // Stage on a copy of the session's log; commit by swapping it in.
    SessionEvents log = events_[id];
    for (const Json& ev : step.replace) {
      WARREN_ASSIGN_OR_RETURN(std::string eid, StrField(ev, "id", "event"));
      WARREN_ASSIGN_OR_RETURN(std::string type, StrField(ev, "type", "event"));
      auto s = log.seq_by_id.find(eid);
      if (s == log.seq_by_id.end()) return Status::NotFound("event " + eid + " not found in session " + id);
      EventRow& row = log.by_seq[s->second];
      row.body = ev;
      row.type = type;
      if (ev.contains("processed_at") && ev["processed_at"].is_string()) row.ts = TimeOf(ev, "processed_at", clock_);
    }
    const int64_t seq_before = next_seq_;
    auto stored = InsertEventsLocked(id, step.append, &log);
    if (!stored.ok()) {
      next_seq_ = seq_before;
      return stored.status();
    }
    if (attempt < abort_attempts_) {
      next_seq_ = seq_before;
      continue;
    }
    const bool archived_now = !it->second.archived && ArchivedFlag(next) != 0;
    it->second.body = next;
    it->second.archived = ArchivedFlag(next) != 0;
    if (archived_now && outbox_rule_)
      for (OutboxMessage& m : outbox_rule_(id, Json{{"type", "session.archived"}, {"processed_at", next["archived_at"]}}))
        log.outbox.push_back(std::move(m));
    events_[id] = std::move(log);
    CommitOutboxLocked(&events_[id]);
    if (step.engine) engine_[id] = *step.engine;
    for (const TranscriptEntry& t : step.transcript) transcript_[id][t.idx] = t;
    if (hook) {
      std::vector<StoredEvent> ordered;
      for (const Json& ev : step.replace) ordered.push_back(StoredEvent{0, ev});
      ordered.insert(ordered.end(), stored->begin(), stored->end());
      if (!ordered.empty()) hook(ordered);
    }
    return next;
  }
}

Result<Page> MemoryStore::ListSessions(const SessionFilter& f, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, r] : sessions_) {
    const Json& b = r.body;
    if (!f.include_archived && r.archived) continue;
    const Json agent = b.contains("agent") ? b["agent"] : Json();
    if (f.agent_id && StrOr(agent, "id") != *f.agent_id) continue;
    if (f.agent_version && !(agent.is_object() && agent.contains("version") && agent["version"] == *f.agent_version))
      continue;
    if (f.environment_id && StrOr(b, "environment_id") != *f.environment_id) continue;
    if (f.deployment_id && StrOr(b, "deployment_id") != *f.deployment_id) continue;
    if (f.memory_store_id) {
      auto ms = MemoryStoresOf(b);
      if (std::find(ms.begin(), ms.end(), *f.memory_store_id) == ms.end()) continue;
    }
    if (!f.statuses.empty() &&
        std::find(f.statuses.begin(), f.statuses.end(), StrOr(b, "status")) == f.statuses.end())
      continue;
    if (!InRange(f.created, r.created_at)) continue;
    rows.emplace_back(r.seq, &r.body);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Result<std::vector<std::string>> MemoryStore::SessionsNeedingEngine() {
  std::lock_guard<std::mutex> lock(mu_);
  std::set<std::string> out;
  for (const auto& [id, r] : sessions_) {
    std::string status = StrOr(r.body, "status");
    if (status == "running" || status == "rescheduling") out.insert(id);
  }
  for (const auto& [sid, log] : events_)
    for (const auto& [seq, e] : log.by_seq)
      if (AwaitingEngine(e.type, e.body)) {
        out.insert(sid);
        break;
      }
  return std::vector<std::string>(out.begin(), out.end());
}

Status MemoryStore::DeleteSession(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sessions_.erase(id)) return Status::NotFound("session " + id + " not found");
  events_.erase(id);
  if (outbox_rule_) {
    SessionEvents staged;
    staged.outbox = outbox_rule_(id, Json{{"type", "session.deleted"}, {"processed_at", FormatRfc3339(clock_->NowMicros())}});
    CommitOutboxLocked(&staged);
  }
  engine_.erase(id);
  transcript_.erase(id);
  secrets_.erase(id);
  for (auto it = keys_.begin(); it != keys_.end();) it = it->second.session_id == id ? keys_.erase(it) : std::next(it);
  return Status::Ok();
}

// ------------------------------------------------------------------ session secrets, engine state

// ------------------------------------------------------------------ vaults

Status MemoryStore::CreateVault(const Json& vault) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(vault, "id", "vault"));
  std::lock_guard<std::mutex> lock(mu_);
  if (vaults_.count(id)) return Status::Conflict("vault " + id + " already exists");
  vaults_[id] = Row{next_seq_++, TimeOf(vault, "created_at", clock_), ArchivedFlag(vault) != 0, vault};
  CommitObjectChangeLocked({"vault.created", id, "", "", TimeStrOf(vault, "created_at", clock_)});
  return Status::Ok();
}

Result<Json> MemoryStore::GetVault(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = vaults_.find(id);
  if (it == vaults_.end()) return Status::NotFound("vault " + id + " not found");
  return it->second.body;
}

Result<Json> MemoryStore::UpdateVault(const std::string& id, const Mutator& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = vaults_.find(id);
    if (it == vaults_.end()) return Status::NotFound("vault " + id + " not found");
    const Json current = it->second.body;
    WARREN_ASSIGN_OR_RETURN(Json next, mutate(current));
    if (attempt < abort_attempts_) continue;
    it->second.body = next;
    it->second.archived = ArchivedFlag(next) != 0;
    CommitObjectUpdateLocked("vault", id, "", current, next, "");
    return next;
  }
}

Result<Page> MemoryStore::ListVaults(bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, r] : vaults_)
    if (include_archived || !r.archived) rows.emplace_back(r.seq, &r.body);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Status MemoryStore::DeleteVault(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!vaults_.erase(id)) return Status::NotFound("vault " + id + " not found");
  const std::string now = FormatRfc3339(clock_->NowMicros());
  std::vector<std::string> cred_ids;  // by id, as the map is ordered
  for (auto it = creds_.begin(); it != creds_.end();) {
    if (StrOr(it->second.rec.body, "vault_id") == id) {
      cred_ids.push_back(it->first);
      it = creds_.erase(it);
    } else {
      ++it;
    }
  }
  // Each credential deleted with the vault is reported (docs/WEBHOOKS.md).
  for (const std::string& cid : cred_ids) CommitObjectChangeLocked({"vault_credential.deleted", cid, id, "", now});
  CommitObjectChangeLocked({"vault.deleted", id, "", "", now});
  return Status::Ok();
}

Result<int64_t> MemoryStore::CountVaults() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(vaults_.size());
}

Status MemoryStore::CreateCredential(const CredentialRecord& c, int max_per_vault) {
  WARREN_ASSIGN_OR_RETURN(std::string id, StrField(c.body, "id", "credential"));
  WARREN_ASSIGN_OR_RETURN(std::string vault_id, StrField(c.body, "vault_id", "credential"));
  std::lock_guard<std::mutex> lock(mu_);
  if (!vaults_.count(vault_id)) return Status::NotFound("vault " + vault_id + " not found");
  if (creds_.count(id)) return Status::Conflict("credential " + id + " already exists");
  int live = 0;
  for (const auto& [cid, r] : creds_)
    if (StrOr(r.rec.body, "vault_id") == vault_id && !ArchivedFlag(r.rec.body)) live++;
  if (live >= max_per_vault)
    return Status::Conflict("vault " + vault_id + " already holds " + std::to_string(max_per_vault) +
                            " credentials (the limit); archive or delete one first")
        .WithDetailCode("vault_credential_limit");
  creds_[id] = CredRow{next_seq_++, c};
  CommitObjectChangeLocked({"vault_credential.created", id, vault_id, "", TimeStrOf(c.body, "created_at", clock_)});
  return Status::Ok();
}

Result<CredentialRecord> MemoryStore::GetCredential(const std::string& vault_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = creds_.find(id);
  if (it == creds_.end() || StrOr(it->second.rec.body, "vault_id") != vault_id)
    return Status::NotFound("credential " + id + " not found in vault " + vault_id);
  return it->second.rec;
}

Result<CredentialRecord> MemoryStore::UpdateCredential(const std::string& vault_id, const std::string& id,
                                                       const std::function<Status(CredentialRecord*)>& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = creds_.find(id);
    if (it == creds_.end() || StrOr(it->second.rec.body, "vault_id") != vault_id)
      return Status::NotFound("credential " + id + " not found in vault " + vault_id);
    CredentialRecord next = it->second.rec;
    WARREN_RETURN_IF_ERROR(mutate(&next));
    if (attempt < abort_attempts_) continue;
    const Json before = it->second.rec.body;
    it->second.rec = next;
    CommitObjectUpdateLocked("vault_credential", id, vault_id, before, next.body, "");
    return next;
  }
}

Result<Page> MemoryStore::ListCredentials(const std::string& vault_id, bool include_archived, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, r] : creds_)
    if (StrOr(r.rec.body, "vault_id") == vault_id && (include_archived || !ArchivedFlag(r.rec.body)))
      rows.emplace_back(r.seq, &r.rec.body);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Status MemoryStore::DeleteCredential(const std::string& vault_id, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = creds_.find(id);
  if (it == creds_.end() || StrOr(it->second.rec.body, "vault_id") != vault_id)
    return Status::NotFound("credential " + id + " not found in vault " + vault_id);
  creds_.erase(it);
  CommitObjectChangeLocked({"vault_credential.deleted", id, vault_id, "", FormatRfc3339(clock_->NowMicros())});
  return Status::Ok();
}

Status MemoryStore::PutSessionSecrets(const std::string& session_id, const std::map<std::string, std::string>& sealed) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, value] : sealed) secrets_[session_id][name] = value;
  return Status::Ok();
}

Result<std::map<std::string, std::string>> MemoryStore::GetSessionSecrets(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = secrets_.find(session_id);
  return it == secrets_.end() ? std::map<std::string, std::string>() : it->second;
}

Result<std::optional<EngineRecord>> MemoryStore::GetEngineState(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sessions_.count(session_id)) return Status::NotFound("session " + session_id + " not found");
  auto it = engine_.find(session_id);
  if (it == engine_.end()) return std::optional<EngineRecord>();
  return std::optional<EngineRecord>(it->second);
}

Result<std::vector<TranscriptEntry>> MemoryStore::ReadTranscript(const std::string& session_id, int64_t from_idx,
                                                                 int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<TranscriptEntry> out;
  auto it = transcript_.find(session_id);
  if (it == transcript_.end()) return out;
  for (auto r = it->second.lower_bound(from_idx); r != it->second.end() && static_cast<int>(out.size()) < std::max(1, limit); ++r)
    out.push_back(r->second);
  return out;
}

// ------------------------------------------------------------------ events

Result<std::vector<StoredEvent>> MemoryStore::AppendEvents(const std::string& session_id,
                                                           const std::function<Status(const Json& session)>& check,
                                                           const std::vector<Json>& events, const CommitHook& hook) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = sessions_.find(session_id);
    if (it == sessions_.end()) return Status::NotFound("session " + session_id + " not found");
    if (check) WARREN_RETURN_IF_ERROR(check(it->second.body));
    SessionEvents log = events_[session_id];
    // A tool call is answered at most once (store.h AppendEvents).
    std::set<std::string> answered;
    for (const auto& [seq, e] : log.by_seq) {
      std::string field = AnswerField(e.body);
      if (!field.empty()) answered.insert(e.type + ":" + e.body[field].get<std::string>());
    }
    for (const Json& e : events) {
      std::string field = AnswerField(e);
      if (field.empty()) continue;
      const std::string ref = e[field].get<std::string>();
      if (!answered.insert(e["type"].get<std::string>() + ":" + ref).second)
        return Status::Conflict("tool call " + ref + " already has a result").WithDetailCode(kAlreadyAnswered);
    }
    const int64_t seq_before = next_seq_;
    auto stored = InsertEventsLocked(session_id, events, &log);
    if (!stored.ok() || attempt < abort_attempts_) next_seq_ = seq_before;
    if (!stored.ok()) return stored.status();
    if (attempt < abort_attempts_) continue;
    events_[session_id] = std::move(log);
    CommitOutboxLocked(&events_[session_id]);
    if (hook && !stored->empty()) hook(*stored);
    return stored;
  }
}

Result<Page> MemoryStore::ListEvents(const std::string& session_id, const EventFilter& filter, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  auto it = events_.find(session_id);
  if (it == events_.end()) return PageOf(rows, page);
  for (const auto& [seq, e] : it->second.by_seq) {
    if (!filter.types.empty() && std::find(filter.types.begin(), filter.types.end(), e.type) == filter.types.end())
      continue;
    if (!InRange(filter.processed, e.ts)) continue;
    rows.emplace_back(seq, &e.body);
  }
  return PageOf(rows, page);
}

Result<std::vector<StoredEvent>> MemoryStore::EventsAfter(const std::string& session_id, int64_t after_seq, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<StoredEvent> out;
  auto it = events_.find(session_id);
  if (it == events_.end()) return out;
  for (auto e = it->second.by_seq.upper_bound(after_seq);
       e != it->second.by_seq.end() && static_cast<int64_t>(out.size()) < int64_t{limit}; ++e)
    out.push_back(StoredEvent{e->first, e->second.body});
  return out;
}

Result<std::optional<StoredEvent>> MemoryStore::GetEvent(const std::string& session_id, const std::string& event_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = events_.find(session_id);
  if (it == events_.end()) return std::optional<StoredEvent>();
  auto s = it->second.seq_by_id.find(event_id);
  if (s == it->second.seq_by_id.end()) return std::optional<StoredEvent>();
  return std::optional<StoredEvent>(StoredEvent{s->second, it->second.by_seq.at(s->second).body});
}

// ------------------------------------------------------------------- keys

Status MemoryStore::PutKey(const std::string& key_hash, const KeyRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!keys_.emplace(key_hash, record).second) return Status::Conflict("key already exists");
  return Status::Ok();
}

Result<std::optional<KeyRecord>> MemoryStore::LookupKey(const std::string& key_hash) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = keys_.find(key_hash);
  if (it == keys_.end()) return std::optional<KeyRecord>();
  return std::optional<KeyRecord>(it->second);
}

Result<int64_t> MemoryStore::CountKeys(KeyKind kind) {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(
      std::count_if(keys_.begin(), keys_.end(), [&](const auto& k) { return k.second.kind == kind; }));
}

// ------------------------------------------------------------------- work

bool MemoryStore::LiveWorkForSessionLocked(const std::string& session_id, const std::string& except_id) const {
  if (session_id.empty()) return false;
  for (const auto& [id, w] : work_)
    if (id != except_id && w.session_id == session_id && LiveWorkState(w.state)) return true;
  return false;
}

Status MemoryStore::CreateWork(const WorkRecord& work) {
  std::lock_guard<std::mutex> lock(mu_);
  if (work_.count(work.id) || (LiveWorkState(work.state) && LiveWorkForSessionLocked(work.session_id, work.id)))
    return Status::Conflict("work item " + work.id + ": the id exists or session " + work.session_id +
                            " already has a live work item");
  WorkRecord w = work;
  w.seq = next_seq_++;
  work_[w.id] = std::move(w);
  return Status::Ok();
}

Result<WorkRecord> MemoryStore::GetWork(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = work_.find(id);
  if (it == work_.end()) return Status::NotFound("work item " + id + " not found");
  return it->second;
}

Result<WorkRecord> MemoryStore::UpdateWork(const std::string& id, const std::function<Status(WorkRecord*)>& mutate) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int attempt = 0;; attempt++) {
    auto it = work_.find(id);
    if (it == work_.end()) return Status::NotFound("work item " + id + " not found");
    const WorkRecord cur = it->second;
    WorkRecord next = cur;
    WARREN_RETURN_IF_ERROR(mutate(&next));
    next.id = cur.id;
    next.seq = cur.seq;
    next.environment_id = cur.environment_id;
    next.session_id = cur.session_id;
    next.created_at = cur.created_at;
    if (LiveWorkState(next.state) && !LiveWorkState(cur.state) && LiveWorkForSessionLocked(next.session_id, id))
      return Status::Conflict("session " + next.session_id + " already has a live work item");
    if (attempt < abort_attempts_) continue;
    it->second = next;
    const bool held = cur.state == "starting" || cur.state == "active" || cur.state == "stopping";
    if ((next.state == "stopped" && cur.state != "stopped") || (held && next.state == "queued")) {
      for (auto k = keys_.begin(); k != keys_.end();)
        k = k->second.kind == KeyKind::kSession && k->second.work_id == id ? keys_.erase(k) : std::next(k);
    }
    return next;
  }
}

Result<std::optional<WorkRecord>> MemoryStore::ClaimWork(const std::string& environment_id, int64_t now,
                                                         int64_t redeliver_before) {
  std::lock_guard<std::mutex> lock(mu_);
  WorkRecord* best = nullptr;
  for (auto& [id, w] : work_) {
    if (w.environment_id != environment_id || w.state != "queued") continue;
    if (w.delivered_at && *w.delivered_at > redeliver_before) continue;
    if (!best || w.seq < best->seq) best = &w;
  }
  if (!best) return std::optional<WorkRecord>();
  best->delivered_at = now;
  best->deliveries++;
  return std::optional<WorkRecord>(*best);
}

Result<Page> MemoryStore::ListWork(const std::string& environment_id, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (const auto& [id, w] : work_)
    if (w.environment_id == environment_id) rows.emplace_back(w.seq, &w.body);
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return PageOf(rows, page);
}

Result<std::vector<WorkRecord>> MemoryStore::UnstoppedWorkForSession(const std::string& session_id) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<WorkRecord> out;
  for (const auto& [id, w] : work_)
    if (w.session_id == session_id && w.state != "stopped") out.push_back(w);
  std::sort(out.begin(), out.end(), [](const WorkRecord& a, const WorkRecord& b) { return a.seq < b.seq; });
  return out;
}

Result<std::vector<std::string>> MemoryStore::DueWork(const std::string& environment_id, int64_t now, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<const WorkRecord*> due;
  for (const auto& [id, w] : work_) {
    if (!w.deadline || !(*w.deadline < now)) continue;
    if (w.state != "starting" && w.state != "active" && w.state != "stopping") continue;
    if (!environment_id.empty() && w.environment_id != environment_id) continue;
    due.push_back(&w);
  }
  std::sort(due.begin(), due.end(), [](const WorkRecord* a, const WorkRecord* b) {
    return *a->deadline != *b->deadline ? *a->deadline < *b->deadline : a->seq < b->seq;
  });
  std::vector<std::string> out;
  for (const WorkRecord* w : due) {
    if (static_cast<int>(out.size()) >= std::max(limit, 1)) break;
    out.push_back(w->id);
  }
  return out;
}

Status MemoryStore::RecordWorkerPoll(const std::string& environment_id, const std::string& worker_id, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, inserted] = workers_.emplace(std::make_pair(environment_id, worker_id), now);
  if (!inserted) it->second = std::max(it->second, now);
  return Status::Ok();
}

Result<EnvironmentHolder> MemoryStore::HoldEnvironment(const std::string& environment_id,
                                                       const std::string& orchestrator_id, const std::string& host,
                                                       int64_t now, int64_t stale_before) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = holders_.find(environment_id);
  if (it == holders_.end() || (it->second.orchestrator_id != orchestrator_id && it->second.seen_at < stale_before)) {
    EnvironmentHolder h{environment_id, orchestrator_id, host, now, now};
    holders_[environment_id] = h;
    return h;
  }
  EnvironmentHolder& h = it->second;
  if (h.orchestrator_id == orchestrator_id) {
    h.host = host;
    h.seen_at = std::max(h.seen_at, now);
  }
  return h;
}

Result<WorkCounts> MemoryStore::CountWork(const std::string& environment_id, int64_t workers_since) {
  std::lock_guard<std::mutex> lock(mu_);
  WorkCounts c;
  for (const auto& [id, w] : work_) {
    if (w.environment_id != environment_id || w.state != "queued") continue;
    (w.delivered_at ? c.pending : c.depth)++;
    if (!c.oldest_queued_at || w.created_at < *c.oldest_queued_at) c.oldest_queued_at = w.created_at;
  }
  const int64_t forget_before = workers_since - int64_t{86'400'000'000};
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->first.first == environment_id && it->second < forget_before) {
      it = workers_.erase(it);
      continue;
    }
    if (it->first.first == environment_id && it->second >= workers_since) c.workers++;
    ++it;
  }
  return c;
}

// ------------------------------------------------------------------ webhook outbox

void MemoryStore::SetOutboxRule(OutboxRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_rule_ = std::move(rule);
}

void MemoryStore::SetObjectOutboxRule(ObjectOutboxRule rule) {
  std::lock_guard<std::mutex> lock(mu_);
  object_rule_ = std::move(rule);
}

void MemoryStore::SetOutboxListener(std::function<void()> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  outbox_listener_ = std::move(listener);
}

Status MemoryStore::RecordObjectChange(const ObjectChange& change) {
  std::lock_guard<std::mutex> lock(mu_);
  CommitObjectChangeLocked(change);
  return Status::Ok();
}

Result<std::vector<OutboxDelivery>> MemoryStore::ClaimDeliveries(int64_t now, int64_t lease_until, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<OutboxDelivery*> due;
  for (auto& [seq, d] : outbox_)
    if (d.state == "pending" && d.next_attempt_at <= now) due.push_back(&d);
  std::stable_sort(due.begin(), due.end(),
                   [](const OutboxDelivery* a, const OutboxDelivery* b) { return a->next_attempt_at < b->next_attempt_at; });
  const size_t want = static_cast<size_t>(std::max(1, limit));
  std::vector<OutboxDelivery> out;
  for (OutboxDelivery* d : due) {
    if (out.size() >= want) break;
    auto ep = endpoints_.find(d->message.endpoint);
    if (ep != endpoints_.end() && ep->second.disabled_at) {
      d->next_attempt_at = kHeldUntilEnabled;  // parked until the endpoint is enabled
      continue;
    }
    d->next_attempt_at = lease_until;
    out.push_back(*d);
  }
  return out;
}

Result<std::optional<int64_t>> MemoryStore::NextDeliveryDue() {
  std::lock_guard<std::mutex> lock(mu_);
  std::optional<int64_t> next;
  for (const auto& [seq, d] : outbox_)
    if (d.state == "pending" && d.next_attempt_at != kHeldUntilEnabled && (!next || d.next_attempt_at < *next))
      next = d.next_attempt_at;
  return next;
}

Result<DeliveryOutcome> MemoryStore::FinishDelivery(int64_t seq, const DeliveryAttempt& attempt) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = outbox_.find(seq);
  if (it == outbox_.end()) return Status::NotFound("webhook delivery " + std::to_string(seq) + " not found");
  if (it->second.state != "pending")
    return Status::Conflict("webhook delivery " + std::to_string(seq) + " is " + it->second.state);
  DeliveryOutcome o;
  o.delivery = it->second;
  auto ep = endpoints_.find(o.delivery.message.endpoint);
  if (ep != endpoints_.end()) o.endpoint = ep->second;
  o.endpoint.name = o.delivery.message.endpoint;
  o.disabled_endpoint = ApplyAttempt(attempt, &o.delivery, &o.endpoint);
  it->second = o.delivery;
  endpoints_[o.endpoint.name] = o.endpoint;
  return o;
}

Result<std::vector<EndpointState>> MemoryStore::ListEndpointStates() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<EndpointState> out;
  for (const auto& [name, ep] : endpoints_) out.push_back(ep);
  return out;
}

Result<EndpointState> MemoryStore::EnableEndpoint(const std::string& name, int64_t now) {
  std::lock_guard<std::mutex> lock(mu_);
  EndpointState ep;
  ep.name = name;
  endpoints_[name] = ep;
  bool released = false;
  for (auto& [seq, d] : outbox_)
    if (d.message.endpoint == name && d.held()) {
      d.next_attempt_at = now;
      released = true;
    }
  if (released && outbox_listener_) outbox_listener_();
  return ep;
}

Result<int64_t> MemoryStore::PruneDeliveries(int64_t finished_before, int limit) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::pair<int64_t, int64_t>> done;  // (last attempt, seq)
  for (const auto& [seq, d] : outbox_)
    if ((d.state == "delivered" || d.state == "failed") && d.last_attempt_at && *d.last_attempt_at < finished_before)
      done.emplace_back(*d.last_attempt_at, seq);
  std::sort(done.begin(), done.end());
  if (done.size() > static_cast<size_t>(std::max(1, limit))) done.resize(static_cast<size_t>(std::max(1, limit)));
  for (const auto& [at, seq] : done) {
    auto it = outbox_.find(seq);
    outbox_keys_.erase({it->second.message.message_id, it->second.message.endpoint});
    outbox_.erase(it);
  }
  return static_cast<int64_t>(done.size());
}

Result<OutboxDelivery> MemoryStore::GetDelivery(int64_t seq) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = outbox_.find(seq);
  if (it == outbox_.end()) return Status::NotFound("webhook delivery " + std::to_string(seq) + " not found");
  return it->second;
}

Result<Page> MemoryStore::ListDeliveries(const DeliveryFilter& f, const PageSpec& page) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Json> bodies;
  std::vector<int64_t> seqs;
  for (const auto& [seq, d] : outbox_) {
    if (!f.endpoint.empty() && d.message.endpoint != f.endpoint) continue;
    if (!f.state.empty() && d.state != f.state) continue;
    if (!f.message_id.empty() && d.message.message_id != f.message_id) continue;
    bodies.push_back(d.ToJson());
    seqs.push_back(seq);
  }
  std::vector<std::pair<int64_t, const Json*>> rows;
  for (size_t i = 0; i < bodies.size(); i++) rows.emplace_back(seqs[i], &bodies[i]);
  return PageOf(rows, page);
}

}  // namespace warren::store
