// Runner crash recovery (docs/ORCHESTRATOR.md, "Supervise"): the built-in
// orchestrator watches every runner through a pidfd; a runner killed inside
// its sandbox is relaunched at once with the same delivery (it takes over
// the dead runner's lease), never next to another runner of the session,
// and after `runner_max_relaunches` the item is stopped so that the queue
// delivers the session's calls again. Needs root; skips with the reason
// otherwise.
//
// The work lease is 600 s here, far longer than these tests may wait: a
// session that completes did not wait for a lapse.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Fixture, orchestratorSkipReason as skipReason, events, waitIdle, lastText, say, sleep } from './lib/orchestrator.mjs';

// Kills every warren-runner process of the sandbox from inside it (the
// sandbox's own pid namespace). Prints the pids it killed.
const KILL_RUNNER = `for p in /proc/[0-9]*; do
  c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)
  case "$c" in "/.warren/bin/warren-runner run "*) kill -9 \${p#/proc/} && echo \${p#/proc/};; esac
done`;
const RUNNERS = `for p in /proc/[0-9]*; do
  c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null)
  case "$c" in "/.warren/bin/warren-runner run "*) echo \${p#/proc/};; esac
done`;

// The orchestrator logs a runner's launch (and a relaunch) once it has found
// the runner's pid for supervision; the runner is at work meanwhile and may
// have answered already. Waits for such a line instead of expecting it at once.
async function logLine(fx, from, pred, timeoutMs = 10_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = fx.log.slice(from).find(pred);
    if (hit || Date.now() > end) return hit;
    await sleep(20);
  }
}

async function startedSandbox(fx, sid, probe, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    const l = await fx.sandboxes(sid);
    if (l.length === 1 && l[0].state === 'started') {
      const r = await fx.exec(l[0].id, probe, { check: false });
      if (r.exit_code === 0 && r.stdout.trim() !== '') return l[0];
    }
    await sleep(50);
  }
  assert.fail(`no started sandbox for ${sid} where \`${probe}\` prints something`);
}

describe('orchestrator: a runner killed inside its sandbox', { skip: skipReason(), timeout: 240_000 }, () => {
  const fx = new Fixture('rcrash', {
    top: { work_lease_ttl_seconds: 600 },
    config: { runner_idle_ms: 3000, sandbox_idle_stop_ms: 60_000, runner_max_relaunches: 2, relaunch_initial_ms: 100 },
  });
  let env; let agent;
  before(async () => {
    await fx.start();
    env = await fx.client.beta.environments.create({ name: 'cloud', config: { type: 'cloud' } });
    agent = await fx.client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
  });
  after(async () => { await fx.stopAndCheckLeaks(); });
  const newSession = () => fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id });

  test('mid-tool: relaunched at once with the lease, the call is not run twice, the session completes', async () => {
    const c = fx.client;
    const s = await newSession();
    const from = fx.log.length;
    await say(c, s.id, 'run: echo ran >> /workspace/side.txt; sleep 2; echo finished >> /workspace/side.txt');
    // The command is running: kill the runner that serves it.
    const sb = await startedSandbox(fx, s.id, 'cat /workspace/side.txt 2>/dev/null');
    const killed = await fx.exec(sb.id, KILL_RUNNER);
    assert.match(killed.stdout, /^\d+/m, 'a runner was killed');
    const { evs, msgs } = await waitIdle(c, s.id, 1, 60_000);
    const log = fx.log.slice(from);
    assert.ok(log.some((l) => l.msg === 'orchestrator.runner_crashed' && l.session_id === s.id && l.exit === '137'),
      'the crash was seen through the pidfd with its exit status (128+SIGKILL)');
    assert.ok(await logLine(fx, from, (l) => l.msg === 'orchestrator.runner_relaunched' && l.session_id === s.id), 'relaunched');
    // Exactly one result for the call, and the command ran once: the
    // relaunched runner found it in the call journal and said so.
    const results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 1, JSON.stringify(results));
    assert.equal(results[0].is_error, true);
    assert.match(JSON.stringify(results[0].content), /stopped unexpectedly while this 'bash' call ran/);
    assert.match(lastText(msgs), /The command failed/);
    await sleep(2500);  // the orphaned command's tail, if it survived the runner, ends
    const side = await fx.exec(sb.id, 'cat /workspace/side.txt');
    assert.equal(side.stdout.split('\n').filter((l) => l === 'ran').length, 1, `ran once: ${side.stdout}`);
    // The lease moved to the relaunched runner: one runner, never two.
    const runners = await fx.exec(sb.id, RUNNERS);
    assert.ok(runners.stdout.trim().split('\n').filter(Boolean).length <= 1, runners.stdout);
    // And the session goes on: a second turn in the same sandbox.
    await say(c, s.id, 'run: cat /workspace/side.txt | head -1');
    const r2 = await waitIdle(c, s.id, 2, 60_000);
    assert.match(lastText(r2.msgs), /printed: ran/);
    assert.equal((await fx.sandboxes(s.id)).length, 1, 'one sandbox');
  });

  test('relaunches that keep failing: after the cap the item is stopped and the queue delivers the call again', async () => {
    const c = fx.client;
    const s = await newSession();
    const from = fx.log.length;
    await say(c, s.id, 'run: sleep 5; echo never-reported');
    // Once the call runs, break the runner's state directory (a file where
    // the launch script makes its directory: every relaunch fails) and kill
    // the runner.
    const sb = await startedSandbox(fx, s.id, 'ls /tmp/.warren-runner/calls/ 2>/dev/null | grep started');
    const k = await fx.exec(sb.id, `mv /tmp/.warren-runner /tmp/.warren-runner.saved && touch /tmp/.warren-runner && ${KILL_RUNNER}`);
    assert.match(k.stdout, /^\d+/m, 'a runner was killed');
    const end = Date.now() + 60_000;
    let gaveUp;
    while (Date.now() < end && !gaveUp) {
      gaveUp = fx.log.slice(from).find((l) => l.msg === 'orchestrator.runner_gave_up' && l.session_id === s.id);
      await sleep(50);
    }
    assert.ok(gaveUp, 'gave up after the cap');
    assert.equal(gaveUp.relaunches, 2);
    assert.match(gaveUp.action, /force-stopped; the queue delivers/);
    const scheduled = fx.log.slice(from).filter((l) => l.msg === 'orchestrator.runner_relaunch_scheduled' && l.session_id === s.id);
    assert.deepEqual(scheduled.map((l) => l.attempt), [1, 2]);
    // Repair the sandbox: the new item that the queue made for the pending
    // call is served by a fresh runner, which finds the call in the journal
    // (started, never finished) and answers it with an error instead of
    // running it again.
    await fx.exec(sb.id, 'rm /tmp/.warren-runner && mv /tmp/.warren-runner.saved /tmp/.warren-runner');
    const { evs, msgs } = await waitIdle(c, s.id, 1, 60_000);
    const results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 1, JSON.stringify(results));
    assert.equal(results[0].is_error, true);
    assert.match(lastText(msgs), /The command failed: .*not run again/);
    const firstWork = gaveUp.work_id;
    await logLine(fx, from, (l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id && l.work_id !== firstWork);
    const launched = fx.log.slice(from).filter((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id);
    assert.equal(new Set(launched.map((l) => l.work_id)).size, 2, 'a second work item was delivered and served');
  });
});
