// Issue 4, must show: fault tests of warren-runner against Warren's real work
// queue (not a fake). The server runs with a 2 s lease TTL
// (WARREN_WORK_LEASE_TTL_SECONDS), so workers heartbeat every second and a
// dead worker's lease lapses in about two.
//
//   1. a runner SIGKILLed in the middle of a tool call: its lease expires, a
//      second runner reclaims the item, runs the unanswered call and posts
//      its result; exactly one result per call, and the dead runner's
//      sessions token no longer works;
//      the same with the SDK's EnvironmentWorker as the reclaiming worker;
//   2. a runner SIGKILLed after it posted a result: the reclaiming runner
//      does not run or post that call again;
//   3. a 412 on a heartbeat (someone else took the lease) makes the runner
//      stop serving the item, and it does not stop an item it no longer holds;
//   4. a graceful stop request reaches a running runner on its next
//      heartbeat: exactly one heartbeat answers `stopping`, the runner
//      cancels the running tool, posts a cancelled result and confirms the
//      stop itself (not the server's stopping deadline);
//   5. two deliveries of one un-acked item (the reclaim) both hold valid
//      sessions tokens: B's runner beats and serves; A's runner, relaunched
//      with --resume-lease after it died before its first beat, has no lease
//      record of its own delivery and must not take B's lease over: it exits
//      3 without stopping the item, and B keeps the lease and serves.
//
// Observations come from the event log, the Work objects and the server's
// own structured log lines (json, debug level), never from timing.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, runCli, missingBinaryReason, REPO_ROOT } from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(here, '../golden/engine_e2e/sdk_session.json');
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const skip = missingBinaryReason() || (existsSync(RUNNER) ? false : `no runner at ${RUNNER}`);

async function until(what, fn, timeoutMs = 30_000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

async function events(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid)) out.push(e);
  return out;
}

function resultsFor(evs, useId) {
  return evs.filter((e) => e.type === 'user.tool_result' && e.tool_use_id === useId);
}

