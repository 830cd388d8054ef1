// The built-in orchestrator (docs/ORCHESTRATOR.md) against a real `warren
// serve`, real sandboxes and the real warren-runner, driven by the official
// SDK. Needs root; skips with the reason otherwise.
//
// Short thresholds through the config (runner idle 1 s, sandbox idle stop
// 1 s, janitor 200 ms), so the lifecycle shows in seconds. Each suite uses
// its own sandbox data dir and cgroup prefix, deletes what it made and checks
// that no mount, loop device or cgroup is left.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, mkdirSync, chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, missingBinaryReason, makeDataDir, REPO_ROOT } from './lib/server.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './lib/host.mjs';

import { Fixture, orchestratorSkipReason as skipReason, events, waitIdle, lastText, say, sleep, SCRIPT, RUNNER } from './lib/orchestrator.mjs';

describe('built-in orchestrator: the default scripted demo in a real sandbox', { skip: skipReason(), timeout: 180_000 }, () => {
  // A longer runner idle window keeps the sandbox started for the probes.
  const fx = new Fixture('demo', { script: null, config: { runner_idle_ms: 8000 } });
  before(async () => { await fx.start(); });
  after(async () => { await fx.stopAndCheckLeaks(); });

  test('a cloud session runs write, bash and read in its own sandbox and says what it did', async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({ name: 'cloud-demo', config: { type: 'cloud' } });
    const agent = await c.beta.agents.create({ name: 'demo', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    assert.equal((await fx.sandboxes(s.id)).length, 0, 'no sandbox before a tool call');
    await say(c, s.id, 'show me what you can do');
    const { evs, msgs } = await waitIdle(c, s.id, 1);
    const uses = evs.filter((e) => e.type === 'agent.tool_use').map((e) => e.name);
    assert.deepEqual(uses, ['write', 'bash', 'read']);
    const results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 3);
    assert.ok(results.every((r) => !r.is_error), JSON.stringify(results));
    const text = lastText(msgs);
    assert.match(text, /I wrote \/workspace\/hello\.sh, ran it/);
    assert.match(text, /Hello from .*a Warren sandbox/);
    // It really ran in the session's sandbox: the file is there.
    const [sb] = await fx.sandboxes(s.id);
    assert.equal(sb.labels['warren.environment_id'], env.id);
    assert.equal(sb.labels['warren.mode'], 'session');
    assert.equal(sb.state, 'started', 'the runner is still in its idle window');
    const r = await fx.exec(sb.id, 'cat /workspace/hello.out');
    assert.match(r.stdout, /a Warren sandbox/);
    // The runner binary and the socket directory are read-only mounts: a
    // truncating open reaches the mount's read-only check (EROFS) before any
    // permission check, so the errno names the mount as what blocks it.
    const w = await fx.exec(sb.id, 'echo x > /.warren/bin/warren-runner; echo rc=$?; echo y > /.warren/run/planted; echo rc=$?');
    assert.match(w.stderr, /warren-runner: Read-only file system/);
    assert.match(w.stderr, /planted: Read-only file system/);
    assert.doesNotMatch(w.stdout, /rc=0/);
  });
});

