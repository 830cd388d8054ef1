// The idle-footprint bench (run.sh runs it with BENCH_N=0 after bench.mjs,
// which has the latency figures with their per-step breakdown).
// Warren orchestrator benchmark (issue 10): the time from `user.message` to
// the first `user.tool_result` of a cloud session served by the built-in
// orchestrator, with an instant scripted model (script.json: one `echo hi`
// bash call per message), for a session whose sandbox
//   cold:    must be created (first message of a new session),
//   running: is started and its runner alive (second message within the
//            runner's idle window),
//   stopped: was stopped by the janitor (third message, after the sandbox
//            reached `stopped`),
// printed as p50/p99 over BENCH_N runs each (default 20).
//
// The peer, measured in the same run against the same server: the
// reference's way. A `self_hosted` environment, and for each work item a
// fresh Node process running the official SDK's EnvironmentWorker beside the
// sandbox (on the host; builtin:minimal has no Node), spawned the moment the
// message is sent (which favours the peer: no detection delay). Measured for
// a new session's first message and for a later message (a new item, a new
// process). Ratios: cold / peer first, running and stopped / peer later.
//
// Then the idle footprint (BENCH_N=0 skips the latency part): sessions are
// created through the API, BENCH_IDLE_CONCURRENCY (default 8) at a time, each
// runs one turn whose bash call runs in its own sandbox made by the built-in
// orchestrator, and is left idle until the janitor has stopped its sandbox.
// At each count of BENCH_IDLE_SESSIONS (cumulative, default "1000,10000")
// it measures `warren serve` (RSS and PSS, threads, open fds, CPU over
// BENCH_REST_MS at rest), what the host holds (mounts, loop devices,
// cgroups, network links, processes) and the disk (the sandbox data dir,
// the btrfs pool's own `df`, the service's store), and divides the growth
// since before the first idle session by the count.
//
// The footprint's peer, in the same run: one SDK EnvironmentWorker process
// per session kept alive between turns (what an orchestrator that keeps a
// worker per session holds; the reference lets it exit and stops the
// sandbox, whose cost then lies with its sandbox provider): RSS and PSS of
// BENCH_PEER_WORKERS (default 3) such processes, idle after one turn.
//
// Cleans up, also on failure: deletes the sandboxes and sessions through the
// API (all of them up to BENCH_TEARDOWN_API_MAX sandboxes, default 2000;
// above that only the ones not stopped, and the stopped ones go with their
// data dir once the server has stopped and released the pool), stops the
// server, checks that no mount, loop device or cgroup is left, and removes
// any that is (then exits non-zero).
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '../../tests/conformance/node_modules/@anthropic-ai/sdk/index.mjs';
import { startServer, runCli, makeDataDir, REPO_ROOT } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';
import { CONTROLLERS, mountsUnder, loopsBacking, loopsLeft, cgroupsUnder } from '../../tests/conformance/lib/host.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.BENCH_N ?? 20);
const IDLE_STEPS = String(process.env.BENCH_IDLE_SESSIONS ?? '1000,10000').split(',').map(Number).filter((x) => x > 0)
  .sort((a, b) => a - b);
const CONC = Number(process.env.BENCH_IDLE_CONCURRENCY || 8);
const REST_MS = Number(process.env.BENCH_REST_MS || 10_000);
const PEER_WORKERS = Number(process.env.BENCH_PEER_WORKERS ?? 3);
const TEARDOWN_API_MAX = Number(process.env.BENCH_TEARDOWN_API_MAX ?? 2000);
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const NODE = process.execPath;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const stamp = () => new Date().toISOString().slice(11, 19);