describe('warren-runner faults against the real work queue', { skip, timeout: 240_000 }, () => {
  let srv;
  let org;
  let agent;
  let tmp;
  const serverLog = []; // parsed json log lines of the server
  const runners = [];

  before(async () => {
    srv = await startServer({
      env: {
        WARREN_MODEL_SCRIPT: SCRIPT,
        WARREN_WORK_LEASE_TTL_SECONDS: '2',
        WARREN_LOG_LEVEL: 'debug',
        WARREN_LOG_FORMAT: 'json',
      },
    });
    let partial = '';
    srv.child.stderr.on('data', (d) => {
      partial += d;
      const lines = partial.split('\n');
      partial = lines.pop();
      for (const l of lines) {
        if (!l.includes('"work.')) continue;
        try { serverLog.push(JSON.parse(l)); } catch { /* not a log line */ }
      }
    });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
    agent = await org.beta.agents.create({
      name: 'faults', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }],
    });
    tmp = await mkdtemp(path.join(tmpdir(), 'warren-faults-'));
  });

  after(async () => {
    for (const r of runners) r.proc.kill('SIGKILL');
    if (srv) await srv.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  // A self-hosted environment with its key and one session on it.
  async function setup(name) {
    const env = await org.beta.environments.create({ name, config: { type: 'self_hosted' } });
    const envKey = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', srv.dataDir]);
    const session = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    return { env, envKey, session };
  }

  async function say(sid, text) {
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.message', content: [{ type: 'text', text }] }],
    });
  }

  // `warren-runner poll` with json logs; `maxIdle` long so it keeps serving.
  function spawnRunner(name, env, envKey, { maxIdle = '120s', mode = ['poll', '--worker-id', name] } = {}) {
    const workdir = path.join(tmp, name);
    const proc = spawn(RUNNER, [...mode, '--environment-id', env.id, '--environment-key', envKey,
      '--base-url', srv.url, '--workdir', workdir, '--max-idle', maxIdle, '--log-format', 'json'],
    { stdio: ['ignore', 'pipe', 'pipe'] });
    const r = { name, proc, log: '', exit: null };
    proc.stdout.on('data', (d) => { r.log += d; });
    proc.stderr.on('data', (d) => { r.log += d; });
    r.exited = new Promise((res) => proc.on('exit', (code, signal) => { r.exit = { code, signal }; res(r.exit); }));
    runners.push(r);
    return r;
  }

  async function item(envId) {
    const page = await org.beta.environments.work.list(envId);
    assert.equal(page.data.length, 1, `one work item: ${JSON.stringify(page.data)}`);
    return page.data[0];
  }

  async function waitToolUse(sid, n = 1) {
    return until(`${n} agent.tool_use`, async () => {
      const uses = (await events(org, sid)).filter((e) => e.type === 'agent.tool_use');
      return uses.length >= n ? uses[n - 1] : null;
    });
  }

  async function waitAnswer(sid, needle) {
    return until(`an answer containing ${needle}`, async () => {
      const evs = await events(org, sid);
      const msg = evs.filter((e) => e.type === 'agent.message').at(-1);
      return msg && JSON.stringify(msg.content).includes(needle) ? evs : null;
    }, 60_000);
  }

  const lines = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []);

  test('runner killed mid-tool: lease expires, a second runner reclaims and posts the one result', async () => {
    const { env, envKey, session } = await setup('kill-mid-tool');
    const starts = path.join(tmp, 'starts-1');
    await say(session.id, `run: echo "$PWD" >> ${starts}; sleep 3; echo slow-call-done`);
    // A is `warren-runner run` on an item this test claimed and acked, so the
    // test knows the sessions token A works with.
    const poller = new Anthropic({ apiKey: null, authToken: envKey, baseURL: srv.url, maxRetries: 0 });
    const claimed = await until('an item to claim', () =>
      poller.beta.environments.work.poll(env.id, { block_ms: 500 }));
    await poller.beta.environments.work.ack(claimed.id, { environment_id: env.id });
    const aToken = JSON.parse(Buffer.from(claimed.secret, 'base64url').toString())['sessions_token'];
    assert.ok(aToken, 'the item carries a sessions token');
    const secretFile = path.join(tmp, 'secret-1');
    writeFileSync(secretFile, claimed.secret, { mode: 0o600 });
    const a = spawnRunner('a1', env, envKey, {
      mode: ['run', '--session-id', session.id, '--work-id', claimed.id, '--work-secret-file', secretFile],
    });
    const use = await waitToolUse(session.id);
    await until('runner A started the call', () => lines(starts).length === 1);
    const held = await item(env.id);
    assert.equal(held.state, 'active');
    const tokenClient = new Anthropic({ apiKey: null, authToken: aToken, baseURL: srv.url, maxRetries: 0 });
    assert.equal((await tokenClient.beta.sessions.retrieve(session.id)).id, session.id);
    a.proc.kill('SIGKILL');
    await a.exited;

    const b = spawnRunner('b1', env, envKey);
    try {
      const evs = await waitAnswer(session.id, 'printed: slow-call-done');
      assert.equal(resultsFor(evs, use.id).length, 1, 'exactly one result for the call');
      assert.equal(evs.filter((e) => e.type === 'user.tool_result').length, 1);
      assert.equal(resultsFor(evs, use.id)[0].is_error, false);
      const runs = lines(starts);
      assert.equal(runs.length, 2, `A started it, B ran it again: ${runs}`);
      assert.ok(runs[1].endsWith('/b1'), `second run in B's workdir: ${runs}`);
      // The same item was reclaimed (no second item), through lease expiry.
      const w = await item(env.id);
      assert.equal(w.id, held.id);
      assert.ok(serverLog.some((l) => l.msg === 'work.lease_expired' && l.work_id === held.id && l.to === 'queued'));
      // The dead runner's sessions token was revoked with its lease.
      await assert.rejects(tokenClient.beta.sessions.retrieve(session.id), (e) => e.status === 401);
    } catch (e) {
      throw new Error(`${e.message}\nrunner B log:\n${b.log.slice(-3000)}`);
    } finally {
      b.proc.kill('SIGTERM');
      await b.exited;
    }
  });

  test('warren-runner killed mid-tool: the SDK EnvironmentWorker reclaims the item and answers once', async () => {
    const { env, envKey, session } = await setup('kill-then-sdk');
    const starts = path.join(tmp, 'starts-5');
    await say(session.id, `run: echo "$PWD" >> ${starts}; sleep 2; echo sdk-took-over`);
    const a = spawnRunner('a5', env, envKey);
    const use = await waitToolUse(session.id);
    await until('runner A started the call', () => lines(starts).length === 1);
    a.proc.kill('SIGKILL');
    await a.exited;
    const workdir = path.join(tmp, 'sdk5');
    mkdirSync(workdir); // the SDK worker runs bash in it
    const workerClient = new Anthropic({ apiKey: 'unused', baseURL: srv.url, maxRetries: 2 });
    const controller = new AbortController();
    const worker = workerClient.beta.environments.work.worker({
      environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 1000,
    });
    const running = worker.run(controller.signal).catch((e) => e);
    try {
      const evs = await waitAnswer(session.id, 'printed: sdk-took-over');
      assert.equal(resultsFor(evs, use.id).length, 1, 'exactly one result for the call');
      assert.equal(lines(starts).length, 2, 'A started it, the SDK worker ran it again');
    } finally {
      controller.abort();
      await running;
    }
  });

  test('runner killed after posting: the reclaiming runner does not run or post that call again', async () => {
    const { env, envKey, session } = await setup('kill-after-post');
    const runs = path.join(tmp, 'runs-2');
    await say(session.id, `run: echo first >> ${runs}; echo quick-one`);
    const a = spawnRunner('a2', env, envKey);
    const first = await waitToolUse(session.id);
    await waitAnswer(session.id, 'printed: quick-one');
    const held = await item(env.id);
    assert.equal(held.state, 'active', 'A still holds the item (long max-idle)');
    a.proc.kill('SIGKILL');
    await a.exited;
    // A new message while the dead runner's lease is still on the books: no
    // second item (one live item per session); the lapsed lease brings it back.
    await say(session.id, `run: echo second >> ${runs}; echo quick-two`);
    const b = spawnRunner('b2', env, envKey);
    try {
      const second = await waitToolUse(session.id, 2);
      const evs = await waitAnswer(session.id, 'printed: quick-two');
      assert.equal(resultsFor(evs, first.id).length, 1, 'first call answered once');
      assert.equal(resultsFor(evs, second.id).length, 1, 'second call answered once');
      assert.deepEqual(lines(runs), ['first', 'second'], 'each call ran exactly once');
      assert.equal((await item(env.id)).id, held.id, 'served by the reclaimed item');
    } catch (e) {
      throw new Error(`${e.message}\nrunner B log:\n${b.log.slice(-3000)}`);
    } finally {
      b.proc.kill('SIGTERM');
      await b.exited;
    }
  });

  test('a 412 on a heartbeat makes the runner stop serving, without stopping the item', async () => {
    const { env, envKey, session } = await setup('lease-stolen');
    const runs = path.join(tmp, 'runs-3');
    await say(session.id, `run: echo one >> ${runs}; echo first-served`);
    const a = spawnRunner('a3', env, envKey);
    await waitAnswer(session.id, 'printed: first-served');
    // Take the lease: heartbeat with the holder's latest value (compare and
    // set). A's next beat then carries a stale value and gets 412.
    const thief = new Anthropic({ apiKey: null, authToken: envKey, baseURL: srv.url, maxRetries: 0 });
    const w0 = await item(env.id);
    let stolen = null;
    await until('the lease is taken over', async () => {
      const w = await org.beta.environments.work.retrieve(w0.id, { environment_id: env.id });
      try {
        stolen = await thief.beta.environments.work.heartbeat(w.id, {
          environment_id: env.id, expected_last_heartbeat: w.latest_heartbeat_at,
        });
        return true;
      } catch (e) {
        if (e.status === 412) return false; // A beat in between: retry
        throw e;
      }
    });
    assert.equal(stolen.lease_extended, true);
    try {
      await until('A logs the lost lease', () => /lease lost: heartbeat precondition failed/.test(a.log));
      await until('A released the item without stopping it', () => /released without stopping it/.test(a.log));
      // The thief keeps the lease alive; the item stays active (not stopped by A).
      let last = stolen.last_heartbeat;
      const beat = async () => {
        const hb = await thief.beta.environments.work.heartbeat(w0.id, {
          environment_id: env.id, expected_last_heartbeat: last,
        });
        last = hb.last_heartbeat;
        return hb;
      };
      assert.equal((await beat()).state, 'active');
      // A new call is not served by A any more.
      await say(session.id, `run: echo two >> ${runs}; echo not-by-a`);
      const use2 = await waitToolUse(session.id, 2);
      for (let i = 0; i < 4; i++) {
        await sleep(500);
        await beat();
      }
      const evs = await events(org, session.id);
      assert.equal(resultsFor(evs, use2.id).length, 0, 'A no longer serves the session');
      assert.deepEqual(lines(runs), ['one']);
      assert.equal((await item(env.id)).state, 'active');
      assert.ok(a.exit === null, 'the poller itself keeps running');
    } catch (e) {
      throw new Error(`${e.message}\nrunner A log:\n${a.log.slice(-3000)}`);
    } finally {
      a.proc.kill('SIGTERM');
      await a.exited;
    }
  });

  test('two deliveries of one item: a resumed runner of the one that never beat does not take over the lease', async () => {
    const { env, envKey, session } = await setup('two-deliveries');
    const runs = path.join(tmp, 'runs-6');
    const poller = new Anthropic({ apiKey: null, authToken: envKey, baseURL: srv.url, maxRetries: 0 });
    // Delivery 1 is not acked in time, so the reclaim hands the same item out
    // again with a second sessions token; both are then acked (idempotent on
    // a held item) and both tokens are valid.
    const d1 = await until('a first delivery', () => poller.beta.environments.work.poll(env.id, { block_ms: 500 }));
    const d2 = await until('a second delivery of the same item', () =>
      poller.beta.environments.work.poll(env.id, { block_ms: 500, reclaim_older_than_ms: 1 }));
    assert.equal(d2.id, d1.id);
    assert.notEqual(d2.secret, d1.secret);
    await poller.beta.environments.work.ack(d1.id, { environment_id: env.id });
    await poller.beta.environments.work.ack(d2.id, { environment_id: env.id });
    const secretFile = (name, w) => {
      const f = path.join(tmp, name);
      writeFileSync(f, w.secret, { mode: 0o600 });
      return f;
    };
    const runArgs = (w, name) => ['run', '--session-id', session.id, '--work-id', w.id,
      '--work-secret-file', secretFile(`secret-${name}`, w), '--call-journal', path.join(tmp, `journal-${name}`)];
    // B (delivery 2) beats first and serves a call.
    const b = spawnRunner('b6', env, envKey, { mode: runArgs(d2, 'b6') });
    let a;
    try {
      await say(session.id, `run: echo "$PWD" >> ${runs}; echo first-served`);
      await waitAnswer(session.id, 'printed: first-served');
      assert.equal((await item(env.id)).state, 'active');
      // A (delivery 1) died before its first beat; its supervisor relaunches
      // it with --resume-lease. Nothing proves the held lease is its own.
      a = spawnRunner('a6', env, envKey, { mode: [...runArgs(d1, 'a6'), '--resume-lease'] });
      await until('the resumed runner of delivery 1 exits', () => a.exit, 30_000);
      assert.equal(a.exit.code, 3, 'exit 3: lease lost, the item is not its to stop');
      assert.match(a.log, /cannot prove its own/);
      assert.doesNotMatch(a.log, /adopting the server's token/);
      // B still holds the lease: every beat after A's exit is answered
      // `active` (none is a 412), and B serves the next call.
      const logFrom = serverLog.length;
      await say(session.id, `run: echo "$PWD" >> ${runs}; echo second-served`);
      await waitAnswer(session.id, 'printed: second-served');
      await until('two beats after A exited', () =>
        serverLog.slice(logFrom).filter((l) => l.msg === 'work.heartbeat' && l.work_id === d1.id).length >= 2);
      const beats = serverLog.slice(logFrom).filter((l) => l.msg === 'work.heartbeat' && l.work_id === d1.id);
      assert.ok(beats.every((l) => l.state === 'active'), JSON.stringify(beats));
      assert.deepEqual(lines(runs), [path.join(tmp, 'b6'), path.join(tmp, 'b6')], 'both calls ran in B');
      assert.equal(b.exit, null, 'B still serves');
      assert.doesNotMatch(b.log, /lease lost/);
      assert.equal((await item(env.id)).state, 'active');
      assert.ok(!serverLog.some((l) => l.msg === 'work.stop' && l.work_id === d1.id), 'nobody stopped the item');
    } catch (e) {
      throw new Error(`${e.message}\nrunner A log:\n${a ? a.log.slice(-3000) : ''}\nrunner B log:\n${b.log.slice(-3000)}`);
    } finally {
      if (a && a.exit === null) a.proc.kill('SIGKILL');
      b.proc.kill('SIGTERM');
      await b.exited;
    }
  });

  test('a stop request reaches a running runner on its next heartbeat', async () => {
    const { env, envKey, session } = await setup('graceful-stop');
    const pidFile = path.join(tmp, 'pid-4');
    await say(session.id, `run: echo $$ > ${pidFile}; sleep 60; echo never`);
    const a = spawnRunner('a4', env, envKey);
    const use = await waitToolUse(session.id);
    const pid = Number(await until('the tool is running', () => lines(pidFile)[0]));
    const w0 = await item(env.id);
    const logFrom = serverLog.length;
    const stopped = await org.beta.environments.work.stop(w0.id, { environment_id: env.id });
    assert.equal(stopped.state, 'stopping');
    try {
      const w = await until('the item is stopped', async () => {
        const x = await item(env.id);
        return x.state === 'stopped' ? x : null;
      });
      assert.ok(w.stop_requested_at && w.stopped_at);
      const mine = serverLog.slice(logFrom).filter((l) => l.work_id === w0.id);
      const beats = mine.filter((l) => l.msg === 'work.heartbeat');
      // The first heartbeat after the request answers `stopping`, and it is
      // the last one the runner sends: the stop reached it within one beat.
      assert.ok(beats.length >= 1, 'a heartbeat after the stop request');
      assert.equal(beats[0].state, 'stopping', JSON.stringify(beats));
      assert.equal(beats.length, 1, `no heartbeat after the one that said stopping: ${JSON.stringify(beats)}`);
      // The runner confirmed the stop itself (stopping -> stopped by its
      // force-stop), not the server's stopping deadline.
      assert.ok(mine.some((l) => l.msg === 'work.stop' && l.from === 'stopping' && l.to === 'stopped'),
        JSON.stringify(mine));
      assert.ok(!mine.some((l) => l.msg === 'work.lease_expired'), 'not ended by the deadline');
      // The running tool was cancelled and answered as such.
      await until('the tool process is gone', () => !existsSync(`/proc/${pid}`), 10_000);
      const evs = await events(org, session.id);
      const res = resultsFor(evs, use.id);
      assert.equal(res.length, 1, 'one (cancelled) result');
      assert.equal(res[0].is_error, true);
      assert.equal(a.exit, null, 'the poller outlives the stopped item');
    } catch (e) {
      throw new Error(`${e.message}\nrunner A log:\n${a.log.slice(-3000)}`);
    } finally {
      a.proc.kill('SIGTERM');
      const ex = await a.exited;
      assert.equal(ex.code, 0, `runner exit ${JSON.stringify(ex)}`);
    }
  });
});

