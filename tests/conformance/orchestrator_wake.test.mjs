// The built-in orchestrator's prepared sandboxes and webhook wake-up
// (docs/ORCHESTRATOR.md, "Preparation, packages and webhooks") against a
// real `warren serve`, real sandboxes and the real warren-runner, driven by
// the official SDK; deliveries are signed with the npm `standardwebhooks`
// package (the library Anthropic's SDK verifies with). Needs root; skips
// with the reason otherwise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync, mkdirSync, chmodSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, missingBinaryReason, makeDataDir, REPO_ROOT, WARREN_BIN } from './lib/server.mjs';
import { Fixture, orchestratorSkipReason, events, waitIdle, lastText, say, sleep, RUNNER } from './lib/orchestrator.mjs';

const require = createRequire(import.meta.url);
const { Webhook } = require('standardwebhooks');
const here = path.dirname(fileURLToPath(import.meta.url));

function skipReason() {
  const base = orchestratorSkipReason();
  if (base) return base;
  try { execFileSync('git', ['--version']); } catch { return 'git missing'; }
  return false;
}

describe('built-in orchestrator: a prepared sandbox bound by session metadata', { skip: skipReason(), timeout: 240_000 }, () => {
  const fx = new Fixture('prep');
  let repo;
  before(async () => {
    await fx.start();
    repo = mkdtempSync(path.join(tmpdir(), 'warren-prep-repo-'));
    const git = (...args) => execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@example.com', ...args], { cwd: repo });
    git('init', '-q', '-b', 'main');
    writeFileSync(path.join(repo, 'README.txt'), 'prepared-repo-content\n');
    git('add', 'README.txt');
    git('commit', '-q', '-m', 'first');
  });
  after(async () => {
    rmSync(repo, { recursive: true, force: true });
    await fx.stopAndCheckLeaks();
  });

  test("the agent's bash sees the cloned repository and the env credential", async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({ name: 'cloud-prep', config: { type: 'cloud' } });
    const agent = await c.beta.agents.create({ name: 'p', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const secret = `prep-${randomBytes(6).toString('hex')}`;
    // The CLI on the service's sandbox data dir, left stopped: the
    // orchestrator starts it (with the runner mounted) under its own runtime.
    const out = execFileSync(WARREN_BIN, ['sandbox', 'prepare', '--data-dir', fx.sbDir, '--environment', env.id,
      '--repo', repo, '--credential-env', 'PREP_TOKEN', '--label', 'team=blue', '--no-start', '--json'],
    { env: { ...process.env, PREP_TOKEN: secret, WARREN_SANDBOX_CGROUP_PREFIX: fx.prefix }, encoding: 'utf8' });
    const prepared = JSON.parse(out);
    const id = prepared.sandbox.id;
    assert.equal(prepared.sandbox.labels['warren.mode'], 'prepared');
    assert.ok(prepared.sandbox.labels['warren.credentials_expire_at'], 'expiry label set');
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id, metadata: { 'warren.sandbox_id': id } });
    await say(c, s.id, 'run: cat /workspace/README.txt; echo "token=$PREP_TOKEN"');
    const { msgs } = await waitIdle(c, s.id, 1, 120_000);
    const text = lastText(msgs);
    assert.match(text, /prepared-repo-content/);
    assert.match(text, new RegExp(`token=${secret}`));
    // The same sandbox, bound: session labels added, the others kept.
    const [sb] = await fx.sandboxes(s.id);
    assert.equal(sb.id, id);
    assert.equal(sb.labels['warren.mode'], 'session');
    assert.equal(sb.labels['warren.prepared'], 'true');
    assert.equal(sb.labels.team, 'blue');
    assert.equal(sb.labels['warren.credentials_expire_at'], prepared.sandbox.labels['warren.credentials_expire_at']);
    assert.ok(fx.log.some((l) => l.msg === 'orchestrator.sandbox_bound' && l.sandbox === id));
    // The credential is not in the sandbox's files (host-side only).
    const r = await fx.call('POST', `/v1/warren/sandboxes/${id}/exec`, { command: `grep -rl ${secret} /workspace /etc /run 2>/dev/null; echo done`, cwd: '/' });
    if (r.status === 200) assert.equal(r.json.stdout.trim(), 'done', 'the credential value is in no file');
  });
});