if (process.getuid?.() !== 0) { console.error('bench/orchestrator needs root (real sandboxes)'); process.exit(2); }
if (!existsSync(RUNNER)) { console.error(`warren-runner not found at ${RUNNER}`); process.exit(2); }

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const sbDir = `/var/tmp/warren-bench-orch-${tag}`;
const prefix = `warren-bench-orch-${tag}`;
const FW_TABLE = `warren_${prefix.replace(/[^A-Za-z0-9_]/g, '_')}`;  // the runtime's nft table (netfilter.cc)
mkdirSync(sbDir, { recursive: true });
chmodSync(sbDir, 0o755);
const dataDir = await makeDataDir('bench-orch');
// Runner idle 3 s: the "running" message comes well inside it. Sandbox idle
// stop 1 s after that, janitor every 200 ms: "stopped" shows in seconds.
// Liveness checks of stopped sandboxes' sessions at the default (30 s).
writeFileSync(path.join(dataDir, 'warren.json'), JSON.stringify({
  orchestrator: { runner_path: RUNNER, runner_idle_ms: 3000, sandbox_idle_stop_ms: 1000, janitor_interval_ms: 200,
    session_check_interval_ms: 30_000 },
}));
const srv = await startServer({ dataDir, orchestrator: true, env: {
  WARREN_MODEL_SCRIPT: path.join(here, 'script.json'), WARREN_SANDBOX_ENABLED: 'true', WARREN_SANDBOX_DATA_DIR: sbDir,
  WARREN_SANDBOX_CGROUP_PREFIX: prefix, WARREN_SANDBOX_POOL_BYTES: String(16 * 2 ** 30),
} });
const org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 2 });
const workdir = await mkdtemp(path.join(tmpdir(), 'warren-bench-orch-peer-'));
const api = async (method, p, body) => {
  const res = await fetch(srv.url + p, { method, headers: { 'x-api-key': srv.apiKey, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
};
async function sandboxes(query = '') {
  const out = [];
  for (let page = ''; ;) {
    const r = await api('GET', `/v1/warren/sandboxes?limit=100${query}${page}`);
    out.push(...r.data);
    if (!r.next_page) return out;
    page = `&page=${encodeURIComponent(r.next_page)}`;
  }
}
const sessionSandboxes = (sessionId) => sandboxes(`&label=${encodeURIComponent(`warren.session_id=${sessionId}`)}`);
const BUSY = ['creating', 'starting', 'started', 'stopping'];
/** Waits (up to 30 min) until no sandbox is on its way to `stopped` (one small request per state). */
async function waitAllStopped(timeoutMs = 1_800_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const busy = [];
    for (const st of BUSY) busy.push(...(await api('GET', `/v1/warren/sandboxes?limit=5&state=${st}`)).data);
    if (busy.length === 0) return;
    if (Date.now() > end) throw new Error(`sandboxes never stopped: ${busy.map((b) => `${b.id} ${b.state}`).join(', ')}`);
    // Every 2 s, not faster: the listing is the bench's, not the service's,
    // load (a 250 ms poll of four listings slowed the janitor at 10,000).
    await sleep(2000);
  }
}
/** Runs fn over items, `conc` at a time. */
async function pool(items, conc, fn) {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(conc, items.length) }, async () => {
    while (next < items.length) { const i = next++; await fn(items[i], i); }
  }));
}

/** A session with its event stream open: `turn()` times message -> first tool_result, then waits the turn's end. */
async function openSession(agentId, envId) {
  const s = await org.beta.sessions.create({ agent: agentId, environment_id: envId });
  const stream = await openSse(srv.url, `/v1/sessions/${s.id}/events/stream`, { 'x-api-key': srv.apiKey });
  let firstResult = null;
  let idles = 0;
  stream.onFrame = (f) => {
    if (f.event === 'user.tool_result' && firstResult === null) firstResult = now();
    else if (f.event === 'session.status_idle' && JSON.parse(f.data).stop_reason?.type === 'end_turn') idles++;
  };
  return {
    id: s.id,
    close: () => stream.close(),
    async turn(beforeSend = () => {}) {
      const want = idles + 1;
      firstResult = null;
      const t0 = now();
      beforeSend();
      await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
      const end = Date.now() + 120_000;
      while (idles < want) {
        if (Date.now() > end) throw new Error(`session ${s.id}: turn never ended`);
        await sleep(2);
      }
      if (firstResult === null) throw new Error(`session ${s.id}: no tool_result`);
      return firstResult - t0;
    },
  };
}

