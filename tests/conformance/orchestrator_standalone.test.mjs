// The protocol boundary (issue 10): a standalone `warren orchestrator`
// serves a separate `warren serve` over HTTP only. Two processes, two data
// dirs, no shared file and no in-process call: the orchestrator claims work
// with an environment key (poll, ack, stop, session retrieve) and its runners
// reach the service through the orchestrator's relay socket (sandbox network
// `none`). Then SIGKILL of the orchestrator: the restarted one re-adopts the
// sandbox and the next turn runs in it with its files; SIGKILL again, with
// the runner killed too while the orchestrator is down: the held item is
// resumed at once from the orchestrator's record. Needs root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { rmSync, rmdirSync, mkdirSync, chmodSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { startServer } from './lib/server.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './lib/host.mjs';
import { orchestratorSkipReason as skipReason, sleep, RUNNER } from './lib/orchestrator.mjs';
import { cli, Standalone } from './lib/standalone.mjs';
import { runnersBySession } from './lib/orchestrator_crash.mjs';

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

    // The runner dies while the orchestrator is down, its item still held
    // (the lease runs for 90 s): the restarted orchestrator finds the item
    // in its held-items record, checks it over the protocol and resumes it
    // at once (--resume-lease), instead of waiting for the lease to lapse.
    const runners = runnersBySession(new Set([s.id])).get(s.id) || [];
    assert.ok(runners.length >= 1, 'the runner idles after the turn');
    const argv = readFileSync(`/proc/${runners[0]}/cmdline`, 'utf8').split('\0');
    const workId = argv[argv.indexOf('--work-id') + 1];
    const held = readdirSync(`${dirB}/held`);
    assert.ok(held.includes(`${workId}.json`), `the runner's item ${workId} is recorded as held: ${held}`);
    assert.equal(statSync(`${dirB}/held/${workId}.json`).mode & 0o777, 0o600, 'the record holds the work secret');
    await orch.kill('SIGKILL');
    for (const pid of runners) process.kill(pid, 'SIGKILL');
    orch = new Standalone(orchArgs());
    await orch.start();
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.held_item_checked' && l.work_id === workId && /^held/.test(l.verdict)),
      JSON.stringify(orch.log.filter((l) => l.work_id === workId)));
    await say(client, s.id, 'a third time');
    evs = await waitIdle(client, s.id, 3, 45_000);
    const third = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(third.length, 9);
    assert.ok(third.every((r) => !r.is_error), JSON.stringify(third.slice(6)));
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.item_resumed' && l.work_id === workId), 'the held item was resumed');
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.runner_relaunched' && l.work_id === workId), 'with a new runner');
  });
});
