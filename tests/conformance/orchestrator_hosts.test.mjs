// One orchestrator per environment across hosts (issue 10 item 5,
// docs/ORCHESTRATOR.md "Several orchestrators"). A `warren serve
// --no-orchestrator` with a self_hosted environment and a short holder TTL;
// standalone orchestrators with their own sandbox data dirs stand for hosts:
//   - A (data dir A) serves the environment and a session runs in A's sandbox;
//   - B (data dir B) on the same environment exits non-zero with the
//     service's clear error, and makes no sandbox;
//   - a poll carrying another orchestrator id gets the 409 in the spec's
//     envelope; a poll without the header (the SDK's worker) is not checked;
//   - A's replacement on data dir A after SIGKILL (an upgrade) is accepted
//     at once: same id, and it serves the session's next turn;
//   - once A is gone for longer than the TTL, B is accepted and serves a new
//     session in its own sandbox.
// No timing is asserted: every step waits for the state it checks. Needs root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { startServer } from './lib/server.mjs';
import { orchestratorSkipReason as skipReason, sleep } from './lib/orchestrator.mjs';
import { Standalone, StandaloneHost } from './lib/standalone.mjs';
import { runnersBySession } from './lib/orchestrator_crash.mjs';

const TTL_MS = 10_000;  // orchestrator.holder_ttl_ms of this service (an orchestrator polls about every second)

