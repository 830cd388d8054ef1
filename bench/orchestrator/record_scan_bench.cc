// bench_record_scan [--records N] [--runs R]
//
// What a scan of the sandbox records costs at N sandboxes (default 10,000):
// the runtime reads every record for a List, a lookup by name (every
// create: is the session's name taken?), the id-slot allocation of a
// create and the orchestrator's janitor pass. Measured, on one directory of
// N real records (`SandboxRecord::ToJson`, as the runtime writes them):
//   peer:  the way before RecordCache: readdir, then read and parse every
//          file (JsonDir::Keys + Get + SandboxRecord::FromJson);
//   RecordCache: the first scan (parses all); scans with no other writer
//          since (from memory: All copies, ForEach does not; a lookup by
//          name that misses); a lookup by id (a stat); this cache's own
//          writes then a scan (still from memory); and another cache (a
//          second runtime on the same dir) rewriting 1% of the records, or
//          one, then a scan (a walk: readdir, a stat each, the changed
//          ones parsed);
//   a full listing in pages of 100 (the sandbox REST API's and the CLI's
//          listing): keyset pages (RecordCache::Page, from its index)
//          against the way before, a copy and sort of every record per page
//          request (one request measured, times the number of pages).
// p50 over R runs (default 7). Needs no root; writes under /tmp.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/ids.h"
#include "sandbox/state.h"
#include "sandbox/sys.h"

using namespace warren;
using namespace warren::sandbox;

namespace {

double Ms(const std::function<void()>& fn, int runs) {
  std::vector<double> xs;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    fn();
    xs.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

SandboxRecord Sample(int i) {
  SandboxRecord r;
  r.id = "sbx_" + NewId("", 20);
  r.name = "sesn_" + NewId("", 24);
  r.snapshot = "builtin:minimal";
  r.snapshot_hash = std::string(64, 'a');
  r.state = SandboxState::kStopped;
  r.id_slot = i;
  r.labels = {{"warren.session_id", r.name}, {"warren.environment_id", "env_" + NewId("", 24)},
              {"warren.mode", "session"}, {"warren.orchestrator", "embedded"}};
  r.network = "none";
  r.workdir = "/workspace";
  r.host_binds = {{"/usr/lib/warren/warren-runner", "/.warren/bin/warren-runner"}, {"/var/lib/warren/run", "/.warren/run"}};
  r.created_at = r.updated_at = r.last_activity = r.stopped_at = 1764680000000000 + i;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  int n = 10000, runs = 7;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--records")) n = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--runs")) runs = std::atoi(argv[i + 1]);
  }
  const std::string dir = "/tmp/warren-record-scan-" + NewId("", 8);
  JsonDir d(dir);
  std::vector<SandboxRecord> recs;
  for (int i = 0; i < n; ++i) {
    recs.push_back(Sample(i));
    if (!d.Put(recs.back().id, recs.back().ToJson()).ok()) {
      std::fprintf(stderr, "cannot write records under %s\n", dir.c_str());
      return 1;
    }
  }
  size_t seen = 0;
  const double peer = Ms([&] {
    seen = 0;
    for (const auto& k : d.Keys()) {
      auto j = d.Get(k);
      if (!j.ok()) continue;
      auto r = SandboxRecord::FromJson(*j);
      if (r.ok()) ++seen;
    }
  }, runs);
  if (seen != static_cast<size_t>(n)) std::fprintf(stderr, "peer saw %zu of %d\n", seen, n);
  // Two caches sharing the write counter, as two runtimes (processes) on
  // one data dir: `cache` is measured, `other` writes behind its back.
  RecordCache cache(&d, dir + "/records.seq"), other(&d, dir + "/records.seq");
  auto t0 = std::chrono::steady_clock::now();
  seen = cache.All().size();
  const double first = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const double all = Ms([&] { seen = cache.All().size(); }, runs);
  const int64_t walks_before = cache.walks();
  const double own = Ms([&] {
    for (int i = 0; i < 10; ++i) {
      recs[i].last_activity += 1;
      (void)cache.Put(recs[i]);
    }
    seen = cache.All().size();
  }, runs);
  const bool own_walked = cache.walks() != walks_before;
  const double each = Ms([&] { cache.ForEach([&](const SandboxRecord&) { ++seen; }); }, runs);
  const double by_name = Ms([&] { (void)cache.FindByName("sesn_nobody"); }, runs);
  const double by_id = Ms([&] { for (int i = 0; i < 1000; ++i) (void)cache.Get(recs[i * 7 % n].id); }, runs) / 1000;
  const int pages = (n + 99) / 100;
  const double paged = Ms([&] {
    std::optional<RecordKey> after;
    size_t got = 0;
    for (;;) {
      auto p = cache.Page(after, 100);
      got += p.size();
      if (p.size() < 100) break;
      after = RecordKey{p.back().created_at, p.back().id};
    }
    seen = got;
  }, runs);
  if (seen != static_cast<size_t>(n)) std::fprintf(stderr, "pages saw %zu of %d\n", seen, n);
  const double old_page = Ms([&] {
    auto every = cache.All();
    std::sort(every.begin(), every.end(), [](const SandboxRecord& a, const SandboxRecord& b) {
      return RecordKey{a.created_at, a.id} < RecordKey{b.created_at, b.id};
    });
    seen = every.size();
  }, runs);
  const int64_t reads_before = cache.reads();
  const double churn = Ms([&] {
    for (int i = 0; i < n / 100; ++i) {
      recs[i].last_activity += 1;
      (void)other.Put(recs[i]);
    }
    seen = cache.All().size();
  }, runs);
  const double walk = Ms([&] {
    (void)other.Put(recs[0]);  // one foreign write: the next scan walks, nothing else changed
    seen = cache.All().size();
  }, runs);
  const int64_t reread = (cache.reads() - reads_before) / runs;
  std::printf("| scan of %d sandbox records (p50 of %d) | ms |\n|---|---|\n", n, runs);
  std::printf("| peer: read and parse every file (before RecordCache) | %.1f |\n", peer);
  std::printf("| RecordCache, first scan (parses every file) | %.1f |\n", first);
  std::printf("| RecordCache, All(), no other writer (from memory, copies every record) | %.1f |\n", all);
  std::printf("| RecordCache, ForEach(), no other writer (from memory, no copy) | %.1f |\n", each);
  std::printf("| RecordCache, lookup by name that misses, no other writer | %.1f |\n", by_name);
  std::printf("| RecordCache, lookup by id (one stat) | %.4f |\n", by_id);
  std::printf("| RecordCache, 10 own writes then All() (write time included; walked: %s) | %.1f |\n",
              own_walked ? "yes" : "no", own);
  std::printf("| RecordCache, another writer rewrote 1%% then All() (write time included; %lld re-read) | %.1f |\n",
              static_cast<long long>(reread), churn);
  std::printf("| RecordCache, another writer wrote 1 record then All() (a walk: readdir + stat each) | %.1f |\n", walk);
  std::printf("| RecordCache, full listing in pages of 100 via Page() (%d pages, no other writer) | %.1f |\n", pages, paged);
  std::printf("| peer: the same listing the way before (All() + sort per page request: one measured x %d) | %.1f |\n",
              pages, old_page * pages);
  std::printf("\npeer / RecordCache walk: x%.1f; peer / lookup by name from memory: x%.0f\n", peer / walk, peer / by_name);
  (void)RemoveTree(dir);
  return seen > 0 ? 0 : 1;
}
