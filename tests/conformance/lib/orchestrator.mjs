// The built-in orchestrator's test fixture, shared by the orchestrator
// suites: one `warren serve` with the orchestrator on, its own sandbox data
// dir and cgroup prefix, short lifecycle thresholds, its orchestrator log
// lines, and a leak check at teardown; plus the session helpers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, rmdirSync, mkdirSync, chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, missingBinaryReason, makeDataDir, REPO_ROOT } from './server.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './host.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const SCRIPT = path.resolve(here, '../../golden/engine_e2e/sdk_session.json');
export const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function orchestratorSkipReason() {
  const missing = missingBinaryReason();
  if (missing) return missing;
  if (!existsSync(RUNNER)) return `warren-runner not found at ${RUNNER}`;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (sandboxes)';
  if (!existsSync('/sys/fs/cgroup/freezer') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup freezer';
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) return 'busybox-static missing (builtin:minimal)';
  return false;
}

/** One `warren serve` with the orchestrator on, its own sandbox dir and cgroup prefix. */
export class Fixture {
  constructor(name, { script = SCRIPT, config = {}, env = {}, top = {} } = {}) {
    const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
    this.sbDir = `/var/tmp/warren-orch-${name}-${tag}`;
    this.prefix = `warren-orch-${tag}`;
    this.script = script;
    this.config = config;
    this.extraEnv = env;
    // Cloud sandboxes get the isolated network (networking: unrestricted):
    // a /24 of the runtime's default pool per fixture, so that fixtures
    // running at the same time never hand out the same addresses.
    this.networkPool = `10.213.${1 + randomBytes(1)[0] % 254}.0/24`;
    this.top = top;  // top-level keys of warren.json (e.g. work_lease_ttl_seconds)
    this.srv = null;
    this.log = [];
  }
  async start(dataDir) {
    if (!dataDir) {
      dataDir = await makeDataDir('orch');
      mkdirSync(this.sbDir, { recursive: true });
      chmodSync(this.sbDir, 0o755);
      writeFileSync(path.join(this.sbDir, 'config.json'), JSON.stringify({ network_pool: this.networkPool }));
      writeFileSync(path.join(dataDir, 'warren.json'), JSON.stringify({
        ...this.top,
        orchestrator: {
          runner_path: RUNNER, runner_idle_ms: 1000, sandbox_idle_stop_ms: 1000, janitor_interval_ms: 200,
          session_check_interval_ms: 300, ...this.config,
        },
      }));
    }
    const env = {
      WARREN_SANDBOX_ENABLED: 'true', WARREN_SANDBOX_DATA_DIR: this.sbDir, WARREN_SANDBOX_CGROUP_PREFIX: this.prefix,
      WARREN_SANDBOX_POOL_BYTES: String(8 * 2 ** 30), WARREN_LOG_FORMAT: 'json', ...this.extraEnv,
    };
    if (this.script) env.WARREN_MODEL_SCRIPT = this.script;
    if (this.apiKey) env.WARREN_API_KEY = this.apiKey;
    this.dataDir = dataDir;
    this.srv = await startServer({ dataDir, orchestrator: true, env });
    this.apiKey = this.apiKey || this.srv.apiKey;
    let partial = '';
    this.srv.child.stderr.on('data', (d) => {
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) if (l.includes('orchestrator') || l.includes('sandbox.egress')) { try { this.log.push(JSON.parse(l)); } catch { /* text */ } }
    });
    this.client = new Anthropic({ apiKey: this.apiKey, baseURL: this.srv.url, maxRetries: 2 });
  }
  async call(method, p, body, headers = {}) {
    const res = await fetch(this.srv.url + p, {
      method, headers: { 'x-api-key': this.apiKey, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : (typeof body === 'string' ? body : JSON.stringify(body)),
    });
    const text = await res.text();
    let json; try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, json, text };
  }
  async sandboxes(sessionId) {
    const q = sessionId ? `&label=${encodeURIComponent(`warren.session_id=${sessionId}`)}` : '';
    const out = [];
    let page = '';
    for (;;) {
      const r = await this.call('GET', `/v1/warren/sandboxes?limit=100${q}${page}`);
      assert.equal(r.status, 200, r.text);
      out.push(...r.json.data);
      if (!r.json.next_page) return out;
      page = `&page=${encodeURIComponent(r.json.next_page)}`;
    }
  }
  async exec(id, cmd, { check = true } = {}) {
    const r = await this.call('POST', `/v1/warren/sandboxes/${id}/exec`, { command: cmd, cwd: '/' });
    if (check) assert.equal(r.status, 200, r.text);
    return r.status === 200 ? r.json : { stdout: '', stderr: r.text, exit_code: -1 };
  }
  /** Waits until the sandbox of `sessionId` is in `state`; returns it. */
  async waitSandbox(sessionId, state, timeoutMs = 30_000) {
    const end = Date.now() + timeoutMs;
    let last;
    while (Date.now() < end) {
      const l = await this.sandboxes(sessionId);
      last = l;
      if (l.length === 1 && l[0].state === state) return l[0];
      await sleep(100);
    }
    assert.fail(`sandbox of ${sessionId} never ${state}: ${JSON.stringify(last?.map((s) => s.state))}`);
  }
  async stopAndCheckLeaks() {
    if (!this.srv) return;
    const alive = this.srv.alive;
    const tail = this.srv.tail();
    if (alive) {
      // The orchestrator may still be (re)starting a sandbox for a session
      // while we delete: delete until the list stays empty, so that no
      // sandbox outlives the server (sandboxes survive a restart by design,
      // and a live one keeps the pool mounted).
      for (let quiet = 0, round = 0; quiet < 2 && round < 40; round++) {
        const left = await this.sandboxes();
        quiet = left.length === 0 ? quiet + 1 : 0;
        for (const s of left) await this.call('DELETE', `/v1/warren/sandboxes/${s.id}`);
        if (quiet < 2) await sleep(250);
      }
      await this.srv.stop(20_000);
    }
    await this.srv.cleanup();
    rmSync(this.dataDir, { recursive: true, force: true });
    const mounts = mountsUnder(this.sbDir);
    const loops = await loopsLeft(`${this.sbDir}/pool.img`);
    const cgs = cgroupsUnder(this.prefix);
    for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${this.prefix}`); } catch { /* absent */ } }
    if (mounts.length === 0 && loops.length === 0) rmSync(this.sbDir, { recursive: true, force: true });
    assert.ok(alive, `warren serve died:\n${tail}`);
    assert.deepEqual(mounts, [], 'no mount left');
    assert.deepEqual(loops, [], 'no loop device left');
    assert.deepEqual(cgs, [], 'no cgroup left');
  }
}

export async function events(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
  return out;
}
export async function waitIdle(client, sid, nMessages, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const s = await client.beta.sessions.retrieve(sid);
    if (s.status === 'idle') {
      const evs = await events(client, sid);
      const msgs = evs.filter((e) => e.type === 'agent.message');
      const idles = evs.filter((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn');
      if (idles.length >= nMessages) return { evs, msgs };
    }
    await sleep(100);
  }
  const evs = await events(client, sid);
  assert.fail(`session ${sid} not idle: ${JSON.stringify(evs.map((e) => e.type))}`);
}
export function lastText(msgs) {
  const m = msgs[msgs.length - 1];
  return m ? m.content.map((c) => c.text).join('') : '';
}
export async function say(client, sid, text) {
  await client.beta.sessions.events.send(sid, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
}
