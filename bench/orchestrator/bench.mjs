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
// Then memory and disk per idle session with a stopped sandbox at
// BENCH_IDLE_SESSIONS (default 100): server RSS growth and pool usage growth
// (df of the btrfs pool mount, and du) divided by the session count.
//
// Cleans up: deletes the sandboxes and sessions, stops the server, checks
// that no mount, loop device or cgroup is left.
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '../../tests/conformance/node_modules/@anthropic-ai/sdk/index.mjs';
import { startServer, runCli, makeDataDir, REPO_ROOT } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';
import { CONTROLLERS, mountsUnder, loopsBacking, cgroupsUnder } from '../../tests/conformance/lib/host.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const N = Number(process.env.BENCH_N || 20);
const IDLE = Number(process.env.BENCH_IDLE_SESSIONS || 100);
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const NODE = process.execPath;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

if (process.getuid?.() !== 0) { console.error('bench/orchestrator needs root (real sandboxes)'); process.exit(2); }
if (!existsSync(RUNNER)) { console.error(`warren-runner not found at ${RUNNER}`); process.exit(2); }

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const sbDir = `/var/tmp/warren-bench-orch-${tag}`;
const prefix = `warren-bench-orch-${tag}`;
mkdirSync(sbDir, { recursive: true });
chmodSync(sbDir, 0o755);
const dataDir = await makeDataDir('bench-orch');
// Runner idle 3 s: the "running" message comes well inside it. Sandbox idle
// stop 1 s after that, janitor every 200 ms: "stopped" shows in seconds.
writeFileSync(path.join(dataDir, 'warren.json'), JSON.stringify({
  orchestrator: { runner_path: RUNNER, runner_idle_ms: 3000, sandbox_idle_stop_ms: 1000, janitor_interval_ms: 200,
    session_check_interval_ms: 300 },
}));
const srv = await startServer({ dataDir, orchestrator: true, env: {
  WARREN_LOG_FORMAT: 'json',
  WARREN_MODEL_SCRIPT: path.join(here, 'script.json'), WARREN_SANDBOX_ENABLED: 'true', WARREN_SANDBOX_DATA_DIR: sbDir,
  WARREN_SANDBOX_CGROUP_PREFIX: prefix, WARREN_SANDBOX_POOL_BYTES: String(16 * 2 ** 30),
} });
const org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 2 });

