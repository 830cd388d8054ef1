// The standalone orchestrator's webhook receiver (`warren orchestrator
// --webhook-listen`, docs/ORCHESTRATOR.md "Wake-up by webhook in the loop"):
// a `warren serve --no-orchestrator` (data dir A, a self_hosted environment)
// and a separate `warren orchestrator` (data dir B) that does not poll: it
// drains the queue at start, on a signed `session.status_run_started`
// delivery and on a fallback far longer than the test. Deliveries are signed
// with the npm `standardwebhooks` package (the library Anthropic's SDK
// verifies with); the key reaches the orchestrator through
// ANTHROPIC_WEBHOOK_SIGNING_KEY (kept out of `ps`). Checked: refusals (bad
// signature, tampered body, stale and future timestamps, missing headers,
// replayed id) answer in the spec's error envelope and never wake it; a
// signed delivery wakes it and the session's turn runs in its sandbox.
// Needs root.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { startServer } from './lib/server.mjs';
import { orchestratorSkipReason as skipReason, SCRIPT, events, waitIdle, lastText, say, sleep } from './lib/orchestrator.mjs';
import { Standalone, StandaloneHost } from './lib/standalone.mjs';

const require = createRequire(import.meta.url);
const { Webhook } = require('standardwebhooks');

describe('standalone orchestrator: wake-up by webhook', { skip: skipReason(), timeout: 180_000 }, () => {
  const key = `whsec_${randomBytes(32).toString('base64')}`;
  const wh = new Webhook(key);
  let srv; let client; let env; let envKey; let host; let orch; let hookUrl;
  const drains = (reason) => orch.log.filter((l) => l.msg === 'orchestrator.drain' && l.reason === reason).length;
  const post = async (url, payload, headers = {}, method = 'POST') => {
    const res = await fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, body: method === 'GET' ? undefined : payload });
    const text = await res.text();
    let json; try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, json, text };
  };
  const deliver = (id, body, { when = new Date(), signer = wh, url = hookUrl } = {}) => {
    const payload = JSON.stringify(body);
    return post(url, payload, {
      'webhook-id': id, 'webhook-timestamp': String(Math.floor(when.getTime() / 1000)),
      'webhook-signature': signer.sign(id, when, payload),
    });
  };
  const runStarted = (sid) => ({ type: 'event', id: `event_${randomBytes(6).toString('hex')}`, created_at: new Date().toISOString(),
    data: { type: 'session.status_run_started', id: sid } });

  before(async () => {
    srv = await startServer({ env: { WARREN_LOG_FORMAT: 'json', WARREN_MODEL_SCRIPT: SCRIPT } });
    client = srv.client({ maxRetries: 2 });
    env = await client.beta.environments.create({ name: 'standalone-hook', config: { type: 'self_hosted' } });
    envKey = (await srv.createEnvKey(env.id)).trim();
    host = new StandaloneHost('orchsahook');
    orch = new Standalone(host.args({
      baseUrl: srv.url, environmentId: env.id, key: envKey,
      extra: ['--webhook-listen', '127.0.0.1:0', '--fallback-drain-ms', '600000', '--runner-idle-ms', '1000',
        '--sandbox-idle-stop-ms', '1000', '--janitor-interval-ms', '200', '--session-check-interval-ms', '300'],
    }), { env: { ANTHROPIC_WEBHOOK_SIGNING_KEY: key } });
    await orch.start();
    const m = orch.stdout.match(/Webhook receiver on (\S+)/);
    assert.ok(m, `the receiver's address is printed: ${orch.stdout}`);
    hookUrl = m[1];
    assert.match(hookUrl, /^http:\/\/127\.0\.0\.1:\d+\/v1\/warren\/orchestrator\/webhook$/);
    assert.ok(!orch.args.some((a) => a.includes(key)), 'the key is not on the command line');
    assert.equal(drains('start'), 1, 'one drain at start');
  });

  after(async () => {
    if (host) await host.removeAll();
    const orchAlive = orch?.alive;
    const tail = orch?.stderr.slice(-4000);
    if (orch) await orch.kill('SIGTERM');
    const srvAlive = srv?.alive;
    if (srv) { await srv.stop(10_000); await srv.cleanup(); }
    if (host) await host.checkLeaks();
    assert.ok(srvAlive !== false, 'warren serve died');
    assert.ok(orchAlive !== false, `the orchestrator died:\n${tail}`);
  });

  test('bad signatures, tampered bodies, stale or future timestamps and replays are refused and wake nothing', async () => {
    const body = runStarted('sesn_x');
    const other = new Webhook(`whsec_${randomBytes(32).toString('base64')}`);
    const refused = [];
    let r = await deliver('msg_bad_key', body, { signer: other });
    refused.push(['wrong key', r, 401]);
    r = await deliver('msg_stale', body, { when: new Date(Date.now() - 10 * 60_000) });
    refused.push(['stale timestamp', r, 401]);
    r = await deliver('msg_future', body, { when: new Date(Date.now() + 10 * 60_000) });
    refused.push(['future timestamp', r, 401]);
    r = await post(hookUrl, JSON.stringify(body), { 'webhook-id': 'msg_no_headers' });
    refused.push(['missing headers', r, 400]);
    // The signature covers the raw bytes: one changed byte is refused.
    const payload = JSON.stringify(body);
    const now = new Date();
    r = await post(hookUrl, payload.replace('sesn_x', 'sesn_y'), {
      'webhook-id': 'msg_tampered', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': wh.sign('msg_tampered', now, payload),
    });
    refused.push(['tampered body', r, 401]);
    // A signature with a v1a scheme only (not the symmetric v1): refused.
    const v1 = wh.sign('msg_scheme', now, payload);
    r = await post(hookUrl, payload, {
      'webhook-id': 'msg_scheme', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': v1.replace(/^v1,/, 'v1a,'),
    });
    refused.push(['v1a scheme only', r, 401]);
    for (const [what, res, status] of refused) {
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.equal(res.json?.type, 'error', `${what}: the spec's error envelope`);
      assert.equal(typeof res.json?.error?.message, 'string', what);
    }
    assert.equal(drains('webhook'), 0, 'no refused delivery woke the orchestrator');
    assert.ok(orch.log.filter((l) => l.msg === 'orchestrator.webhook_refused').length >= refused.length);

    // Authentic: accepted once; the replay of its id is refused (409).
    r = await deliver('msg_once', body);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json, { type: 'webhook_received', woke: true });
    for (let i = 0; i < 50 && drains('webhook') < 1; i++) await sleep(20);
    assert.equal(drains('webhook'), 1, 'the authentic delivery drained the queue');
    r = await deliver('msg_once', body);
    assert.equal(r.status, 409, `a replay is refused: ${r.text}`);
    assert.equal(r.json?.type, 'error');
    // Another authentic event type is acknowledged without a drain.
    r = await deliver('msg_idled', { type: 'event', id: 'event_1', data: { type: 'session.status_idled', id: 'sesn_x' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.woke, false);
    // Both paths are served; other paths and methods are not.
    r = await deliver('msg_root', body, { url: hookUrl.replace(/\/v1\/warren\/orchestrator\/webhook$/, '/') });
    assert.equal(r.status, 200, r.text);
    r = await post(hookUrl.replace(/webhook$/, 'other'), '{}', {});
    assert.equal(r.status, 404, r.text);
    r = await post(hookUrl, '', {}, 'GET');
    assert.equal(r.status, 400, r.text);
    await sleep(300);
    assert.equal(drains('webhook'), 2, 'only the two authentic run_started deliveries drained');
  });

  test('a signed session.status_run_started delivery wakes it and the turn runs in its sandbox', async () => {
    const agent = await client.beta.agents.create({ name: 'h', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(client, s.id, 'run: echo woken-by-webhook');
    // Work is queued but nobody polls: no sandbox, no runner, the calls wait.
    await sleep(1500);
    assert.equal((await host.list()).filter((b) => b.labels?.['warren.session_id'] === s.id).length, 0, 'nothing claimed without a wake-up');
    assert.ok(!orch.log.some((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id));
    assert.ok(!(await events(client, s.id)).some((e) => e.type === 'user.tool_result'), 'the tool call waits for a worker');
    const before = drains('webhook');
    const r = await deliver(`msg_${randomBytes(6).toString('hex')}`, runStarted(s.id));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.woke, true);
    const { msgs } = await waitIdle(client, s.id, 1, 60_000);
    assert.match(lastText(msgs), /printed: woken-by-webhook/);
    assert.ok(drains('webhook') > before);
    assert.ok(orch.log.some((l) => l.msg === 'orchestrator.runner_launched' && l.session_id === s.id));
    const sbs = (await host.list()).filter((b) => b.labels?.['warren.session_id'] === s.id);
    assert.equal(sbs.length, 1, 'the turn ran in the orchestrator\'s own sandbox (data dir B)');
  });
});
