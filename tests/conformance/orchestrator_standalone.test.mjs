// The protocol boundary (issue 10): a standalone `warren orchestrator`
// serves a separate `warren serve` over HTTP only. Two processes, two data
// dirs, no shared file and no in-process call: the orchestrator claims work
// with an environment key (poll, ack, stop, session retrieve) and its runners
// reach the service through the orchestrator's relay socket (sandbox network
// `none`). Then SIGKILL of the orchestrator: the restarted one re-adopts the
// sandbox and the next turn runs in it with its files. Needs root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawn, execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, mkdirSync, chmodSync } from 'node:fs';
import path from 'node:path';
import { startServer, missingBinaryReason, WARREN_BIN, REPO_ROOT } from './lib/server.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './lib/host.mjs';
import { orchestratorSkipReason as skipReason, sleep, RUNNER } from './lib/orchestrator.mjs';

function cli(args, { check = true } = {}) {
  return new Promise((resolve, reject) => {
    execFile(WARREN_BIN, args, { timeout: 30_000 }, (err, stdout, stderr) => {
      if (err && check) reject(new Error(`warren ${args.join(' ')}: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr, code: err ? err.code : 0 });
    });
  });
}

/** One `warren orchestrator` process (data dir B). */
class Standalone {
  constructor(args) { this.args = args; this.child = null; this.log = []; this.stderr = ''; }
  async start() {
    this.child = spawn(WARREN_BIN, ['orchestrator', ...this.args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.exited = new Promise((r) => this.child.on('exit', (code, signal) => r({ code, signal })));
    let partial = '';
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (d) => {
      this.stderr = (this.stderr + d).slice(-(1 << 18));
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) { try { this.log.push(JSON.parse(l)); } catch { /* text */ } }
    });
    let out = '';
    this.child.stdout.setEncoding('utf8');
    await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`orchestrator did not start:\n${this.stderr}`)), 20_000);
      this.child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('Warren orchestrator serving')) { clearTimeout(t); resolve(); }
      });
      this.exited.then((e) => { clearTimeout(t); reject(new Error(`orchestrator exited ${JSON.stringify(e)}:\n${this.stderr}`)); });
    });
  }
  get alive() { return this.child && this.child.exitCode === null && this.child.signalCode === null; }
  async kill(sig) { if (this.alive) { this.child.kill(sig); await this.exited; } }
}

async function events(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
  return out;
}
async function waitIdle(client, sid, nTurns, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const s = await client.beta.sessions.retrieve(sid);
    if (s.status === 'idle') {
      const evs = await events(client, sid);
      const idles = evs.filter((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn');
      if (idles.length >= nTurns) return evs;
    }
    await sleep(100);
  }
  const evs = await events(client, sid);
  assert.fail(`session ${sid} not idle after ${nTurns} turns: ${JSON.stringify(evs.map((e) => e.type))}`);
}
const say = (client, sid, text) => client.beta.sessions.events.send(sid, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
const resultText = (r) => (Array.isArray(r.content) ? r.content.map((c) => c.text ?? '').join('') : String(r.content ?? ''));

describe('standalone orchestrator serves a separate warren serve over HTTP only', { skip: skipReason(), timeout: 180_000 }, () => {
  const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
  const dirB = `/var/tmp/warren-orchsa-${tag}`;
  const prefix = `warren-orchsa-${tag}`;
  let srv; let client; let env; let key; let orch;
  const orchArgs = () => ['--base-url', srv.url, '--environment-id', env.id, '--environment-key', key,
    '--data-dir', dirB, '--cgroup-prefix', prefix, '--runner-path', RUNNER,
    '--runner-idle-ms', '8000', '--sandbox-idle-stop-ms', '1000', '--janitor-interval-ms', '200',
    '--session-check-interval-ms', '300'];
  const listB = async () => JSON.parse((await cli(['sandbox', 'list', '--json', '--data-dir', dirB])).stdout).data;

  before(async () => {
    mkdirSync(dirB, { recursive: true });
    chmodSync(dirB, 0o755);
    // Data dir A: the service alone (no orchestrator, default scripted demo model).
    srv = await startServer({ env: { WARREN_LOG_FORMAT: 'json' } });
    client = srv.client({ maxRetries: 2 });
    env = await client.beta.environments.create({ name: 'standalone', config: { type: 'self_hosted' } });
    key = await srv.createEnvKey(env.id);
  });

  after(async () => {
    let sbs = [];
    try { sbs = await listB(); } catch { /* runtime never opened */ }
    if (sbs.length) await cli(['sandbox', 'rm', '--data-dir', dirB, ...sbs.map((s) => s.id)], { check: false });
    const orchAlive = orch?.alive;
    const tail = orch?.stderr.slice(-4000);
    if (orch) await orch.kill('SIGTERM');
    const srvAlive = srv?.alive;
    if (srv) { await srv.stop(10_000); await srv.cleanup(); }
    const mounts = mountsUnder(dirB);
    const loops = await loopsLeft(`${dirB}/pool.img`);
    const cgs = cgroupsUnder(prefix);
    for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${prefix}`); } catch { /* absent */ } }
    if (mounts.length === 0 && loops.length === 0) rmSync(dirB, { recursive: true, force: true });
    assert.ok(srvAlive !== false, 'warren serve died');
    assert.ok(orchAlive !== false, `the orchestrator died:\n${tail}`);
    assert.deepEqual(mounts, [], 'no mount left');
    assert.deepEqual(loops, [], 'no loop device left');
    assert.deepEqual(cgs, [], 'no cgroup left');
  });

  test('tool calls run in the standalone orchestrator\'s sandbox; it survives SIGKILL', async () => {
    orch = new Standalone(orchArgs());
    await orch.start();
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.relay_started'), 'the relay is up');
    const agent = await client.beta.agents.create({ name: 'sa', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(client, s.id, 'show me what you can do');
    let evs = await waitIdle(client, s.id, 1);
    assert.deepEqual(evs.filter((e) => e.type === 'agent.tool_use').map((e) => e.name), ['write', 'bash', 'read']);
    const results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => !r.is_error), JSON.stringify(results));
    const hello = resultText(results[2]);
    assert.match(hello, /Hello from .*a Warren sandbox/);
    assert.match(hello, /files in \/workspace: 2/);

    // The sandbox is in data dir B, labelled with the session, and holds the
    // very output the agent read.
    let sbs = await listB();
    assert.equal(sbs.length, 1, JSON.stringify(sbs));
    const sb = sbs[0];
    assert.equal(sb.labels['warren.session_id'], s.id);
    assert.equal(sb.labels['warren.environment_id'], env.id);
    assert.equal(sb.labels['warren.orchestrator'], `standalone-${env.id}`);
    const out = await cli(['sandbox', 'exec', '--data-dir', dirB, sb.id, '--', 'sh', '-c', 'cat /workspace/hello.out; echo kept > /workspace/kept.txt']);
    assert.equal(out.stdout.split('\n')[0], hello.split('\n').find((l) => l.startsWith('Hello from')));
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.runner_launched'), 'a runner was launched');

    // SIGKILL, restart: the next turn runs in the same sandbox, files kept.
    await orch.kill('SIGKILL');
    orch = new Standalone(orchArgs());
    await orch.start();
    await say(client, s.id, 'again please');
    evs = await waitIdle(client, s.id, 2);
    const all = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(all.length, 6);
    assert.ok(all.every((r) => !r.is_error), JSON.stringify(all.slice(3)));
    assert.match(resultText(all[5]), /files in \/workspace: 3/, 'kept.txt is still there');
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.runner_adopted' || l.msg === 'orchestrator.runner_launched'),
      'the restarted orchestrator adopted or launched the runner');
    sbs = await listB();
    assert.equal(sbs.length, 1, 'no second sandbox');
    assert.equal(sbs[0].id, sb.id);
  });
});
