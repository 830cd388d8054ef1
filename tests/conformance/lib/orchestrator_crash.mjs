// The SIGKILL campaign of issue 10 step 8 (docs/ORCHESTRATOR.md, "Restart
// safety"), shared by tests/conformance/orchestrator_crash.test.mjs (CI) and
// bench/orchestrator/crash_soak.mjs (the long variant). Two modes:
//   - "embedded": one `warren serve` with the built-in orchestrator (a cloud
//     environment); the service itself is SIGKILLed and restarted on the
//     same data dir;
//   - "standalone": a `warren serve --no-orchestrator` (data dir A, a
//     self_hosted environment, an environment key) that keeps running, and a
//     separate `warren orchestrator` (data dir B, HTTP only) that is
//     SIGKILLed and restarted on data dir B.
//
// The scripted model of tests/golden/engine_e2e/orchestrator_crash.json: each
// "job <tag>" makes two bash calls, each appending one unique line to
// /workspace/side.log in the session's sandbox. Each kill point picks a
// phase of a session's life (claim, create, start, launch, mid-tool, stop),
// waits for that phase's anchor (a log line of the service or the
// orchestrator, or an event of the session) plus a seeded delay, SIGKILLs
// the process under test, restarts it and waits for the job to complete.
// Invariants, checked throughout and at the end:
//   - every job completes: "Done <tag>: b-done", two results, no error;
//   - every tool call ran exactly once: side.log holds each line once;
//   - never two runners for one session (host /proc, sampled), never a
//     second sandbox for a session;
//   - after teardown: no sandbox, mount, loop device, cgroup or process
//     left.
// `network`: "none" (default) pins sandboxes to network none (embedded:
// orchestrator.unrestricted_network; standalone: --network none, its
// default), so no veth is ever made (checked). "isolated" puts them on real
// networks (orchestrator_crash_net.test.mjs): embedded, sessions alternate
// between a cloud environment with the default isolated network and one
// with `networking: limited`; standalone, the orchestrator runs
// `--network limited`. A limited session sends "netjob <tag>", whose first
// call needs the egress proxy's answer; after every kill the host's network
// state is checked against the records (netProblems), and after teardown
// no veth, table, sandbox netns or proxy socket is left.
// Everything random comes from the seed (WARREN_CRASH_SEED): a failure
// prints it, and the same seed replays the same points and delays.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Fixture, events, sleep } from './orchestrator.mjs';
import { startServer } from './server.mjs';
import { Standalone, StandaloneHost } from './standalone.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const CRASH_SCRIPT = path.resolve(here, '../../golden/engine_e2e/orchestrator_crash.json');
export const PHASES = ['claim', 'create', 'start', 'launch', 'mid-tool', 'stop'];

/**
 * Reports the kills per phase and asserts that at least `minAnchored` of
 * each phase's kills landed after their anchor (the event that places them).
 */
export function checkPhases(t, kills, minAnchored) {
  for (const p of PHASES) {
    const at = kills.filter((k) => k.phase === p);
    const anchored = at.filter((k) => k.anchor).length;
    t.diagnostic(`${p}: ${at.length} kills, ${anchored} after their anchor`);
    assert.ok(anchored >= minAnchored, `${p}: ${anchored}/${at.length} kills after their anchor, at least ${minAnchored} wanted`);
  }
}

/** mulberry32: a small seeded PRNG in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6D2B79F5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Host processes of warren-runner serving one of `sessions`: session -> [pid]. */
export function runnersBySession(sessions) {
  const out = new Map();
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let argv;
    try { argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0'); } catch { continue; }
    if (argv[0] !== '/.warren/bin/warren-runner' || argv[1] !== 'run') continue;
    const i = argv.indexOf('--session-id');
    const sid = i >= 0 ? argv[i + 1] : '';
    if (!sessions.has(sid)) continue;
    if (!out.has(sid)) out.set(sid, []);
    out.get(sid).push(Number(p));
  }
  return out;
}

/** Processes whose command line mentions `needle` (a leak check). */
export function processesMentioning(needle) {
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const c = readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (c.includes(needle)) out.push(`${p}: ${c.replace(/\0/g, ' ').slice(0, 200)}`);
    } catch { /* gone */ }
  }
  return out;
}

/** Splits a child's stderr into JSON lines for `emit`. */
function jsonLines(stream, emit) {
  let partial = '';
  stream.on('data', (d) => {
    partial += d;
    const ls = partial.split('\n');
    partial = ls.pop();
    for (const l of ls) { let j; try { j = JSON.parse(l); } catch { continue; } emit(j); }
  });
}

