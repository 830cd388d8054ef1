// Issue 4, must show: a Warren session served end to end through Warren's own
// work queue by (1) the official SDK's EnvironmentWorker (@anthropic-ai/sdk
// 1.10.0, Node 22) and (2) warren-runner `poll`. The model is scripted
// (tests/golden/engine_e2e/sdk_session.json): it asks for `bash`, then answers
// with the tool output, so the final agent.message proves the tool really ran.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
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

async function events(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid)) out.push(e);
  return out;
}

// Waits until the session's last agent.message contains `needle`.
async function waitForAnswer(client, sid, needle, timeoutMs = 60_000) {
  const t0 = Date.now();
  for (;;) {
    const evs = await events(client, sid);
    const msg = evs.filter((e) => e.type === 'agent.message').at(-1);
    if (msg && JSON.stringify(msg.content).includes(needle)) return evs;
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`no answer containing ${needle}; events: ${evs.map((e) => e.type).join(',')}`);
    await sleep(200);
  }
}

async function waitForWorkState(client, envId, states, timeoutMs = 30_000) {
  const t0 = Date.now();
  for (;;) {
    const page = await client.beta.environments.work.list(envId);
    if (page.data.length > 0 && page.data.every((w) => states.includes(w.state))) return page.data;
    if (Date.now() - t0 > timeoutMs)
      throw new Error(`work items not in ${states}: ${JSON.stringify(page.data.map((w) => w.state))}`);
    await sleep(200);
  }
}

const skip = missingBinaryReason();

describe('workers serve Warren sessions through Warren\'s work queue', { skip, timeout: 180_000 }, () => {
  let srv;
  let org;
  let agent;
  let workdir;

  before(async () => {
    srv = await startServer({ env: { WARREN_MODEL_SCRIPT: SCRIPT } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
    agent = await org.beta.agents.create({
      name: 'worker-e2e', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }],
    });
    workdir = await mkdtemp(path.join(tmpdir(), 'warren-worker-e2e-'));
  });

  after(async () => {
    if (srv) await srv.cleanup();
    if (workdir) await rm(workdir, { recursive: true, force: true });
  });

  test('the SDK EnvironmentWorker runs bash for the session; the turn ends with its output', async () => {
    const env = await org.beta.environments.create({ name: 'sdk-worker-env', config: { type: 'self_hosted' } });
    const envKey = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', srv.dataDir]);
    const session = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await org.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'run: echo sdk-worker-was-here' }] }],
    });
    const workerClient = new Anthropic({ apiKey: 'unused', baseURL: srv.url, maxRetries: 2 });
    const controller = new AbortController();
    const worker = workerClient.beta.environments.work.worker({
      environmentId: env.id, environmentKey: envKey, workdir, maxIdleMs: 1500,
    });
    const running = worker.run(controller.signal).catch((e) => e);
    try {
      const evs = await waitForAnswer(org, session.id, 'printed: sdk-worker-was-here');
      const use = evs.find((e) => e.type === 'agent.tool_use');
      const result = evs.find((e) => e.type === 'user.tool_result');
      assert.ok(use && result, 'a tool_use and its result');
      assert.equal(result.tool_use_id, use.id);
      assert.equal(result.is_error, false);
      assert.match(JSON.stringify(result.content), /sdk-worker-was-here/);
      assert.equal(evs.filter((e) => e.type === 'user.tool_result').length, 1, 'exactly one result');
      assert.equal(evs.at(-1).type, 'session.status_idle');
      assert.equal(evs.at(-1).stop_reason.type, 'end_turn');
      // After its idle window the worker stops the item (force), leaving none live.
      const items = await waitForWorkState(org, env.id, ['stopped']);
      assert.ok(items.every((w) => w.stopped_at));
    } finally {
      controller.abort();
      await running;
    }
  });

  test('warren-runner poll runs bash for the session; a later message is served by a fresh item', {
    skip: existsSync(RUNNER) ? false : `no runner at ${RUNNER}`,
  }, async () => {
    const env = await org.beta.environments.create({ name: 'runner-env', config: { type: 'self_hosted' } });
    const envKey = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', srv.dataDir]);
    const session = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await org.beta.sessions.events.send(session.id, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'run: echo runner-was-here' }] }],
    });
    const runner = spawn(RUNNER, ['poll', '--environment-id', env.id, '--environment-key', envKey,
      '--base-url', srv.url, '--workdir', workdir, '--max-idle', '1s'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    runner.stdout.on('data', (d) => { log += d; });
    runner.stderr.on('data', (d) => { log += d; });
    const exited = new Promise((res) => runner.on('exit', (code, signal) => res({ code, signal })));
    try {
      let evs = await waitForAnswer(org, session.id, 'printed: runner-was-here');
      const result = evs.find((e) => e.type === 'user.tool_result');
      assert.ok(result, 'the runner posted a result');
      assert.equal(result.is_error, false);
      assert.match(JSON.stringify(result.content), /runner-was-here/);
      await waitForWorkState(org, env.id, ['stopped']);
      // The dormant session gets a new item on the next message; the same
      // poller claims it and serves it.
      await org.beta.sessions.events.send(session.id, {
        events: [{ type: 'user.message', content: [{ type: 'text', text: 'run: echo second-item' }] }],
      });
      evs = await waitForAnswer(org, session.id, 'printed: second-item');
      assert.equal(evs.filter((e) => e.type === 'user.tool_result').length, 2);
      const items = await waitForWorkState(org, env.id, ['stopped']);
      assert.equal(items.length, 2, 'one item per dormant period');
    } catch (e) {
      throw new Error(`${e.message}\nrunner log:\n${log.slice(-3000)}`);
    } finally {
      runner.kill('SIGTERM');
      const ex = await exited;
      assert.equal(ex.code, 0, `runner exit ${JSON.stringify(ex)}\n${log.slice(-2000)}`);
    }
  });
});