describe('built-in orchestrator: lifecycle', { skip: skipReason(), timeout: 600_000 }, () => {
  const fx = new Fixture('life');
  let env; let agent;
  before(async () => {
    await fx.start();
    env = await fx.client.beta.environments.create({ name: 'cloud', config: { type: 'cloud' } });
    agent = await fx.client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
  });
  after(async () => { await fx.stopAndCheckLeaks(); });
  const newSession = () => fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id });

  test('idle session: sandbox stopped with files kept; a later message starts it and the files are there', async () => {
    const c = fx.client;
    const s = await newSession();
    await say(c, s.id, 'run: echo kept-across-stop > /workspace/note.txt && echo written');
    let r = await waitIdle(c, s.id, 1);
    assert.match(lastText(r.msgs), /printed: written/);
    const stopped = await fx.waitSandbox(s.id, 'stopped');
    assert.ok(fx.log.some((l) => l.msg === 'orchestrator.sandbox_stopped' && l.sandbox === stopped.id));
    await say(c, s.id, 'run: cat /workspace/note.txt');
    r = await waitIdle(c, s.id, 2);
    assert.match(lastText(r.msgs), /printed: kept-across-stop/);
    const again = await fx.sandboxes(s.id);
    assert.equal(again.length, 1);
    assert.equal(again[0].id, stopped.id, 'the same sandbox, started again');
  });

  test('a long command outlives the idle threshold without being stopped', async () => {
    const c = fx.client;
    const s = await newSession();
    const from = fx.log.length;
    await say(c, s.id, 'run: sleep 4; echo long-command-done');
    const r = await waitIdle(c, s.id, 1);
    assert.match(lastText(r.msgs), /printed: long-command-done/);
    const sb = (await fx.sandboxes(s.id))[0];
    assert.ok(!fx.log.slice(from).some((l) => l.msg === 'orchestrator.sandbox_stopped' && l.sandbox === sb.id),
      'not stopped while the command ran (idle thresholds are 1 s)');
  });

  test('a process the agent started keeps the sandbox running after the runner exits', async () => {
    const c = fx.client;
    const s = await newSession();
    // setsid: the job leaves the bash tool's process group, so it outlives
    // the runner (which kills its shell's group when it exits).
    await say(c, s.id, "run: setsid sh -c 'sleep 4; echo finished > /workspace/bg.txt' >/dev/null 2>&1 & echo started");
    await waitIdle(c, s.id, 1);
    // The runner exits after 1 s and the idle stop is 1 s: without the
    // process check the sandbox would be stopped (the job killed) before 4 s.
    const sb = await fx.waitSandbox(s.id, 'stopped', 30_000);
    const r = await fx.call('GET', `/v1/warren/sandboxes/${sb.id}/files/stat?path=${encodeURIComponent('/workspace/bg.txt')}`);
    assert.equal(r.status, 200, `the background job finished before the stop: ${r.text}`);
  });

  test('an archived session archives its sandbox', async () => {
    const c = fx.client;
    const s = await newSession();
    await say(c, s.id, 'run: echo x');
    await waitIdle(c, s.id, 1);
    await fx.waitSandbox(s.id, 'stopped');
    await c.beta.sessions.archive(s.id);
    await fx.waitSandbox(s.id, 'archived');
  });

  test('20 concurrent sessions: each in its own sandbox, none sees another\'s files', async () => {
    const c = fx.client;
    const sessions = await Promise.all(Array.from({ length: 20 }, () => newSession()));
    await Promise.all(sessions.map((s, i) => say(c, s.id, `run: echo ${i} > /workspace/mine-${i}.txt && ls /workspace | tr '\\n' ' '`)));
    const outs = await Promise.all(sessions.map((s) => waitIdle(c, s.id, 1, 180_000)));
    outs.forEach((o, i) => {
      const t = lastText(o.msgs);
      assert.match(t, new RegExp(`printed: mine-${i}\\.txt\\s*$`), `session ${i} sees only its file: ${t}`);
    });
    const ids = new Set();
    for (const s of sessions) {
      const l = await fx.sandboxes(s.id);
      assert.equal(l.length, 1);
      ids.add(l[0].id);
    }
    assert.equal(ids.size, 20);
  });
});

describe('built-in orchestrator: SIGKILL of the service mid-tool', { skip: skipReason(), timeout: 300_000 }, () => {
  const fx = new Fixture('kill');
  after(async () => { await fx.stopAndCheckLeaks(); });

  test('the session completes after a restart, the tool ran once, no second sandbox', async () => {
    await fx.start();
    const c = fx.client;
    const env = await c.beta.environments.create({ name: 'cloud', config: { type: 'cloud' } });
    const agent = await c.beta.agents.create({ name: 'k', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(c, s.id, 'run: echo ran >> /workspace/side.txt; sleep 3; wc -l < /workspace/side.txt');
    // Wait until the tool runs inside the sandbox, then kill the service.
    const end = Date.now() + 60_000;
    let sb;
    while (Date.now() < end) {
      const l = await fx.sandboxes(s.id);
      if (l.length === 1 && l[0].state === 'started') {
        // (may race the sandbox's start: not checked)
        const r = await fx.exec(l[0].id, 'cat /workspace/side.txt 2>/dev/null', { check: false });
        if (r.stdout.includes('ran')) { sb = l[0]; break; }
      }
      await sleep(50);
    }
    assert.ok(sb, 'the tool started');
    const dataDir = fx.srv.dataDir;
    await fx.srv.kill9();
    await fx.start(dataDir);
    const { evs, msgs } = await waitIdle(fx.client, s.id, 1, 120_000);
    assert.match(lastText(msgs), /printed: 1\s*$/, 'the command ran exactly once');
    assert.equal(evs.filter((e) => e.type === 'user.tool_result').length, 1, 'one result');
    const l = await fx.sandboxes(s.id);
    assert.equal(l.length, 1, 'no second sandbox');
    assert.equal(l[0].id, sb.id);
    assert.ok(fx.log.some((x) => x.msg === 'orchestrator.runner_adopted' || x.msg === 'orchestrator.runner_launched'));
  });
});