/**
 * The network state one runtime (sandbox data dir `sbDir`, cgroup prefix
 * `prefix`) has made on this host, read from the host itself: its veths
 * (host ends `w<hash6>n<slot hex>`, docs/SANDBOX.md), its nft table (chains,
 * verdict maps, the limited sources, the redirect ports), the records'
 * addresses and the egress proxy's ports (`<sbDir>/egress.json`).
 */
export function netState(sbDir, prefix) {
  const ifPrefix = `w${createHash('sha256').update(prefix).digest('hex').slice(0, 6)}n`;
  const table = `warren_${prefix.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const records = [];
  let files = [];
  try { files = readdirSync(`${sbDir}/sandboxes`).sort(); } catch { /* removed at teardown */ }
  for (const f of files) {
    if (!f.endsWith('.json')) continue;
    let r;
    try { r = JSON.parse(readFileSync(`${sbDir}/sandboxes/${f}`, 'utf8')); } catch { continue; }  // being replaced
    records.push({
      id: r.id, state: r.state, network: r.network, ip: r.ip || '', slot: r.id_slot,
      init_pid: r.init_pid, init_start_time: r.init_start_time,
    });
  }
  const links = readdirSync('/sys/class/net').filter((n) => n.startsWith(ifPrefix)).sort();
  let nft = null;
  try {
    nft = JSON.parse(execFileSync('nft', ['-j', 'list', 'table', 'inet', table], { stdio: ['ignore', 'pipe', 'pipe'] }).toString());
  } catch { /* no table */ }
  const out = {
    ifPrefix, table, records, links, tableExists: !!nft, chains: [], dispatch: [], preDispatch: [],
    limitedSrc: [], redirectPorts: [], egress: null,
  };
  try { out.egress = JSON.parse(readFileSync(`${sbDir}/egress.json`, 'utf8')); } catch { /* none yet */ }
  const keys = (elem) => (elem || []).map((e) => (Array.isArray(e) ? e[0] : e))
    .map((k) => (typeof k === 'string' ? k : JSON.stringify(k))).sort();
  for (const o of nft?.nftables || []) {
    if (o.chain) out.chains.push(o.chain.name);
    if (o.map?.name === 'dispatch') out.dispatch = keys(o.map.elem);
    if (o.map?.name === 'pre_dispatch') out.preDispatch = keys(o.map.elem);
    if (o.set?.name === 'limited_src') out.limitedSrc = keys(o.set.elem);
    if (o.rule) {
      for (const m of JSON.stringify(o.rule.expr).matchAll(/"redirect":\{"port":(\d+)/g)) out.redirectPorts.push(Number(m[1]));
    }
  }
  out.chains.sort();
  return out;
}

const TRANSITIONAL = new Set(['creating', 'starting', 'stopping', 'pausing', 'resuming', 'forking', 'archiving', 'restoring', 'destroying']);

/**
 * What the network state should be, given its records: a veth, an sbx_
 * chain and a dispatch entry for each started (or paused) sandbox with a
 * routed network whose init lives; a pre_ chain, a pre_dispatch entry and a
 * limited_src element for each limited one, redirected to the live egress
 * proxy's ports; nothing for any other sandbox (no address kept in its
 * record either); no table when no sandbox is routed. Returns the list of
 * differences (empty: consistent).
 */
export function netProblems(st) {
  const probs = [];
  const alive = (r) => {
    try {
      const f = readFileSync(`/proc/${r.init_pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ');
      return f[0] !== 'Z' && Number(f[19]) === Number(r.init_start_time);
    } catch { return false; }
  };
  const routed = st.records.filter((r) => (r.state === 'started' || r.state === 'paused') && r.network !== 'none' && alive(r));
  const ifname = (r) => `${st.ifPrefix}${r.slot.toString(16)}`;
  const same = (what, got, want) => {
    const g = [...got].sort(); const w = [...want].sort();
    if (JSON.stringify(g) !== JSON.stringify(w)) probs.push(`${what}: have ${JSON.stringify(g)}, want ${JSON.stringify(w)}`);
  };
  same('veths', st.links, routed.map(ifname));
  same('sbx_ chains', st.chains.filter((c) => c.startsWith('sbx_')), routed.map((r) => `sbx_${r.slot}`));
  same('pre_ chains', st.chains.filter((c) => c.startsWith('pre_')), routed.filter((r) => r.network === 'limited').map((r) => `pre_${r.slot}`));
  same('dispatch', st.dispatch, routed.map(ifname));
  same('pre_dispatch', st.preDispatch, routed.filter((r) => r.network === 'limited').map(ifname));
  if (st.limitedSrc.length !== routed.filter((r) => r.network === 'limited').length) {
    probs.push(`limited_src: ${JSON.stringify(st.limitedSrc)} for ${routed.filter((r) => r.network === 'limited').length} limited sandboxes`);
  }
  if (st.tableExists !== (routed.length > 0)) probs.push(`table ${st.table} ${st.tableExists ? 'exists' : 'missing'} with ${routed.length} routed sandboxes`);
  const ports = st.egress ? [st.egress.tcp_port, st.egress.dns_port] : [];
  for (const p of st.redirectPorts) if (!ports.includes(p)) probs.push(`a redirect to port ${p}, the egress proxy has ${JSON.stringify(ports)}`);
  // The address allocator is the records' id slots (a /30 each): no slot
  // twice, no address kept by a sandbox that is not running.
  const bySlot = new Map();
  for (const r of st.records) {
    if (r.state === 'destroyed') continue;
    if (bySlot.has(r.slot)) probs.push(`slot ${r.slot} (one /30) held by ${bySlot.get(r.slot)} and ${r.id}`);
    bySlot.set(r.slot, r.id);
    if (r.ip && !routed.includes(r)) probs.push(`sandbox ${r.id} (${r.state}, ${r.network}) still holds address ${r.ip}`);
  }
  return probs;
}