// ---- host and process figures
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
function smaps(pid) {
  const t = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const g = (k) => Number(t.match(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm'))?.[1] ?? NaN) * 1024;
  return { rss: g('Rss'), pss: g('Pss'), anon: g('Anonymous') };
}
function cpuTicks(pid) {
  const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);  // utime + stime
}
const du = (p) => Number(execFileSync('du', ['-s', '-x', '-B1', p], { encoding: 'utf8' }).split('\t')[0]);
const poolMount = () => mountsUnder(sbDir).map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'btrfs')?.[4];
const dfUsed = (mp) => (mp ? Number(execFileSync('df', ['-B1', '--output=used', mp], { encoding: 'utf8' }).split('\n')[1].trim()) : NaN);
/**
 * Sandboxes by state, from the runtime's record files (a full listing through
 * the API copies every record per page: quadratic at 10,000, see
 * docs/BENCHMARKS.md).
 */
function statesOnDisk() {
  const by = {};
  for (const f of readdirSync(`${sbDir}/sandboxes`)) {
    if (!f.endsWith('.json')) continue;
    try { const st = JSON.parse(readFileSync(`${sbDir}/sandboxes/${f}`, 'utf8')).state; by[st] = (by[st] || 0) + 1; } catch { /* mid-rename */ }
  }
  return by;
}
/** Everything measured at one point, the service at rest for REST_MS. */
async function measure() {
  execFileSync('sync');
  const c0 = cpuTicks(srv.pid), t0 = Date.now();
  await sleep(REST_MS);
  const cpu = ((cpuTicks(srv.pid) - c0) / CLK_TCK) / ((Date.now() - t0) / 1000);
  const status = readFileSync(`/proc/${srv.pid}/status`, 'utf8');
  const m = smaps(srv.pid);
  const mp = poolMount();
  return {
    at: stamp(), ...m, cpu,
    threads: Number(status.match(/^Threads:\s+(\d+)/m)[1]),
    fds: readdirSync(`/proc/${srv.pid}/fd`).length,
    mounts_host: readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean).length,
    mounts_sb: mountsUnder(sbDir).length,
    loops: loopsBacking(`${sbDir}/pool.img`).length,
    cgroups: cgroupsUnder(prefix).length,
    links: readdirSync('/sys/class/net').length,
    procs: readdirSync('/proc').filter((n) => /^\d+$/.test(n)).length,
    sb_dir: du(sbDir),  // pool.img's allocated blocks + records + lock files (-x: not the mounted pool)
    pool_img: existsSync(`${sbDir}/pool.img`) ? statSync(`${sbDir}/pool.img`).blocks * 512 : 0,
    records: du(`${sbDir}/sandboxes`),
    pool_df: dfUsed(mp),
    store: du(dataDir),
    started: (await api('GET', '/v1/warren/sandboxes?limit=100&state=started')).data.length,
    states: statesOnDisk(),
  };
}

