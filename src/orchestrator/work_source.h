// WorkSource: where the orchestrator gets work items from (the port of
// DESIGN 2a). Two implementations share one orchestrator loop:
//   - LocalWorkSource (local_work_source.h): the in-process WorkQueue of
//     `warren serve` (embedded mode), no HTTP in between;
//   - HttpWorkSource (http_work_source.h): the documented work protocol of
//     spec section 3 (poll, ack, stop, session retrieve) over HTTP(S), with
//     an environment key (standalone mode: a remote Warren or Anthropic's
//     hosted API).
// The runner that serves an item always speaks HTTP itself (heartbeats,
// events), so a WorkSource only claims, acknowledges, stops and looks up.
//
// Errors: Status codes follow the HTTP answer where there is one
// (NotFound = 404, InvalidArgument = 400, ...); `IsPermanent` tells which
// failures must not be retried.
// Thread-safety: implementations are thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/json.h"
#include "common/status.h"

namespace warren::orchestrator {

struct WorkItem {
  std::string id;
  std::string environment_id;
  std::string type;        // data.type: "session" (others are force-stopped)
  std::string session_id;  // data.id for session items
  std::string secret;      // the opaque work secret (base64url JSON); never logged
  std::string created_at;  // RFC 3339, orders items of one session
  Json raw;                // the Work object as received (secret removed)
  // Set by HeldItems() for an item whose ack may not have reached the
  // service before a crash and whose lease nobody has beaten: no runner of
  // ours served it, so its runner takes the lease with an ordinary first
  // heartbeat (NO_HEARTBEAT), not --resume-lease (which takes over a lease
  // only with a lease record of the same delivery, and otherwise does the
  // same: two deliveries of one un-acked item both carry valid tokens).
  bool fresh_lease = false;
  // Which delivery this is, as the orchestrator claimed it: stamped from a
  // counter of this process when the item is claimed (0: not claimed by
  // this process, e.g. an adopted runner's or a held item's). A larger
  // stamp is a later delivery of the same work id, whose token is the valid
  // one (the queue redelivers an item only once the earlier lease lapsed).
  uint64_t claim_seq = 0;

  // No other worker can hold a delivery of this item: an item of a cloud
  // environment from the embedded source (the queue serves cloud
  // environments to no one else, and the environment hold keeps other
  // orchestrators off it). Its runner gets --sole-worker: a lease held at a
  // token it cannot prove its own (a lost answer to its first beat, a
  // resumed lease without a record of this delivery) is still its own.
  bool sole_worker = false;
};

// Parses a Work object (as returned by poll). InvalidArgument on a shape
// that is not a work item.
Result<WorkItem> ParseWorkItem(const Json& work);

class WorkSource {
 public:
  virtual ~WorkSource() = default;
  // Claims one item, waiting up to `block_ms` (0 = do not wait) for one to
  // appear. nullopt when none is claimable.
  virtual Result<std::optional<WorkItem>> Poll(int block_ms, int64_t reclaim_older_than_ms) = 0;
  virtual Status Ack(const WorkItem& item) = 0;
  // Stops the item; Conflict (already stopped) is reported as OK.
  virtual Status Stop(const WorkItem& item, bool force) = 0;
  // The session object (spec 2), NotFound when it does not exist.
  virtual Result<Json> GetSession(const std::string& environment_id, const std::string& session_id) = 0;
  // The environments this source serves (for labels and logs).
  virtual std::vector<std::string> Environments() = 0;
  // Wakes a Poll that is waiting (used by Stop of the orchestrator).
  virtual void Interrupt() = 0;
  // New work may be in an environment the source does not know yet (a
  // webhook arrived): re-read the served set at the next poll. Default: no
  // cache, nothing to do.
  virtual void Invalidate() {}
  // The item cannot be served for a reason that is the session's own (its
  // environment's packages cannot be built, a bad prepared sandbox or
  // snapshot in its metadata): tell the session in plain words, so that it
  // does not wait forever, and answer its pending built-in calls with an
  // error carrying `message`, so that the queue does not deliver them again
  // (the orchestrator stops the item right after). Embedded: a
  // `session.error` event plus error tool results; over HTTP: error tool
  // results (a client cannot post `session.error`).
  virtual Status FailItem(const WorkItem& item, const std::string& message) {
    return Status::Unimplemented("this work source cannot report failures to the session");
  }
  // Items whose lease this orchestrator may hold (acked, not stopped), with
  // credentials: the embedded source lists its cloud environments' items
  // (nobody else serves them) with fresh tokens; the standalone one the
  // items it recorded at ack (HeldItemStore), each checked over the
  // protocol first. After a restart the orchestrator
  // resumes those that have no live runner (a SIGKILL between the ack and
  // the launch) instead of waiting for their lease to lapse. Default: none.
  virtual Result<std::vector<WorkItem>> HeldItems() { return std::vector<WorkItem>(); }
  // The orchestrator is done with the item although it did not stop it
  // itself: its runner ended (it stops the item itself, or lost the lease),
  // or the item was given back to its lease. A source that remembers the
  // items it holds (the standalone one) forgets this delivery. Default:
  // nothing to do.
  virtual void Release(const WorkItem& /*item*/) {}
};

// The agent.tool_use ids among `events` (a session's events, in order) that
// no user.tool_result / agent.tool_result answers yet.
std::vector<std::string> UnansweredToolUses(const std::vector<Json>& events);
// A user.tool_result that answers `tool_use_id` with an error saying `message`.
Json FailedToolResult(const std::string& tool_use_id, const std::string& message);

// True for failures that retrying cannot fix: 4xx answers except 408 and
// 429 (InvalidArgument, NotFound, PermissionDenied, Unauthenticated,
// FailedPrecondition, Conflict).
bool IsPermanent(const Status& s);

// True for the poll's refusal because another orchestrator serves the
// environment (409 with detail code kEnvironmentHeldCode, identity.h).
bool IsEnvironmentRefusal(const Status& s);

}  // namespace warren::orchestrator