/**
 * Waits for a settled moment (no record in a transitional state, and the
 * records the same before and after reading the host) and checks the
 * network state against the records there. A real leak stays; a state
 * change under way only delays the check. Returns the settled state.
 */
export async function checkNetSettled(sbDir, prefix, where, { ms = 30_000, servicePid = 0 } = {}) {
  const end = Date.now() + ms;
  let last = null;
  while (Date.now() < end) {
    const before = JSON.stringify(netState(sbDir, prefix).records);
    const st = netState(sbDir, prefix);
    const after = JSON.stringify(netState(sbDir, prefix).records);
    if (before === JSON.stringify(st.records) && after === before && !st.records.some((r) => TRANSITIONAL.has(r.state))) {
      const probs = netProblems(st);
      if (servicePid && st.egress) {
        // The proxy's sockets belong to the service alone (a copy inherited
        // by a child would keep the port, and take connections, after a kill).
        for (const h of socketHolders([st.egress.tcp_port, st.egress.dns_port])) {
          if (h.pid !== servicePid) probs.push(`egress proxy socket held by process ${h.pid}: ${h.cmd}`);
        }
      }
      if (probs.length === 0) return st;
      last = { probs, st };
    }
    await sleep(100);
  }
  assert.fail(`network state of the runtime not as its records say ${where}:\n${last ? `${last.probs.join('\n')}\nrecords: ${JSON.stringify(last.st.records)}` : 'never settled'}`);
}

/** The host's sockets by inode: tcp LISTEN and udp, `port` local. */
function socketInodes(port) {
  const out = new Set();
  for (const [file, listenOnly] of [['/proc/net/tcp', true], ['/proc/net/udp', false]]) {
    let text = '';
    try { text = readFileSync(file, 'utf8'); } catch { continue; }
    for (const l of text.split('\n').slice(1)) {
      const f = l.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (parseInt(f[1].split(':')[1], 16) !== port) continue;
      if (listenOnly && f[3] !== '0A') continue;
      out.add(f[9]);
    }
  }
  return out;
}

/** Processes holding a socket bound to one of `ports`: [{pid, cmd}]. */
export function socketHolders(ports) {
  const inodes = new Set(ports.flatMap((p) => [...socketInodes(p)]));
  if (inodes.size === 0) return [];
  const out = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    let cmd;
    try { cmd = readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { continue; }
    let fds = [];
    try { fds = readdirSync(`/proc/${p}/fd`); } catch { continue; }
    for (const fd of fds) {
      let l;
      try { l = readlinkSync(`/proc/${p}/fd/${fd}`); } catch { continue; }
      const m = /^socket:\[(\d+)\]$/.exec(l);
      if (m && inodes.has(m[1])) { out.push({ pid: Number(p), cmd: cmd.slice(0, 160) }); break; }
    }
  }
  return out;
}

/** Processes holding a socket bound to one of `ports` whose command line mentions `needle`. */
export function egressListeners(ports, needle) {
  return socketHolders(ports).filter((h) => h.cmd.includes(needle)).map((h) => `${h.pid}: ${h.cmd}`);
}