const results = {};
const record = (k, xs) => { results[k] = { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) }; };
const allSessions = [];
let failure = null;
const idle = { base: null, steps: [], rate: [], failed: 0 };
let peerFoot = null;
let hosted = null, hostedKey = null, poller = null;
async function ensureHosted() {
  if (hosted) return;
  hosted = await org.beta.environments.create({ name: 'bench-peer', config: { type: 'self_hosted' } });
  hostedKey = await runCli(['keys', 'create', 'environment', hosted.id, '--data-dir', srv.dataDir]);
  poller = new Anthropic({ authToken: hostedKey, apiKey: null, baseURL: srv.url, maxRetries: 0 });
}
// The `--on-work` side: a parked poll claims and acks the item, then a fresh
// process serves it (idle window `idleMs`). Returns the child and its exit.
async function onWork(idleMs = 300) {
  for (const end = Date.now() + 30_000; Date.now() < end;) {
    const w = await poller.beta.environments.work.poll(hosted.id, { block_ms: 999, 'Anthropic-Worker-ID': 'bench-peer' });
    if (!w) continue;
    await poller.beta.environments.work.ack(w.id, { environment_id: w.environment_id });
    const child = spawn(NODE, [path.join(here, 'peer_worker.mjs'), srv.url, workdir, String(idleMs)], { stdio: 'ignore', env: {
      ...process.env, ANTHROPIC_WORK_ID: w.id, ANTHROPIC_ENVIRONMENT_ID: w.environment_id, ANTHROPIC_SESSION_ID: w.data.id,
      ANTHROPIC_ENVIRONMENT_KEY: hostedKey, ...(w.secret ? { ANTHROPIC_WORK_SECRET: w.secret } : {}) } });
    const exited = new Promise((r) => child.on('exit', r));
    const t = setTimeout(() => child.kill('SIGKILL'), Math.max(30_000, idleMs + 30_000));
    return { child, exited: exited.finally(() => clearTimeout(t)) };
  }
  throw new Error('peer: no work item claimed');
}