// Breakdown (where the time goes): the server's timing log lines
// (orchestrator.item_timing, sandbox.created, sandbox.started) and the
// runner's own log in the sandbox, placed on one wall clock (all on this
// host) against the moment the message was sent.
const wall = () => performance.timeOrigin + performance.now();
const tsMs = (ts) => Date.parse(ts.slice(0, 23) + 'Z') + Number(ts.slice(23, 26)) / 1000;  // RFC 3339 with micros
const serverLog = [];
{
  let buf = '';
  srv.child.stderr.on('data', (d) => {
    buf += d;
    for (let i; (i = buf.indexOf('\n')) >= 0;) {
      const line = buf.slice(0, i); buf = buf.slice(i + 1);
      if (!/"msg":"(orchestrator\.item_timing|sandbox\.created|sandbox\.started)"/.test(line)) continue;
      try { const j = JSON.parse(line); j.at = tsMs(j.ts); serverLog.push(j); } catch { /* not ours */ }
    }
  });
}
const lastWork = new Map();  // session -> work id of its latest item
async function runnerLog(sandboxId, workId) {
  const res = await fetch(`${srv.url}/v1/warren/sandboxes/${sandboxId}/files/content?path=${encodeURIComponent(`/tmp/.warren-runner/${workId}.log`)}`,
    { headers: { 'x-api-key': srv.apiKey } });
  if (res.status !== 200) return [];
  const out = [];
  for (const line of (await res.text()).split('\n')) {
    try { const j = JSON.parse(line); j.at = tsMs(j.ts); out.push(j); } catch { /* partial line */ }
  }
  return out;
}
/** Milestones of one turn, in ms after the message was sent (undefined when not seen). */
async function breakdown(sessionId, t) {
  const m = { tool_use_seen: t.toolUse - t.sent };
  // The item claimed after this message (none when a live runner served it).
  // Its line is written once the runner's pid was found for supervision,
  // which may come after the result under load: wait a little for it.
  const itemOf = () => serverLog.find((l) => l.msg === 'orchestrator.item_timing' && l.session_id === sessionId &&
    l.at - l.total_ms > t.sent);
  for (let i = 0; i < 20 && t.expectItem && !itemOf(); i++) await sleep(100);
  const item = itemOf();
  const [sb] = await sandboxes(sessionId);
  if (item) {
    lastWork.set(sessionId, item.work_id);
    let at = item.at - item.total_ms - t.sent;
    m.claimed = at;
    for (const k of ['queued_ms', 'ack_ms', 'session_check_ms', 'session_lock_ms', 'find_ms', 'create_options_ms', 'sandbox_create_ms',
      'sandbox_restore_ms', 'sandbox_start_ms', 'runner_settle_ms', 'runner_check_ms', 'runner_exec_ms', 'runner_found_ms']) {
      if (item[k] === undefined) continue;
      at += item[k];
      m[k.replace(/_ms$/, '')] = at;
    }
  }
  if (sb) {
    const started = serverLog.find((l) => l.msg === 'sandbox.started' && l.id === sb.id && l.at > t.sent);
    if (started) for (const [k, v] of Object.entries(started)) if (k.endsWith('_ms')) m[`start.${k.replace(/_ms$/, '')}`] = v;
    const created = serverLog.find((l) => l.msg === 'sandbox.created' && l.id === sb.id && l.at > t.sent);
    if (created) for (const [k, v] of Object.entries(created)) if (k.endsWith('_ms')) m[`create.${k.replace(/_ms$/, '')}`] = v;
    const work = lastWork.get(sessionId);
    if (work) {
      const names = { 'first heartbeat answered': 'runner.first_heartbeat', 'session tool runner starting': 'runner.session_read',
        'event stream open': 'runner.stream_open', 'executing tool': 'runner.tool_start', 'tool result posted': 'runner.result_posted' };
      for (const l of await runnerLog(sb.id, work)) {
        const k = names[l.msg];
        if (k && l.at > t.sent && m[k] === undefined) {
          m[k] = l.at - t.sent;
          if (l.msg === 'tool result posted') { m['runner.exec'] = l.exec_ms; m['runner.post'] = l.post_ms; }
        }
      }
    }
  }
  m.result_seen = t.result - t.sent;
  return m;
}
const breakdowns = { cold: [], running: [], stopped: [] };
const workdir = await mkdtemp(path.join(tmpdir(), 'warren-bench-orch-peer-'));
const api = async (method, p, body) => {
  const res = await fetch(srv.url + p, { method, headers: { 'x-api-key': srv.apiKey, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  if (res.status >= 300) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return text ? JSON.parse(text) : {};
};
async function sandboxes(sessionId) {
  const q = sessionId ? `&label=${encodeURIComponent(`warren.session_id=${sessionId}`)}` : '';
  const out = [];
  for (let page = ''; ;) {
    const r = await api('GET', `/v1/warren/sandboxes?limit=100${q}${page}`);
    out.push(...r.data);
    if (!r.next_page) return out;
    page = `&page=${encodeURIComponent(r.next_page)}`;
  }
}
async function waitAllStopped(ids, timeoutMs = 120_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const all = await sandboxes();
    const bySession = new Map(all.map((s) => [s.labels['warren.session_id'], s.state]));
    const left = ids.filter((id) => bySession.get(id) !== 'stopped');
    if (left.length === 0) return;
    if (Date.now() > end) throw new Error(`${left.length} sandboxes never stopped: ${left.slice(0, 5).map((id) => bySession.get(id))}`);
    await sleep(200);
  }
}

/** A session with its event stream open: `turn()` times message -> first tool_result, then waits the turn's end. */
async function openSession(agentId, envId) {
  const s = await org.beta.sessions.create({ agent: agentId, environment_id: envId });
  const stream = await openSse(srv.url, `/v1/sessions/${s.id}/events/stream`, { 'x-api-key': srv.apiKey });
  let firstResult = null, firstUse = null;
  let idles = 0;
  stream.onFrame = (f) => {
    if (f.event === 'agent.tool_use' && firstUse === null) firstUse = wall();
    if (f.event === 'user.tool_result' && firstResult === null) firstResult = now();
    else if (f.event === 'session.status_idle' && JSON.parse(f.data).stop_reason?.type === 'end_turn') idles++;
  };
  return {
    id: s.id,
    close: () => stream.close(),
    last: null,  // wall-clock times of the last turn: {sent, toolUse, result}
    async turn(beforeSend = () => {}) {
      const want = idles + 1;
      firstResult = null; firstUse = null;
      const sent = wall();
      const t0 = now();
      beforeSend();
      await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
      const end = Date.now() + 60_000;
      while (idles < want) {
        if (Date.now() > end) throw new Error(`session ${s.id}: turn never ended`);
        await sleep(1);
      }
      if (firstResult === null) throw new Error(`session ${s.id}: no tool_result`);
      this.last = { sent, toolUse: firstUse, result: sent + (firstResult - t0) };
      return firstResult - t0;
    },
  };
}

const results = {};
const record = (k, xs) => { results[k] = { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) }; };
const allSessions = [];
let failure = null;
let idleFigures = null;
try {
  const agent = await org.beta.agents.create({ name: 'bench-orch', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
  const cloud = await org.beta.environments.create({ name: 'bench-cloud', config: { type: 'cloud' } });

  // Warren: cold then running per session, then stopped for all.
  const cold = [], running = [], stopped = [];
  const sessions = [];
  // One warm-up session first (its first sandbox also makes the pool); not counted.
  for (let i = -1; i < N; i++) {
    const s = await openSession(agent.id, cloud.id);
    allSessions.push(s.id);
    const c = await s.turn();
    const bc = await breakdown(s.id, { ...s.last, expectItem: true });
    const [sb] = await sandboxes(s.id);
    if (sb?.state !== 'started') throw new Error(`running case: sandbox is ${sb?.state}`);
    const r = await s.turn();
    const br = await breakdown(s.id, s.last);
    if (i < 0) { s.close(); continue; }
    breakdowns.cold.push(bc); breakdowns.running.push(br);
    sessions.push(s); cold.push(c); running.push(r);
  }
  await waitAllStopped(sessions.map((s) => s.id));
  for (const s of sessions) {
    stopped.push(await s.turn());
    breakdowns.stopped.push(await breakdown(s.id, { ...s.last, expectItem: true }));
  }
  for (const s of sessions) s.close();
  record('cold', cold); record('running', running); record('stopped', stopped);

  // Peer: self_hosted, a fresh EnvironmentWorker process per item.
  const hosted = await org.beta.environments.create({ name: 'bench-peer', config: { type: 'self_hosted' } });
  const key = await runCli(['keys', 'create', 'environment', hosted.id, '--data-dir', srv.dataDir]);
  const poller = new Anthropic({ authToken: key, apiKey: null, baseURL: srv.url, maxRetries: 0 });
  // The `--on-work` side: a parked poll claims and acks the item, then a
  // fresh process serves it. Returns the child's exit.
  const onWork = async () => {
    for (const end = Date.now() + 30_000; Date.now() < end;) {
      const w = await poller.beta.environments.work.poll(hosted.id, { block_ms: 999, 'Anthropic-Worker-ID': 'bench-peer' });
      if (!w) continue;
      await poller.beta.environments.work.ack(w.id, { environment_id: w.environment_id });
      const child = spawn(NODE, [path.join(here, 'peer_worker.mjs'), srv.url, workdir], { stdio: 'ignore', env: {
        ...process.env, ANTHROPIC_WORK_ID: w.id, ANTHROPIC_ENVIRONMENT_ID: w.environment_id, ANTHROPIC_SESSION_ID: w.data.id,
        ANTHROPIC_ENVIRONMENT_KEY: key, ...(w.secret ? { ANTHROPIC_WORK_SECRET: w.secret } : {}) } });
      const exited = new Promise((r) => child.on('exit', r));
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      return exited.finally(() => clearTimeout(t));
    }
    throw new Error('peer: no work item claimed');
  };
  const peerFirst = [], peerLater = [];
  for (let i = -1; i < N; i++) {  // one warm-up session, not counted
    const s = await openSession(agent.id, hosted.id);
    allSessions.push(s.id);
    for (const xs of [peerFirst, peerLater]) {
      let served;
      const ms = await s.turn(() => { served = onWork(); });
      const code = await served;
      if (code !== 0) throw new Error(`peer worker exited ${code}`);
      if (i >= 0) xs.push(ms);
    }
    s.close();
  }
  record('peer-first', peerFirst); record('peer-later', peerLater);

  // Memory and disk per idle session with a stopped sandbox.
  const pool = mountsUnder(sbDir).map((l) => l.split(' ')).find((f) => f[f.indexOf('-') + 1] === 'btrfs')?.[4];
  const rss = () => Number(readFileSync(`/proc/${srv.pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]) * 1024;
  const dfUsed = () => (pool ? Number(execFileSync('df', ['-B1', '--output=used', pool], { encoding: 'utf8' }).split('\n')[1].trim()) : NaN);
  const duUsed = () => (pool ? Number(execFileSync('du', ['-s', '-B1', pool], { encoding: 'utf8' }).split('\t')[0]) : NaN);
  execFileSync('sync');
  const base = { rss: rss(), df: dfUsed(), du: duUsed(), sandboxes: (await sandboxes()).length };
  const idleIds = [];
  const CONC = 4;
  for (let i = 0; i < IDLE; i += CONC) {
    await Promise.all(Array.from({ length: Math.min(CONC, IDLE - i) }, async () => {
      const s = await openSession(agent.id, cloud.id);
      idleIds.push(s.id); allSessions.push(s.id);
      await s.turn();
      s.close();
    }));
  }
  await waitAllStopped(idleIds, 300_000);
  await sleep(1000);
  execFileSync('sync');
  const after = { rss: rss(), df: dfUsed(), du: duUsed() };
  idleFigures = { n: IDLE, base, after, pool };
} catch (e) {
  failure = e;
}

// Teardown: sandboxes, sessions, server; then the leak check.
let leaks = [];
try {
  if (srv.alive) {
    for (const s of await sandboxes()) await api('DELETE', `/v1/warren/sandboxes/${s.id}`).catch(() => {});
    for (const id of allSessions) await org.beta.sessions.delete(id).catch(() => {});
    await srv.stop(20_000);
  }
} finally {
  await srv.cleanup();
  rmSync(dataDir, { recursive: true, force: true });
  await rm(workdir, { recursive: true, force: true });
  const mounts = mountsUnder(sbDir), loops = loopsBacking(`${sbDir}/pool.img`), cgs = cgroupsUnder(prefix);
  for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${prefix}`); } catch { /* absent */ } }
  if (mounts.length === 0 && loops.length === 0) rmSync(sbDir, { recursive: true, force: true });
  leaks = [...mounts.map((m) => `mount ${m}`), ...loops.map((l) => `loop ${l}`), ...cgs.map((c) => `cgroup ${c}`)];
}

const f = (x) => x.toFixed(1);
console.log(`\nWarren orchestrator benchmark (loopback, builtin:minimal; N=${N}; load ${loadavg().map((x) => x.toFixed(1)).join(' ')})`);
console.log('| user.message -> first user.tool_result | n | p50 ms | p99 ms |');
console.log('|---|---|---|---|');
const label = { cold: 'Warren, sandbox created (cold)', stopped: 'Warren, sandbox stopped', running: 'Warren, sandbox running',
  'peer-first': 'peer: SDK EnvironmentWorker process per item, first message', 'peer-later': 'peer: SDK EnvironmentWorker process per item, later message' };
for (const [k, v] of Object.entries(results)) console.log(`| ${label[k]} | ${v.n} | ${f(v.p50)} | ${f(v.p99)} |`);
const ratio = (a, b) => (results[a] && results[b] ? `p50 x${(results[a].p50 / results[b].p50).toFixed(2)}, p99 x${(results[a].p99 / results[b].p99).toFixed(2)}` : 'n/a');
console.log(`\nWarren / peer: cold / peer first: ${ratio('cold', 'peer-first')}; stopped / peer later: ${ratio('stopped', 'peer-later')}; running / peer later: ${ratio('running', 'peer-later')}`);
{
  // Median of each milestone (ms after user.message was sent), per path.
  const keys = [];
  for (const xs of Object.values(breakdowns)) for (const m of xs) for (const k of Object.keys(m)) if (!keys.includes(k)) keys.push(k);
  const order = (k) => (k.startsWith('start.') ? 2 : k.startsWith('create.') ? 1 : k === 'runner.exec' || k === 'runner.post' ? 3 : 0);
  keys.sort((a, b) => order(a) - order(b));
  const med = (path, k) => { const v = breakdowns[path].map((m) => m[k]).filter((x) => typeof x === 'number'); return v.length ? f(pct(v, 50)) : ''; };
  console.log('\nBreakdown, median ms (milestones: ms after user.message was sent; create.*/start.*/runner.exec/post: durations)');
  console.log('| milestone | cold | stopped | running |');
  console.log('|---|---|---|---|');
  for (const k of keys) console.log(`| ${k} | ${med('cold', k)} | ${med('stopped', k)} | ${med('running', k)} |`);
}
if (idleFigures) {
  const { n, base, after } = idleFigures;
  const kib = (x) => (x / 1024).toFixed(1);
  console.log(`\nIdle sessions with a stopped sandbox: ${n} (on top of ${base.sandboxes} earlier sandboxes)`);
  console.log(`  server RSS: ${kib(base.rss)} -> ${kib(after.rss)} KiB; per session ${kib((after.rss - base.rss) / n)} KiB`);
  console.log(`  pool (df used): ${kib(base.df)} -> ${kib(after.df)} KiB; per session ${kib((after.df - base.df) / n)} KiB`);
  console.log(`  pool (du -s):   ${kib(base.du)} -> ${kib(after.du)} KiB; per session ${kib((after.du - base.du) / n)} KiB`);
}
console.log(leaks.length ? `\nLEAKS: ${leaks.join('; ')}` : '\ncleanup: no mount, loop device or cgroup left');
if (failure) { console.error(failure); process.exit(1); }
if (leaks.length) process.exit(1);