/** Where anything still refers to one of the network namespaces `inodes` (a process, an open fd, a mount). */
export function netnsHolders(inodes) {
  if (inodes.size === 0) return [];
  const out = [];
  const want = new Set([...inodes].map((i) => `net:[${i}]`));
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try { if (want.has(readlinkSync(`/proc/${p}/ns/net`))) out.push(`process ${p} lives in ${readlinkSync(`/proc/${p}/ns/net`)}`); } catch { /* gone */ }
    let fds = [];
    try { fds = readdirSync(`/proc/${p}/fd`); } catch { continue; }
    for (const fd of fds) {
      try {
        const l = readlinkSync(`/proc/${p}/fd/${fd}`);
        if (want.has(l)) out.push(`process ${p} holds ${l} (fd ${fd})`);
      } catch { /* gone */ }
    }
  }
  for (const l of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (want.has(f[3])) out.push(`mount of ${f[3]} at ${f[4]}`);
  }
  return out;
}

/** Embedded mode: `warren serve` with its built-in orchestrator is the victim. */
class EmbeddedTarget {
  constructor(emit, network = 'none') {
    this.emit = emit;
    this.network = network;
    const config = { runner_idle_ms: 300, sandbox_idle_stop_ms: 300, janitor_interval_ms: 50, session_check_interval_ms: 300 };
    // "none": every sandbox offline; "isolated": the default network of a
    // cloud environment (veth, addresses, nft), and a second environment
    // with `networking: limited` (+ the egress proxy's redirect).
    if (network === 'none') config.unrestricted_network = 'none';
    this.fx = new Fixture(network === 'none' ? 'crash' : 'crashnet', { script: CRASH_SCRIPT, top: { work_lease_ttl_seconds: 10 }, config });
    this.sbDir = this.fx.sbDir;
    this.prefix = this.fx.prefix;
  }
  get client() { return this.fx.client; }
  get victim() { return 'warren serve'; }
  /** The service's JSON lines: those of its start-up (its recovery) first, then as they come. */
  follow() {
    for (const l of this.fx.srv.stderr.split('\n')) { let j; try { j = JSON.parse(l); } catch { continue; } this.emit(j); }
    jsonLines(this.fx.srv.child.stderr, this.emit);
  }
  async start() {
    await this.fx.start();
    this.follow();
    this.env = await this.client.beta.environments.create({ name: 'crash', config: { type: 'cloud' } });
    if (this.network !== 'none') {
      this.limitedEnv = await this.client.beta.environments.create({
        name: 'crash-limited',
        config: {
          type: 'cloud',
          networking: { type: 'limited', allowed_hosts: ['allowed.test'], allow_package_managers: false, allow_mcp_servers: false },
        },
      });
    }
  }
  /** The service's data dir: its command line names it (a process check). */
  get serviceDir() { return this.fx.srv?.dataDir || this.dataDir; }
  /** The process that runs the egress proxy. */
  get proxyPid() { return this.fx.srv?.child.pid; }
  async kill() {
    this.dataDir = this.fx.srv.dataDir;
    await this.fx.srv.kill9();
  }
  async restart() {
    await this.fx.start(this.dataDir);
    this.follow();
  }
  orchestratorLog() { return this.fx.log; }
  tail(n = 30) { return this.fx.srv.tail(n); }
  sandboxes(sid) { return this.fx.sandboxes(sid); }
  async sideLog(sb) {
    const r = await this.fx.call('GET', `/v1/warren/sandboxes/${sb.id}/files/content?path=${encodeURIComponent('/workspace/side.log')}`);
    assert.equal(r.status, 200, r.text);
    return r.text;
  }
  teardown() { return this.fx.stopAndCheckLeaks(); }
}

/**
 * Standalone mode: a `warren orchestrator` (data dir B) serving a separate
 * `warren serve --no-orchestrator` over HTTP is the victim; the service
 * keeps running.
 */