try {
  const agent = await org.beta.agents.create({ name: 'bench-orch', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
  const cloud = await org.beta.environments.create({ name: 'bench-cloud', config: { type: 'cloud' } });

  if (N > 0) {
    // Warren: cold then running per session, then stopped for all.
    const cold = [], running = [], stopped = [];
    const sessions = [];
    // One warm-up session first (its first sandbox also makes the pool); not counted.
    for (let i = -1; i < N; i++) {
      const s = await openSession(agent.id, cloud.id);
      allSessions.push(s.id);
      const c = await s.turn();
      const [sb] = await sessionSandboxes(s.id);
      if (sb?.state !== 'started') throw new Error(`running case: sandbox is ${sb?.state}`);
      const r = await s.turn();
      if (i < 0) { s.close(); continue; }
      sessions.push(s); cold.push(c); running.push(r);
    }
    await waitAllStopped();
    for (const s of sessions) stopped.push(await s.turn());
    for (const s of sessions) s.close();
    record('cold', cold); record('running', running); record('stopped', stopped);

    // Peer: self_hosted, a fresh EnvironmentWorker process per item.
    await ensureHosted();
    const peerFirst = [], peerLater = [];
    for (let i = -1; i < N; i++) {  // one warm-up session, not counted
      const s = await openSession(agent.id, hosted.id);
      allSessions.push(s.id);
      for (const xs of [peerFirst, peerLater]) {
        let served;
        const ms = await s.turn(() => { served = onWork(); });
        const code = await (await served).exited;
        if (code !== 0) throw new Error(`peer worker exited ${code}`);
        if (i >= 0) xs.push(ms);
      }
      s.close();
    }
    record('peer-first', peerFirst); record('peer-later', peerLater);
  } else {
    // The pool is made by the first sandbox: one warm-up session.
    const s = await openSession(agent.id, cloud.id);
    allSessions.push(s.id);
    await s.turn();
    s.close();
  }

  // Footprint peer: EnvironmentWorker processes kept alive, idle after a turn.
  if (PEER_WORKERS > 0) {
    await ensureHosted();
    const kept = [];
    try {
      for (let i = 0; i < PEER_WORKERS; i++) {
        const s = await openSession(agent.id, hosted.id);
        allSessions.push(s.id);
        let served;
        await s.turn(() => { served = onWork(600_000); });
        kept.push(await served);
        s.close();
      }
      await sleep(1000);
      const ms = kept.map((k) => smaps(k.child.pid));
      const mean = (k) => ms.reduce((a, m) => a + m[k], 0) / ms.length;
      peerFoot = { n: ms.length, rss: mean('rss'), pss: mean('pss') };
    } finally {
      for (const k of kept) k.child.kill('SIGKILL');
      await Promise.all(kept.map((k) => k.exited));
    }
  }

  // Idle footprint: sessions with a stopped sandbox, counted up to each step.
  if (IDLE_STEPS.length) {
    await waitAllStopped();
    idle.base = { ...(await measure()), sandboxes: (await sandboxes()).length };
    console.log(`[${stamp()}] idle footprint: base ${JSON.stringify(idle.base)}`);
    let made = 0;
    let t0 = Date.now(), made0 = 0;
    for (const step of IDLE_STEPS) {
      const todo = Array.from({ length: step - made }, (_, i) => made + i);
      const tStep = Date.now();
      await pool(todo, CONC, async () => {
        try {
          const s = await openSession(agent.id, cloud.id);
          allSessions.push(s.id);
          try { await s.turn(); } finally { s.close(); }
        } catch (e) {
          if (++idle.failed > 20) throw e;
          console.error(`[${stamp()}] session failed (${idle.failed}): ${e.message}`);
          return;
        }
        if (++made % 500 === 0) {
          const rate = (made - made0) / ((Date.now() - t0) / 1000);
          console.log(`[${stamp()}] ${made} idle sessions, ${rate.toFixed(1)}/s over the last ${made - made0}, server RSS ${(smaps(srv.pid).rss / 2 ** 20).toFixed(1)} MiB`);
          idle.rate.push({ made, rate });
          t0 = Date.now(); made0 = made;
        }
      });
      const createS = (Date.now() - tStep) / 1000;
      await waitAllStopped();
      await sleep(1000);
      const m = { n: made, create_s: createS, ...(await measure()) };
      idle.steps.push(m);
      console.log(`[${stamp()}] step ${step}: ${JSON.stringify(m)}`);
    }
  }
} catch (e) {
  failure = e;
}

// Teardown: sandboxes, sessions, server; then the leak check (and a forced
// cleanup of whatever leaked, so that nothing is left on the host).
let leaks = [];
const teardown = { api_deleted: 0, s: 0 };
const tTear = Date.now();
try {
  if (srv.alive) {
    let total = 0;
    try { total = readdirSync(`${sbDir}/sandboxes`).filter((f) => f.endsWith('.json')).length; } catch { /* none made */ }
    let del = [];
    if (total <= TEARDOWN_API_MAX) {
      del = await sandboxes().catch(() => []);
    } else {
      // Only what is not stopped (a state filter is cheap); the stopped ones
      // go with the data dir once the server has released the pool.
      for (const st of [...BUSY, 'paused', 'pausing', 'resuming', 'error', 'forking', 'archiving', 'restoring', 'destroying']) {
        del.push(...await sandboxes(`&state=${st}`).catch(() => []));
      }
    }
    await pool(del, 4, async (s) => { await api('DELETE', `/v1/warren/sandboxes/${s.id}`).then(() => teardown.api_deleted++, () => {}); });
    if (total <= TEARDOWN_API_MAX) await pool(allSessions, 4, (id) => org.beta.sessions.delete(id).catch(() => {}));
    await srv.stop(120_000);
  }
} finally {
  await srv.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
  await rm(workdir, { recursive: true, force: true });
  const mounts = mountsUnder(sbDir), loops = await loopsLeft(`${sbDir}/pool.img`, 30_000), cgs = cgroupsUnder(prefix);
  leaks = [...mounts.map((m) => `mount ${m.split(' ')[4]}`), ...loops.map((l) => `loop ${l}`), ...cgs.map((c) => `cgroup ${c}`)];
  if (leaks.length) forceCleanup();
  // The runtime's nft table, if the server left it (it does when killed with isolated sandboxes running).
  if (nftTable()) { try { execFileSync('nft', ['delete', 'table', 'inet', FW_TABLE]); teardown.nft_table_removed = true; } catch { /* */ } }
  for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${prefix}`); } catch { /* absent */ } }
  if (mountsUnder(sbDir).length === 0 && loopsBacking(`${sbDir}/pool.img`).length === 0) rmSync(sbDir, { recursive: true, force: true });
  teardown.s = (Date.now() - tTear) / 1000;
}

function nftTable() {
  try { execFileSync('nft', ['list', 'table', 'inet', FW_TABLE], { stdio: 'ignore' }); return true; } catch { return false; }
}

/** Kills what runs in the bench's cgroups, removes them, unmounts under the sandbox dir, detaches its loop devices. */
function forceCleanup() {
  for (const c of CONTROLLERS) {
    let dirs = [];
    try { dirs = readdirSync(`/sys/fs/cgroup/${c}/${prefix}`, { withFileTypes: true }).filter((e) => e.isDirectory()); } catch { continue; }
    for (const d of dirs) {
      const base = `/sys/fs/cgroup/${c}/${prefix}/${d.name}`;
      try { if (c === 'freezer') writeFileSync(`${base}/freezer.state`, 'THAWED'); } catch { /* */ }
      try { for (const pid of readFileSync(`${base}/tasks`, 'utf8').split('\n').filter(Boolean)) { try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ } } } catch { /* */ }
    }
  }
  execFileSync('sleep', ['1']);
  for (const c of CONTROLLERS) {
    try { for (const d of readdirSync(`/sys/fs/cgroup/${c}/${prefix}`, { withFileTypes: true })) if (d.isDirectory()) { try { rmdirSync(`/sys/fs/cgroup/${c}/${prefix}/${d.name}`); } catch { /* */ } } } catch { /* */ }
  }
  const mps = mountsUnder(sbDir).map((l) => l.split(' ')[4]).sort((a, b) => b.length - a.length);
  for (const mp of mps) { try { execFileSync('umount', ['-l', mp]); } catch { /* */ } }
  for (const l of loopsBacking(`${sbDir}/pool.img`)) { try { execFileSync('losetup', ['-d', `/dev/${l}`]); } catch { /* */ } }
}

const f = (x) => x.toFixed(1);
const kib = (x) => (x / 1024).toFixed(1);
const mib = (x) => (x / 2 ** 20).toFixed(1);
console.log(`\nWarren orchestrator benchmark (loopback, builtin:minimal; N=${N}; load ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
if (Object.keys(results).length) {
  console.log('| user.message -> first user.tool_result | n | p50 ms | p99 ms |');
  console.log('|---|---|---|---|');
  const label = { cold: 'Warren, sandbox created (cold)', stopped: 'Warren, sandbox stopped', running: 'Warren, sandbox running',
    'peer-first': 'peer: SDK EnvironmentWorker process per item, first message', 'peer-later': 'peer: SDK EnvironmentWorker process per item, later message' };
  for (const [k, v] of Object.entries(results)) console.log(`| ${label[k]} | ${v.n} | ${f(v.p50)} | ${f(v.p99)} |`);
  const ratio = (a, b) => (results[a] && results[b] ? `p50 x${(results[a].p50 / results[b].p50).toFixed(2)}, p99 x${(results[a].p99 / results[b].p99).toFixed(2)}` : 'n/a');
  console.log(`\nWarren / peer: cold / peer first: ${ratio('cold', 'peer-first')}; stopped / peer later: ${ratio('stopped', 'peer-later')}; running / peer later: ${ratio('running', 'peer-later')}`);
}
if (idle.base && idle.steps.length) {
  const b = idle.base;
  console.log(`\nIdle sessions with a stopped sandbox (on top of ${b.sandboxes} earlier sandboxes; creation ${CONC} at a time; ${idle.failed} failed)`);
  const cols = idle.steps;
  const row = (name, fn) => console.log(`| ${name} | ${fn(b, null)} | ${cols.map((m) => fn(m, b)).join(' | ')} |`);
  console.log(`| | before | ${cols.map((m) => `${m.n.toLocaleString('en')} sessions`).join(' | ')} |`);
  console.log(`|---|---|${cols.map(() => '---').join('|')}|`);
  row('sandboxes started / stopped (record files)', (m) => `${m.states.started || 0} / ${m.states.stopped || 0}`);
  row('creation time (s)', (m) => (m.create_s ? f(m.create_s) : '-'));
  row('server RSS MiB (per session KiB)', (m, base) => `${mib(m.rss)}${base ? ` (${kib((m.rss - base.rss) / m.n)})` : ''}`);
  row('server PSS MiB (per session KiB)', (m, base) => `${mib(m.pss)}${base ? ` (${kib((m.pss - base.pss) / m.n)})` : ''}`);
  row('server CPU at rest (% of a core)', (m) => f(m.cpu * 100));
  row('server threads', (m) => m.threads);
  row('server open fds', (m) => m.fds);
  row('host mounts (under the sandbox dir)', (m) => `${m.mounts_host} (${m.mounts_sb})`);
  row('loop devices on the pool', (m) => m.loops);
  row('cgroup dirs under the prefix', (m) => m.cgroups);
  row('network links', (m) => m.links);
  row('host processes', (m) => m.procs);
  row('sandbox data dir, du -x MiB (per session KiB)', (m, base) => `${mib(m.sb_dir)}${base ? ` (${kib((m.sb_dir - base.sb_dir) / m.n)})` : ''}`);
  row('  of which pool.img allocated MiB (per session KiB)', (m, base) => `${mib(m.pool_img)}${base ? ` (${kib((m.pool_img - base.pool_img) / m.n)})` : ''}`);
  row('  of which records MiB (per session KiB)', (m, base) => `${mib(m.records)}${base ? ` (${kib((m.records - base.records) / m.n)})` : ''}`);
  row('btrfs pool df used MiB (per session KiB)', (m, base) => `${mib(m.pool_df)}${base ? ` (${kib((m.pool_df - base.pool_df) / m.n)})` : ''}`);
  row('store (service data dir) MiB (per session KiB)', (m, base) => `${mib(m.store)}${base ? ` (${kib((m.store - base.store) / m.n)})` : ''}`);
  if (cols.length > 1) {
    const [a, z] = [cols[0], cols[cols.length - 1]];
    const d = z.n - a.n;
    console.log(`\nMarginal, ${a.n} -> ${z.n}: server RSS ${kib((z.rss - a.rss) / d)} KiB, PSS ${kib((z.pss - a.pss) / d)} KiB, ` +
      `sandbox dir ${kib((z.sb_dir - a.sb_dir) / d)} KiB, store ${kib((z.store - a.store) / d)} KiB per session`);
  }
  console.log(`Creation rate: ${idle.rate.map((r) => `${r.made}: ${f(r.rate)}/s`).join(', ')}`);
}
if (peerFoot) {
  console.log(`\nPeer: one SDK EnvironmentWorker process per session kept alive, idle after a turn (mean of ${peerFoot.n}): ` +
    `RSS ${mib(peerFoot.rss)} MiB, PSS ${mib(peerFoot.pss)} MiB per session`);
  const last = idle.steps[idle.steps.length - 1];
  if (last) console.log(`Warren PSS per idle session / peer PSS per session: x${(((last.pss - idle.base.pss) / last.n) / peerFoot.pss).toFixed(4)}`);
}
console.log(`\nTeardown: ${teardown.api_deleted} sandboxes deleted through the API, ${f(teardown.s)} s${teardown.nft_table_removed ? `; removed the runtime's nft table ${FW_TABLE}` : ''}`);
console.log(leaks.length ? `LEAKS (removed by force): ${leaks.length} (${leaks.slice(0, 5).join('; ')}${leaks.length > 5 ? '; ...' : ''})` : 'cleanup: no mount, loop device or cgroup left');
console.log(`RESULTS ${JSON.stringify({ results, idle, peerFoot, teardown, leaks })}`);
if (failure) { console.error(failure); process.exit(1); }
if (leaks.length) process.exit(1);