describe('built-in orchestrator: wake-up by webhook', { skip: skipReason(), timeout: 180_000 }, () => {
  const key = `whsec_${randomBytes(32).toString('base64')}`;
  // A fallback drain far longer than the test: a claim can only come from a
  // webhook (or the drain at start, before any work exists).
  const fx = new Fixture('hook', { config: { webhook_secret: key, fallback_drain_ms: 600_000 } });
  const wh = new Webhook(key);
  const hookPath = '/v1/warren/orchestrator/webhook';
  const deliver = (id, body, { when = new Date(), signer = wh, headers = {} } = {}) => {
    const payload = JSON.stringify(body);
    return fx.call('POST', hookPath, payload, {
      'webhook-id': id, 'webhook-timestamp': String(Math.floor(when.getTime() / 1000)),
      'webhook-signature': signer.sign(id, when, payload), ...headers,
    });
  };
  const runStarted = (sid) => ({ type: 'event', id: `event_${randomBytes(6).toString('hex')}`, created_at: new Date().toISOString(),
    data: { type: 'session.status_run_started', id: sid } });
  before(async () => { await fx.start(); });
  after(async () => {
    if (process.env.WARREN_TEST_DUMP) writeFileSync(process.env.WARREN_TEST_DUMP, fx.log.map((l) => JSON.stringify(l)).join('\n'));
    await fx.stopAndCheckLeaks();
  });

  test('bad signatures, stale timestamps, malformed headers and replays are refused', async () => {
    const body = runStarted('sesn_x');
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`);
    let r = await deliver('msg_bad1', body, { signer: other });
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json.type, 'error');
    r = await deliver('msg_stale', body, { when: new Date(Date.now() - 10 * 60_000) });
    assert.equal(r.status, 401, r.text);
    r = await deliver('msg_future', body, { when: new Date(Date.now() + 10 * 60_000) });
    assert.equal(r.status, 401, r.text);
    r = await fx.call('POST', hookPath, JSON.stringify(body), { 'webhook-id': 'msg_nohdr' });
    assert.equal(r.status, 400, r.text);
    // Tampered body: the signature covers the raw bytes.
    const payload = JSON.stringify(body);
    const now = new Date();
    r = await fx.call('POST', hookPath, payload.replace('sesn_x', 'sesn_y'), {
      'webhook-id': 'msg_tamper', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': wh.sign('msg_tamper', now, payload),
    });
    assert.equal(r.status, 401, r.text);
    r = await deliver('msg_ok1', body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.woke, true);
    r = await deliver('msg_ok1', body);
    assert.equal(r.status, 409, `a replay is refused: ${r.text}`);
    r = await deliver('msg_other_type', { type: 'event', id: 'event_1', data: { type: 'session.status_idled', id: 'sesn_x' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.woke, false);
    // Webhook deliveries need no API key: the signature is the credential.
    const res = await fetch(fx.srv.url + hookPath, { method: 'POST', body: '{}' });
    assert.equal(res.status, 400);
  });

  test('a signed session.status_run_started delivery wakes the orchestrator', async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({ name: 'cloud-hook', config: { type: 'cloud' } });
    const agent = await c.beta.agents.create({ name: 'h', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const drainsBefore = fx.log.filter((l) => l.msg === 'orchestrator.drain' && l.reason === 'webhook').length;
    await say(c, s.id, 'run: echo woken-by-webhook');
    // Work is queued but nobody polls it: no sandbox, no runner.
    await sleep(1500);
    assert.equal((await fx.sandboxes(s.id)).length, 0, 'nothing claimed without a wake-up');
    assert.ok(!fx.log.some((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id));
    const r = await deliver(`msg_${randomBytes(6).toString('hex')}`, runStarted(s.id));
    assert.equal(r.status, 200, r.text);
    const { msgs } = await waitIdle(c, s.id, 1, 60_000);
    assert.match(lastText(msgs), /printed: woken-by-webhook/);
    assert.ok(fx.log.filter((l) => l.msg === 'orchestrator.drain' && l.reason === 'webhook').length > drainsBefore);
    assert.ok(fx.log.some((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id));
  });
});