class StandaloneTarget {
  constructor(emit, network = 'none') {
    this.emit = emit;
    this.network = network;
    this.host = new StandaloneHost(network === 'none' ? 'orchcrash' : 'orchcrashnet');
    this.sbDir = this.host.dir;
    this.prefix = this.host.prefix;
    this.orch = null;
    if (network !== 'none') {
      // Every sandbox of this orchestrator is `limited` (its --network), on
      // a /24 of its own (the runtime's default pool is shared by every
      // runtime of the host), fixed in the data dir's config at first open.
      writeFileSync(`${this.sbDir}/config.json`, JSON.stringify({
        cgroup_prefix: this.prefix, network_pool: `10.213.${1 + randomBytes(1)[0] % 254}.0/24`,
      }));
    }
  }
  /** The process that runs the egress proxy, and the data dir its command line names. */
  get proxyPid() { return this.orch?.pid; }
  get serviceDir() { return this.sbDir; }
  get victim() { return 'warren orchestrator'; }
  async start() {
    this.srv = await startServer({
      env: { WARREN_LOG_FORMAT: 'json', WARREN_MODEL_SCRIPT: CRASH_SCRIPT, WARREN_WORK_LEASE_TTL_SECONDS: '10' },
    });
    jsonLines(this.srv.child.stderr, (l) => this.emit(l));
    this.client = this.srv.client({ maxRetries: 2 });
    this.env = await this.client.beta.environments.create({ name: 'crash', config: { type: 'self_hosted' } });
    this.key = (await this.srv.createEnvKey(this.env.id)).trim();
    await this.restart();
  }
  async kill() { await this.orch.kill('SIGKILL'); }
  async restart() {
    this.orch = new Standalone(this.host.args({
      baseUrl: this.srv.url, environmentId: this.env.id, key: this.key,
      extra: ['--runner-idle-ms', '300', '--sandbox-idle-stop-ms', '300', '--janitor-interval-ms', '50',
        '--session-check-interval-ms', '300',
        ...(this.network === 'none' ? [] : ['--network', 'limited', '--allow-host', 'allowed.test'])],
    }));
    await this.orch.start();
    // Its start-up lines (the recovery) first, then as they come.
    for (const l of this.orch.log) this.emit(l);
    this.orch.onLine((l) => this.emit(l));
  }
  orchestratorLog() { return this.orch ? this.orch.log : []; }
  tail(n = 30) { return (this.orch ? this.orch.stderr : '').split('\n').slice(-n).join('\n'); }
  async sandboxes(sid) {
    return (await this.host.list()).filter((s) => s.labels?.['warren.session_id'] === sid);
  }
  async sideLog(sb) {
    // The session sandbox's files on the host (the orchestrator runs, so its
    // pool is mounted): stopped sandboxes included.
    return readFileSync(`${this.host.dir}/pool/sandboxes/${sb.id}/workspace/side.log`, 'utf8');
  }
  async teardown() {
    let err = null;
    try {
      // Delete until the list stays empty while the orchestrator runs (its
      // graceful stop then unmounts the pool).
      for (let quiet = 0, round = 0; quiet < 2 && round < 40; round++) {
        const left = await this.host.list();
        quiet = left.length === 0 ? quiet + 1 : 0;
        if (left.length) await this.host.removeAll();
        if (quiet < 2) await sleep(250);
      }
    } catch (e) { err = err || e; }
    const orchAlive = this.orch?.alive;
    const tail = this.tail(40);
    if (this.orch) await this.orch.kill('SIGTERM');
    const srvAlive = this.srv?.alive;
    if (this.srv) { await this.srv.stop(10_000); await this.srv.cleanup(); }
    try { await this.host.checkLeaks(); } catch (e) { err = err || e; }
    if (err) throw err;
    assert.ok(srvAlive !== false, 'warren serve died');
    assert.ok(orchAlive !== false, `the orchestrator died:\n${tail}`);
  }
}

/**
 * Runs `points` kill points. Returns { kills: [{i, phase, anchor, delay}], jobs }.
 * `report(line)` gets progress lines.
 */