async function events(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
  return out;
}
async function waitIdle(client, sid, nTurns, timeoutMs = 90_000) {
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
async function waitFor(pred, what, timeoutMs = 60_000) {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await pred()) return;
    await sleep(100);
  }
  assert.fail(`timed out waiting for ${what}`);
}
const say = (client, sid, text) => client.beta.sessions.events.send(sid, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
const REFUSAL = /is served by another orchestrator/;

/** Runs an orchestrator expected to be refused: resolves {code, signal, stderr, log} once it exited. */
async function runRefused(args) {
  const o = new Standalone(args);
  try { await o.start(); } catch { /* exited before its ready line: fine, the exit is what is checked */ }
  let timer;
  const exit = await Promise.race([o.exited, new Promise((r) => { timer = setTimeout(() => r(null), 60_000); })]);
  clearTimeout(timer);
  if (exit === null) {
    await o.kill('SIGKILL');
    assert.fail(`the orchestrator did not exit within 60 s:\n${o.stderr.slice(-4000)}`);
  }
  return { ...exit, stderr: o.stderr, log: o.log };
}

describe('one orchestrator per environment across hosts', { skip: skipReason(), timeout: 300_000 }, () => {
  let srv; let client; let env; let key; let hostA; let hostB; let a; let b;
  const extra = ['--runner-idle-ms', '1000', '--sandbox-idle-stop-ms', '1000', '--janitor-interval-ms', '200',
    '--session-check-interval-ms', '300'];
  const argsA = () => hostA.args({ baseUrl: srv.url, environmentId: env.id, key, extra });
  const argsB = () => hostB.args({ baseUrl: srv.url, environmentId: env.id, key, extra });
  const idOf = (host) => readFileSync(`${host.dir}/orchestrator.id`, 'utf8').trim();

  before(async () => {
    srv = await startServer({ env: { WARREN_LOG_FORMAT: 'json', WARREN_ORCHESTRATOR_HOLDER_TTL_MS: String(TTL_MS) } });
    client = srv.client({ maxRetries: 2 });
    env = await client.beta.environments.create({ name: 'hosts', config: { type: 'self_hosted' } });
    key = (await srv.createEnvKey(env.id)).trim();
    hostA = new StandaloneHost('orchhostA');
    hostB = new StandaloneHost('orchhostB');
  });

  after(async () => {
    // Sandboxes are removed while an orchestrator of their data dir runs
    // (its stop then unmounts the pool).
    if (b?.alive && hostB) await hostB.removeAll();
    if (a?.alive && hostA) await hostA.removeAll();
    if (a) await a.kill('SIGTERM');
    if (b) await b.kill('SIGTERM');
    const srvAlive = srv?.alive;
    if (srv) { await srv.stop(10_000); await srv.cleanup(); }
    if (hostA) await hostA.checkLeaks();
    if (hostB) await hostB.checkLeaks();
    assert.ok(srvAlive !== false, 'warren serve died');
  });

  test('a second host is refused with a clear error; an upgrade on the same data dir is not; after the TTL the second host takes over', async () => {
    // A serves the environment.
    a = new Standalone(argsA());
    await a.start();
    const idA = idOf(hostA);
    assert.match(idA, /^orch_[A-Za-z0-9]+$/);
    assert.equal(statSync(`${hostA.dir}/orchestrator.id`).mode & 0o777, 0o600);
    assert.ok(a.log.some((l) => l.msg === 'orchestrator.standalone' && l.orchestrator_id === idA), 'A logs its id');
    const agent = await client.beta.agents.create({ name: 'hosts', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s1 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(client, s1.id, 'show me what you can do');
    let evs = await waitIdle(client, s1.id, 1);
    let results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => !r.is_error), JSON.stringify(results));
    const sbsA = await hostA.list();
    assert.equal(sbsA.length, 1);
    assert.equal(sbsA[0].labels['warren.session_id'], s1.id);

    // B, another host on the same environment: refused, exits non-zero with
    // the service's message on stderr, and made no sandbox.
    const refused = await runRefused(argsB());
    assert.notEqual(refused.code, 0, `B exited ${JSON.stringify(refused)}`);
    const errLine = refused.stderr.split('\n').find((l) => l.startsWith('warren: '));
    assert.ok(errLine, `the error is on stderr:\n${refused.stderr.slice(-3000)}`);
    assert.match(errLine, REFUSAL);
    assert.ok(errLine.includes(env.id), errLine);
    assert.ok(errLine.includes(idA), `names A's id ${idA}: ${errLine}`);
    assert.match(errLine, /host \S+, last seen \d+\.\d s ago/);
    assert.ok(errLine.includes('docs/ORCHESTRATOR.md'), errLine);
    assert.ok(refused.log.some((l) => l.msg === 'orchestrator.environment_refused'), 'B logs the refusal');
    const idB = idOf(hostB);
    assert.notEqual(idB, idA, 'another data dir is another orchestrator');
    // B claimed nothing and made no sandbox (its data dir is listed once B
    // runs, below: only the new session's sandbox is there).
    assert.ok(!refused.log.some((l) => /^orchestrator\.(sandbox_created|runner_launched|item_)/.test(l.msg)),
      JSON.stringify(refused.log.map((l) => l.msg)));
    assert.ok(a.alive, 'A is not disturbed');

    // The wire: another id gets the 409 envelope; a poll without the header
    // (the SDK's EnvironmentWorker) is not checked (the queue is empty here).
    const poll = (headers) => fetch(`${srv.url}/v1/environments/${env.id}/work/poll`, {
      headers: { authorization: `Bearer ${key}`, 'anthropic-version': '2023-06-01', ...headers },
    });
    const r409 = await poll({ 'warren-orchestrator-id': 'orch_someoneelse', 'warren-orchestrator-host': 'elsewhere' });
    assert.equal(r409.status, 409);
    const body = await r409.json();
    assert.equal(body.type, 'error');
    assert.equal(body.error.type, 'invalid_request_error');
    assert.equal(body.error.details.error_code, 'environment_held_by_another_orchestrator');
    assert.match(body.error.message, REFUSAL);
    assert.ok(body.error.message.includes(idA));
    const plain = await poll({});
    assert.equal(plain.status, 200, await plain.text());

    // An upgrade: A is SIGKILLed and replaced on data dir A at once. Same id,
    // accepted, and it serves the session's next turn in the same sandbox
    // (the turn's runner has ended after its idle window first, so that the
    // replacement must claim the next item itself).
    await waitFor(() => (runnersBySession(new Set([s1.id])).get(s1.id) || []).length === 0, "the first turn's runner to exit");
    await a.kill('SIGKILL');
    a = new Standalone(argsA());
    await a.start();
    assert.equal(idOf(hostA), idA, 'same data dir, same id');
    await say(client, s1.id, 'again please');
    evs = await waitIdle(client, s1.id, 2);
    results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 6);
    assert.ok(results.every((r) => !r.is_error), JSON.stringify(results.slice(3)));
    assert.ok(a.alive, 'the replacement keeps running');
    await waitFor(() => a.log.some((l) => l.msg === 'orchestrator.environment_accepted' && l.orchestrator_id === idA),
      'the replacement to log its acceptance');
    assert.ok(a.log.some((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s1.id),
      `the replacement claimed the turn and launched its runner: ${JSON.stringify(a.log.map((l) => l.msg))}`);
    assert.ok(!a.log.some((l) => l.msg === 'orchestrator.environment_refused'), 'the replacement was never refused');
    const again = await hostA.list();
    assert.equal(again.length, 1, 'no second sandbox');
    assert.equal(again[0].id, sbsA[0].id);

    // A goes away for good (its runner first ends after its idle window;
    // its sandboxes are removed while it still runs, so that its stop
    // unmounts the pool).
    await waitFor(() => (runnersBySession(new Set([s1.id])).get(s1.id) || []).length === 0, "the session's runner to exit");
    await hostA.removeAll();
    await a.kill('SIGTERM');
    assert.equal(a.child.exitCode, 0, `A stopped cleanly:\n${a.stderr.slice(-2000)}`);

    // B is accepted once A has not polled for the TTL: until then each try
    // is refused with the same clear error (and makes no sandbox).
    await sleep(TTL_MS);
    let tries = 0;
    const end = Date.now() + 120_000;
    for (;;) {
      tries++;
      const o = new Standalone(argsB());
      let started = true;
      try { await o.start(); } catch { started = false; }
      if (started) {
        // The first poll decides: accepted (logged once) or refused (exit).
        const accepted = await new Promise((resolve) => {
          const seen = () => o.log.some((l) => l.msg === 'orchestrator.environment_accepted');
          if (seen()) return resolve(true);
          o.onLine(() => { if (seen()) resolve(true); });
          o.exited.then(() => resolve(seen()));
        });
        if (accepted && o.alive) { b = o; break; }
      }
      await o.exited;
      assert.notEqual(o.child.exitCode, 0);
      assert.match(o.stderr, REFUSAL, `B failed for another reason:\n${o.stderr.slice(-3000)}`);
      assert.ok(Date.now() < end, `B was never accepted after ${tries} tries`);
      await sleep(500);
    }
    const s2 = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(client, s2.id, 'show me what you can do');
    evs = await waitIdle(client, s2.id, 1);
    results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => !r.is_error), JSON.stringify(results));
    const sbsB = await hostB.list();
    assert.equal(sbsB.length, 1, 'only the new session\'s sandbox: the refused tries made none');
    assert.equal(sbsB[0].labels['warren.session_id'], s2.id);
    assert.ok(b.alive);
    assert.ok(!b.log.some((l) => l.msg === 'orchestrator.environment_refused'));
    // And now A's data dir is the one refused (the holder is B).
    const back = await runRefused(argsA());
    assert.notEqual(back.code, 0);
    assert.match(back.stderr, REFUSAL);
    assert.ok(back.stderr.includes(idB), `names B's id ${idB}`);
  });
});
