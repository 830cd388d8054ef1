// The `warren` client commands (docs/CLI.md) against a real `warren serve`:
// agents, environments, sessions, `run` streaming a turn, approvals of gated
// tool calls through the CLI with warren-runner serving the tools, `watch`,
// `interrupt`, and errors in the service's envelope with exit code 1.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, runCli, missingBinaryReason, WARREN_BIN, REPO_ROOT } from './lib/server.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(here, '../golden/engine_e2e/sdk_session.json');
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('warren client commands', { skip: missingBinaryReason(), timeout: 120_000 }, () => {
  let srv;
  let org;
  let tmp;
  let env;

  // Runs `warren ARGS` against the server; resolves {code, stdout, stderr}.
  function cli(args, { timeoutMs = 30_000, apiKey } = {}) {
    return new Promise((resolve) => {
      execFile(WARREN_BIN, args, {
        timeout: timeoutMs,
        env: { ...process.env, WARREN_BASE_URL: srv.url, WARREN_API_KEY: apiKey ?? srv.apiKey },
      }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? -1) : 0, stdout, stderr }));
    });
  }

  async function events(sid) {
    const out = [];
    for await (const e of org.beta.sessions.events.list(sid)) out.push(e);
    return out;
  }

  before(async () => {
    srv = await startServer({ env: { WARREN_MODEL_SCRIPT: SCRIPT } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
    tmp = await mkdtemp(path.join(tmpdir(), 'warren-cli-'));
    env = { ...process.env, WARREN_BASE_URL: srv.url, WARREN_API_KEY: srv.apiKey };
  });

  after(async () => {
    if (srv) await srv.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('agent/env/session create and list print ids; --json prints the object', async () => {
    const a = await cli(['agent', 'create', '--name', 'cli-agent']);
    assert.equal(a.code, 0, a.stderr);
    const agentId = a.stdout.trim();
    assert.match(agentId, /^agent_/);
    assert.equal((await org.beta.agents.retrieve(agentId)).name, 'cli-agent');
    const j = await cli(['agent', 'create', '--name', 'cli-json', '--ask', '--json']);
    const obj = JSON.parse(j.stdout);
    assert.equal(obj.tools[0].default_config.permission_policy.type, 'always_ask');
    const list = await cli(['agent', 'list']);
    assert.match(list.stdout, new RegExp(`${agentId}\\s+cli-agent`));
    const e = await cli(['env', 'create', '--name', 'cli-env', '--self-hosted']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal((await org.beta.environments.retrieve(e.stdout.trim())).config.type, 'self_hosted');
    const s = await cli(['session', 'create', '--agent', agentId, '--env', e.stdout.trim(), '--title', 't1']);
    assert.equal(s.code, 0, s.stderr);
    const sid = s.stdout.trim();
    assert.match((await cli(['session', 'list'])).stdout, new RegExp(`${sid}\\s+idle\\s+t1`));
    assert.equal(JSON.parse((await cli(['session', 'get', sid])).stdout).id, sid);
    assert.equal((await cli(['session', 'archive', sid])).code, 0);
    assert.ok((await org.beta.sessions.retrieve(sid)).archived_at);
    assert.equal((await cli(['session', 'rm', sid])).code, 0);
    await assert.rejects(org.beta.sessions.retrieve(sid), (err) => err.status === 404);
  });

  test('run: a new session, one message, the turn streamed until end_turn (exit 0)', async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'runner'])).stdout.trim();
    const r = await cli(['run', '--agent', agentId, 'stream please']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^user: stream please$/m);
    assert.match(r.stdout, /^agent: This answer is streamed to you in several small pieces\.$/m);
    assert.match(r.stdout, /\[idle: end_turn\]/);
    assert.equal(r.stdout.match(/^user: /mg).length, 1, 'the processed echo is not printed twice');
    const sid = r.stderr.match(/session (sesn_\w+)/)[1];
    const evs = await events(sid);
    assert.equal(evs.filter((x) => x.type === 'agent.message').length, 1);
    // The default environment is made once and reused.
    const again = await cli(['run', '--agent', agentId, 'stream please']);
    assert.equal(again.code, 0);
    const envs = [];
    for await (const x of org.beta.environments.list()) if (x.name === 'warren-cli') envs.push(x);
    assert.equal(envs.length, 1);
  });

  test('a gated call: run exits 3 naming it; approve lets warren-runner run it; --deny reaches the model', {
    skip: existsSync(RUNNER) ? false : `no runner at ${RUNNER}`,
  }, async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'asker', '--ask'])).stdout.trim();
    const envId = (await cli(['env', 'create', '--name', 'gated', '--self-hosted'])).stdout.trim();
    const envKey = await runCli(['keys', 'create', 'environment', envId, '--data-dir', srv.dataDir]);
    const file = path.join(tmp, 'note.txt');
    writeFileSync(file, 'cli-approved-content\n');
    const runner = spawn(RUNNER, ['poll', '--environment-id', envId, '--environment-key', envKey,
      '--base-url', srv.url, '--workdir', tmp, '--max-idle', '60s'], { stdio: 'ignore' });
    try {
      const r = await cli(['run', '--agent', agentId, '--env', envId, `read: ${file}`]);
      assert.equal(r.code, 3, `exit 3 while waiting for an answer\n${r.stdout}\n${r.stderr}`);
      const useId = r.stdout.match(/\[(sevt_\w+)\]/)[1];
      assert.match(r.stdout, new RegExp(`needs approval: warren approve sesn_\\w+ ${useId}`));
      assert.match(r.stderr, /warren approve/);
      const sid = r.stderr.match(/session (sesn_\w+)/)[1];
      const ok = await cli(['approve', sid, useId]);
      assert.equal(ok.code, 0, ok.stderr);
      let evs;
      for (let i = 0; i < 200; i++) {
        evs = await events(sid);
        if (evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('cli-approved-content'))) break;
        await sleep(100);
      }
      assert.ok(evs.some((x) => x.type === 'user.tool_confirmation' && x.result === 'allow' && x.tool_use_id === useId));
      assert.ok(evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('The file says: cli-approved-content')),
        evs.map((x) => x.type).join(','));

      // Deny with a message: the model sees the refusal.
      const r2 = await cli(['send', sid, `read: ${file}`, '--wait']);
      assert.equal(r2.code, 3, r2.stderr);
      const use2 = [...r2.stdout.matchAll(/\[(sevt_\w+)\]/g)].at(-1)[1];
      const no = await cli(['approve', sid, use2, '--deny', '--message', 'not today']);
      assert.equal(no.code, 0, no.stderr);
      for (let i = 0; i < 200; i++) {
        evs = await events(sid);
        if (evs.filter((x) => x.type === 'agent.message').some((x) => JSON.stringify(x.content).includes('No read'))) break;
        await sleep(100);
      }
      assert.ok(evs.some((x) => x.type === 'user.tool_confirmation' && x.result === 'deny' && x.deny_message === 'not today'));
      assert.ok(evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('No read')));
    } finally {
      runner.kill('SIGTERM');
    }
  });

  test('watch --until-idle follows a turn started elsewhere; interrupt is accepted', async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'watched'])).stdout.trim();
    const envId = (await cli(['env', 'create', '--name', 'watched-env'])).stdout.trim();
    const sid = (await cli(['session', 'create', '--agent', agentId, '--env', envId])).stdout.trim();
    const child = spawn(WARREN_BIN, ['watch', sid, '--until-idle'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((res) => child.on('exit', (code) => res(code)));
    for (let i = 0; i < 100 && !err.includes('watching'); i++) await sleep(50);
    assert.match(err, /watching sesn_/);
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'stream please' }] }],
    });
    assert.equal(await exited, 0, err);
    assert.match(out, /agent: This answer is streamed/);
    assert.equal((await cli(['interrupt', sid])).code, 0);
    assert.ok((await events(sid)).some((x) => x.type === 'user.interrupt'));
  });

  test('errors: the service envelope on stderr, exit 1; usage errors exit non-zero', async () => {
    const nf = await cli(['session', 'get', 'sesn_doesnotexist']);
    assert.equal(nf.code, 1);
    assert.match(nf.stderr, /HTTP 404 not_found_error: .*\(request req_/);
    const auth = await cli(['agent', 'list'], { apiKey: 'wrn-api-not-a-key-at-all-000000' });
    assert.equal(auth.code, 1);
    assert.match(auth.stderr, /HTTP 401 authentication_error/);
    const bad = await cli(['agent', 'create', '--name', 'x', '--model', '']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid_request_error/);
    const usage = await cli(['approve', 'sesn_x']);
    assert.notEqual(usage.code, 0);
    const down = await new Promise((resolve) => execFile(WARREN_BIN, ['agent', 'list'], {
      env: { ...process.env, WARREN_BASE_URL: 'http://127.0.0.1:1', WARREN_API_KEY: 'k' },
    }, (e, so, se) => resolve({ code: e ? e.code : 0, stderr: se })));
    assert.equal(down.code, 1);
    assert.match(down.stderr, /Unavailable|connect/i);
  });
});