export async function runCrashCampaign({ seed, points = 54, report = () => {}, mode = 'embedded', network = 'none' }) {
  const rand = rng(seed);
  const between = (lo, hi) => Math.floor(lo + rand() * (hi - lo + 1));
  const where = () => `(reproduce: WARREN_CRASH_SEED=${seed}${mode === 'embedded' ? '' : ` mode ${mode}`}${network === 'none' ? '' : ` network ${network}`})`;
  // Every JSON line of the service and the orchestrator since the last kill.
  let lines = [];
  const emit = (l) => lines.push(l);
  const tg = mode === 'standalone' ? new StandaloneTarget(emit, network) : new EmbeddedTarget(emit, network);
  const netOn = network !== 'none';
  // Network namespaces of the sandboxes seen running (inodes), and checks
  // of the host's network state against the records (after each kill).
  const netnsSeen = new Set();
  let netChecks = 0;
  const checkNet = async () => {
    const st = await checkNetSettled(tg.sbDir, tg.prefix, where(), { servicePid: tg.proxyPid });
    netChecks++;
    for (const r of st.records) {
      if (r.state !== 'started' || r.network === 'none') continue;
      try { netnsSeen.add(/^net:\[(\d+)\]$/.exec(readlinkSync(`/proc/${r.init_pid}/ns/net`))[1]); } catch { /* gone since */ }
    }
  };
  const kills = [];
  const sessions = new Map();  // id -> { tags: [] }
  let twoRunners = null;
  // Two runner processes of one session seen in two samples at least 30 ms
  // apart (a duplicate launch that loses the runner's flock exits within a
  // few ms without serving anything; one that serves lives for seconds).
  let suspect = new Map();  // session -> { pids, at }
  const sample = () => {
    const seen = new Map();
    for (const [sid, pids] of runnersBySession(new Set(sessions.keys()))) {
      if (pids.length < 2) continue;
      const key = pids.slice().sort().join(',');
      const before = suspect.get(sid);
      seen.set(sid, before && before.key === key ? before : { key, at: Date.now() });
      if (!before || before.key !== key || Date.now() - before.at < 30) continue;
      if (!twoRunners) {
        const argv = pids.map((p) => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').replace(/\0/g, ' '); } catch { return '(gone)'; } });
        const mine = tg.orchestratorLog().filter((l) => l.session_id === sid || JSON.stringify(l).includes(sid)).map((l) => JSON.stringify(l));
        twoRunners = `session ${sid} has runners ${pids.join(', ')}: ${argv.join(' | ')}\n${mine.join('\n')}`;
      }
    }
    suspect = seen;
  };
  let failed = true;
  const t0 = Date.now();
  try {
    await tg.start();
    const c = () => tg.client;
    const env = tg.env;
    const agent = await c().beta.agents.create({ name: 'crash', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    // Network variant: every other session in the limited environment
    // (standalone: the orchestrator's --network limited for all).
    const newSession = async () => {
      const net = !netOn ? 'none' : mode === 'standalone' || sessions.size % 2 === 1 ? 'limited' : 'isolated';
      const s = await c().beta.sessions.create({ agent: agent.id, environment_id: net === 'limited' && tg.limitedEnv ? tg.limitedEnv.id : env.id });
      sessions.set(s.id, { tags: [], net });
      return s.id;
    };
    const send = async (sid, tag) => {
      sessions.get(sid).tags.push(tag);
      const text = sessions.get(sid).net === 'limited' ? `netjob ${tag}` : `job ${tag}`;
      await c().beta.sessions.events.send(sid, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
    };
    const waitLine = async (pred, from, ms) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        for (let k = from; k < lines.length; k++) if (pred(lines[k])) return true;
        await sleep(3);
      }
      return false;
    };
    const doneCount = async (sid) => {
      const evs = await events(c(), sid);
      return evs.filter((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn').length;
    };
    const waitDone = async (sid, ms = 90_000) => {
      const want = sessions.get(sid).tags.length;
      const end = Date.now() + ms;
      while (Date.now() < end) {
        sample();
        const s = await c().beta.sessions.retrieve(sid);
        if (s.status === 'idle' && await doneCount(sid) >= want) return;
        await sleep(50);
      }
      const evs = await events(c(), sid);
      assert.fail(`session ${sid} did not complete job ${want} ${where()}: ${JSON.stringify(evs.map((e) => e.type))}\n${tg.tail(30)}`);
    };
    const sandboxState = async (sid) => {
      const l = await tg.sandboxes(sid);
      assert.ok(l.length <= 1, `a second sandbox for session ${sid} ${where()}`);
      return l[0]?.state;
    };
    const waitStopped = async (sid, ms = 20_000) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (await sandboxState(sid) === 'stopped') return true;
        await sleep(50);
      }
      return false;
    };
    // The first session and its first job, without a kill.
    let current = await newSession();
    await send(current, 'warm');
    await waitDone(current);

    for (let i = 0; i < points; i++) {
      const phase = PHASES[i % PHASES.length];
      const tag = `k${i}`;
      let sid = current;
      let anchor = false;
      let delay = 0;
      const from = lines.length;
      if (phase === 'claim') {
        await send(sid, tag);
        delay = between(0, 30);
        anchor = true;
      } else if (phase === 'create') {
        sid = current = await newSession();
        await send(sid, tag);
        anchor = await waitLine((l) => l.msg === 'work.delivered', from, 10_000);
        // Network variant: the start after the create (init, rules, veth,
        // addresses) takes longer.
        delay = between(0, netOn ? 250 : 120);
      } else if (phase === 'start' || phase === 'launch') {
        await waitStopped(sid);
        await send(sid, tag);
        if (phase === 'start') {
          anchor = await waitLine((l) => l.msg === 'work.delivered', from, 10_000);
          delay = between(0, netOn ? 150 : 60);
        } else {
          anchor = await waitLine((l) => l.msg === 'orchestrator.sandbox_started' && l.session_id === sid, from, 10_000);
          delay = between(0, 40);
        }
      } else if (phase === 'mid-tool') {
        await send(sid, tag);
        const end = Date.now() + 10_000;
        while (!anchor && Date.now() < end) {
          const evs = await events(c(), sid);
          anchor = evs.some((e) => e.type === 'agent.tool_use' && JSON.stringify(e.input).includes(`${tag}-`));
          if (!anchor) await sleep(10);
        }
        delay = between(0, 700);
      } else {  // stop: the job done, the runner's idle window, the janitor's stop
        await send(sid, tag);
        await waitDone(sid);
        anchor = await waitLine((l) => l.msg === 'orchestrator.runner_exited' && l.session_id === sid, from, 10_000);
        delay = between(0, 900);
      }
      await sleep(delay);
      sample();
      const before = lines;
      await tg.kill();
      const killedAt = Date.now();
      kills.push({ i, phase, anchor, delay });
      if (netOn) {
        // Where the kill left a sandbox that was changing state: read from
        // the records and the host while nothing runs.
        const st = netState(tg.sbDir, tg.prefix);
        kills[kills.length - 1].caught = st.records.filter((r) => TRANSITIONAL.has(r.state)).map((r) => {
          const veth = st.links.includes(`${st.ifPrefix}${r.slot.toString(16)}`);
          const rules = st.chains.includes(`sbx_${r.slot}`);
          const step = r.state !== 'starting' || r.network === 'none' ? r.state
            : !r.ip ? 'starting: before the network'
              : !rules ? 'starting: address recorded, no rules yet'
                : !veth ? 'starting: rules in, no veth' : 'starting: veth made';
          // An init that dies with the service takes its netns, and the
          // veth with it: "no veth" then may mean "no longer".
          const init = r.init_pid > 0 && existsSync(`/proc/${r.init_pid}`) ? '' : ' (init gone)';
          return `${r.network} ${step}${init}`;
        });
      }
      lines = [];
      await tg.restart();
      await waitDone(sid);
      const recovery = Date.now() - killedAt;
      kills[kills.length - 1].recovery_ms = recovery;
      // What the restart's recovery found: a sandbox caught in its start
      // (stopped or removed), a veth whose sandbox was not running.
      const rec = lines.find((l) => l.msg === 'sandbox.recovered');
      const found = rec ? { stopped: (rec.stopped || []).length, removed: (rec.removed || []).length, orphan_links: rec.orphan_links || 0 } : null;
      kills[kills.length - 1].recovered = found;
      const caught = kills[kills.length - 1].caught;
      report(`kill ${i + 1}/${points} (${tg.victim}): ${phase} +${delay} ms${anchor ? '' : ' (anchor not seen)'} at ${killedAt - t0} ms, job done ${recovery} ms later` +
        `${caught?.length ? `; caught ${caught.join(', ')}` : ''}` +
        `${found ? `; recovery: ${found.stopped} stopped, ${found.removed} removed, ${found.orphan_links} orphan veths` : ''}`);
      if (recovery > 5000) {
        // A slow recovery is a lease lapse somewhere: say which lines led to it.
        const mine = (ls) => ls.filter((l) => l.session_id === sid || (l.work_id && JSON.stringify(l).includes(sid)) || /^(work\.|orchestrator\.(held|item|runner))/.test(l.msg || ''))
          .slice(-12).map((l) => `${l.msg} ${l.work_id || ''} ${l.verdict || l.reason || l.error || ''}`.trim());
        report(`  slow: before the kill: ${JSON.stringify(mine(before))}`);
        report(`  slow: after the restart: ${JSON.stringify(mine(lines))}`);
      }
      sample();
      assert.equal(twoRunners, null, `two runners for one session ${where()}: ${twoRunners}`);
      if (netOn) await checkNet();
    }

    // The invariants, per session.
    const tInv = Date.now();
    for (const [sid, { tags }] of sessions) {
      const evs = await events(c(), sid);
      const uses = evs.filter((e) => e.type === 'agent.tool_use');
      const results = evs.filter((e) => e.type === 'user.tool_result');
      assert.equal(uses.length, 2 * tags.length, `session ${sid}: two calls per job ${where()}`);
      for (const u of uses) {
        const rs = results.filter((r) => r.tool_use_id === u.id);
        assert.equal(rs.length, 1, `call ${u.id} answered once ${where()}`);
        assert.equal(rs[0].is_error, false, `call ${u.id} succeeded ${where()}: ${JSON.stringify(rs[0].content)}`);
      }
      assert.deepEqual(evs.filter((e) => e.type === 'session.error'), [], `no session.error ${where()}`);
      for (const r of results) {
        assert.ok(!JSON.stringify(r.content).includes('probe-failed'), `the egress proxy answered the limited sandbox ${where()}: ${JSON.stringify(r.content)}`);
      }
      const texts = evs.filter((e) => e.type === 'agent.message').map((m) => m.content.map((b) => b.text).join(''));
      for (const t of tags) assert.ok(texts.includes(`Done ${t}: b-done`), `job ${t} done ${where()}: ${JSON.stringify(texts)}`);
      const sbs = await tg.sandboxes(sid);
      assert.equal(sbs.length, 1, `one sandbox for ${sid} ${where()}`);
      const net = sessions.get(sid).net;
      assert.equal(sbs[0].network?.type ?? sbs[0].network, net, `session ${sid}: network ${net}`);
      const got = (await tg.sideLog(sbs[0])).split('\n').filter(Boolean).sort();
      const want = tags.flatMap((t) => [`${t}-a`, `${t}-b`]).sort();
      assert.deepEqual(got, want, `each tool call ran exactly once ${where()}`);
    }
    report(`invariants of ${sessions.size} sessions checked in ${Date.now() - tInv} ms`);
    if (netOn) {
      // Once every session's sandbox has stopped for idleness: no veth, no
      // chain, no table, no address left while the service still runs.
      const tStop = Date.now();
      for (const sid of sessions.keys()) assert.ok(await waitStopped(sid, 30_000), `session ${sid}'s sandbox stopped ${where()}`);
      const st = await checkNetSettled(tg.sbDir, tg.prefix, where());
      report(`every sandbox stopped and the network state empty ${Date.now() - tStop} ms after the last kill's job`);
      assert.ok(!st.tableExists && st.links.length === 0, `nothing routed once all are stopped ${where()}`);
      netChecks++;
    }
    failed = false;
    return {
      kills, jobs: [...sessions.values()].reduce((n, s) => n + s.tags.length, 0), sessions: sessions.size,
      netChecks, netns: netnsSeen.size,
      limitedJobs: [...sessions.values()].filter((s) => s.net === 'limited').reduce((n, s) => n + s.tags.length, 0),
    };
  } finally {
    const sbDir = tg.sbDir;
    let egress = null;
    try { egress = JSON.parse(readFileSync(`${sbDir}/egress.json`, 'utf8')); } catch { /* none */ }
    const serviceDir = tg.serviceDir;
    const tDown = Date.now();
    try {
      await tg.teardown();
      report(`teardown ${Date.now() - tDown} ms`);
    } catch (e) {
      if (!failed) throw e;  // the first failure is the one to report
    }
    const procs = [...processesMentioning(sbDir), ...[...runnersBySession(new Set(sessions.keys())).values()].flat().map(String)];
    if (!failed) assert.deepEqual(procs, [], `no process left ${where()}`);
    if (netOn && !failed) {
      // The host after teardown: no veth or nft table of the runtime, no
      // namespace of a sandbox held by anything, no egress proxy socket
      // held by a process of this service, no process of its data dir.
      const st = netState(sbDir, tg.prefix);
      assert.deepEqual(st.links, [], `no veth left ${where()}`);
      assert.equal(st.tableExists, false, `no nft table ${st.table} left ${where()}`);
      assert.ok(netnsSeen.size > 0, 'sandbox network namespaces were seen');
      assert.deepEqual(netnsHolders(netnsSeen), [], `no sandbox network namespace left ${where()}`);
      assert.ok(egress && egress.tcp_port > 0, 'the egress proxy ran');
      assert.deepEqual(egressListeners([egress.tcp_port, egress.dns_port], serviceDir), [], `no egress proxy socket left ${where()}`);
      assert.deepEqual(processesMentioning(serviceDir), [], `no process of the service's data dir left ${where()}`);
    }
  }
}
