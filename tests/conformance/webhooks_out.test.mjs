// Outgoing webhooks (issue 12 part 4) against a real `warren serve`:
//  - a receiver using the npm `standardwebhooks` package (what the Anthropic
//    SDK uses) verifies every delivery;
//  - session.status_run_started is sent on every transition to running;
//  - a receiver that is down for a while gets every delivery once it is back,
//    each webhook-id accepted exactly once, including across a SIGKILL of
//    the service while deliveries were pending;
//  - the delivery log (/v1/warren/webhooks/deliveries) lists them.
// Config: webhooks.endpoints with a whsec_ key; short backoff
// (initial 100 ms, max 400 ms) and a 50 ms poll so the test is quick.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFile, rm } from 'node:fs/promises';
import { Webhook } from 'standardwebhooks';
import { missingBinaryReason, startServer, makeDataDir } from './lib/server.mjs';
import { settle, waitFor } from './lib/util.mjs';

const skip = missingBinaryReason();
const SECRET = 'whsec_' + randomBytes(32).toString('base64');

/** A Standard Webhooks receiver that can go down and come back on its port. */
class Receiver {
  constructor() {
    this.wh = new Webhook(SECRET);
    this.accepted = new Map();  // webhook-id -> {count, body}
    this.failures = [];
    this.server = null;
    this.port = 0;
  }
  handler(req, res) {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const raw = Buffer.concat(chunks).toString('utf8');
      try {
        const body = this.wh.verify(raw, req.headers);  // throws on a bad signature or timestamp
        const id = req.headers['webhook-id'];
        assert.equal(body.id, id, 'the envelope id is the webhook-id');
        const seen = this.accepted.get(id);
        this.accepted.set(id, { count: (seen?.count || 0) + 1, body });
        res.writeHead(204).end();
      } catch (e) {
        this.failures.push(`${e.message}: ${JSON.stringify(req.headers)} ${raw}`);
        res.writeHead(400).end();
      }
    });
  }
  up() {
    return new Promise((resolve, reject) => {
      this.server = http.createServer((q, r) => this.handler(q, r));
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.port = this.server.address().port;
        resolve();
      });
    });
  }
  down() {
    return new Promise((resolve) => {
      this.server.closeAllConnections?.();
      this.server.close(() => resolve());
    });
  }
  ofType(type) {
    return [...this.accepted.values()].filter((v) => v.body.data.type === type).map((v) => v.body);
  }
}

describe('outgoing webhooks', { skip }, () => {
  let srv, receiver, dataDir, cfgPath;

  let apiKey = null;
  async function start() {
    srv = await startServer({ dataDir, extraArgs: ['--config', cfgPath],
      env: { WARREN_MODEL_PROVIDER: 'scripted' } });
    // A restart on the same data dir prints no new key: keep the first one.
    if (srv.apiKey) apiKey = srv.apiKey;
    else srv.apiKey = apiKey;
    return srv.client();
  }
  async function deliveries(query = '') {
    const out = [];
    let page = null;
    for (;;) {
      const q = new URLSearchParams(query);
      q.set('limit', '100');
      if (page) q.set('page', page);
      const r = await fetch(`${srv.url}/v1/warren/webhooks/deliveries?${q}`, { headers: { 'x-api-key': srv.apiKey } });
      assert.equal(r.status, 200, await r.clone().text());
      const j = await r.json();
      out.push(...j.data);
      if (!j.next_page) return out;
      page = j.next_page;
    }
  }
  async function runSession(client, env, agent, text) {
    const s = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await client.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
    await settle(client, s.id);
    return s.id;
  }

  before(async () => {
    receiver = new Receiver();
    await receiver.up();
    dataDir = await makeDataDir('webhooks-out');
    cfgPath = path.join(dataDir, '..', `${path.basename(dataDir)}.json`);
    await writeFile(cfgPath, JSON.stringify({
      webhooks: {
        endpoints: [{ name: 'receiver', url: `http://127.0.0.1:${receiver.port}/hooks`, secret: SECRET }],
        initial_backoff_ms: 100, max_backoff_ms: 400, poll_interval_ms: 50, max_attempts: 1000, concurrency: 2, timeout_ms: 2000,
      },
    }));
  });

  after(async () => {
    await receiver?.down().catch(() => {});
    if (srv) await srv.cleanup();
    await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    await rm(cfgPath, { force: true }).catch(() => {});
  });

  test('every delivery verifies with standardwebhooks; run_started on each transition to running', async () => {
    const client = await start();
    const agent = await client.beta.agents.create({ name: 'hooked', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'hooks-env', config: { type: 'cloud' } });
    const sid = await runSession(client, env, agent, 'hello');
    await client.beta.sessions.events.send(sid, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'again' }] }] });
    await settle(client, sid);
    await waitFor(() => receiver.ofType('session.status_run_started').filter((b) => b.data.id === sid).length === 2 &&
      receiver.ofType('session.status_idled').filter((b) => b.data.id === sid).length === 2 &&
      receiver.ofType('session.created').some((b) => b.data.id === sid),
    { timeoutMs: 15000, what: `deliveries for ${sid}: ${JSON.stringify([...receiver.accepted.values()].map((v) => v.body.data.type))}` });
    assert.deepEqual(receiver.failures, []);
    const run = receiver.ofType('session.status_run_started')[0];
    assert.equal(run.type, 'event');
    assert.match(run.id, /^event_/);
    assert.ok(run.created_at);
    assert.deepEqual(Object.keys(run.data).sort(), ['id', 'organization_id', 'type', 'workspace_id']);
    const log = await deliveries(`endpoint=receiver&webhook_id=${run.id}`);
    assert.equal(log.length, 1);
    assert.equal(log[0].state, 'delivered');
    assert.equal(log[0].event_type, 'session.status_run_started');
    assert.equal(log[0].session_id, run.data.id);
    const one = await fetch(`${srv.url}/v1/warren/webhooks/deliveries/${log[0].id}`, { headers: { 'x-api-key': srv.apiKey } });
    assert.equal(one.status, 200);
    assert.equal((await one.json()).webhook_id, run.id);
    const eps = await (await fetch(`${srv.url}/v1/warren/webhooks/endpoints`, { headers: { 'x-api-key': srv.apiKey } })).json();
    assert.equal(eps.data[0].name, 'receiver');
    assert.ok(!JSON.stringify(eps).includes(SECRET.slice(6)), 'the endpoint list never shows the secret');
  });

  test('a receiver down for a while gets every delivery once, across a SIGKILL of the service', async () => {
    let client = srv.client();
    const agent = await client.beta.agents.create({ name: 'hooked2', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'hooks-env-2', config: { type: 'cloud' } });
    await receiver.down();
    const sids = [];
    for (let i = 0; i < 3; i++) sids.push(await runSession(client, env, agent, `message ${i}`));
    // Deliveries were attempted and failed while the receiver was down.
    await waitFor(async () => {
      const pending = await deliveries('state=pending');
      return pending.length >= 9 && pending.every((d) => d.attempts >= 1);
    }, { timeoutMs: 15000, intervalMs: 100, what: 'failed attempts while the receiver is down' });
    const pendingBefore = await deliveries('state=pending');
    const expected = new Set(pendingBefore.map((d) => d.webhook_id));
    for (const sid of sids) {
      for (const type of ['session.created', 'session.status_run_started', 'session.status_idled'])
        assert.ok(pendingBefore.some((d) => d.session_id === sid && d.event_type === type), `${type} of ${sid} is pending`);
    }
    await srv.kill9();
    const acceptedBefore = receiver.accepted.size;
    await receiver.up();  // same port
    client = await start();  // same data dir and config
    await waitFor(() => [...expected].every((id) => receiver.accepted.has(id)), {
      timeoutMs: 20000, intervalMs: 50,
      what: `all ${expected.size} pending deliveries after the restart (have ${receiver.accepted.size - acceptedBefore})`,
    });
    await waitFor(async () => (await deliveries('state=pending')).length === 0, { timeoutMs: 10000, what: 'no pending rows' });
    assert.deepEqual(receiver.failures, []);
    for (const id of expected) assert.equal(receiver.accepted.get(id).count, 1, `${id} accepted exactly once`);
    const all = await deliveries();
    for (const d of all) {
      assert.equal(d.state, 'delivered', JSON.stringify(d));
      assert.equal(receiver.accepted.get(d.webhook_id)?.count, 1, `${d.webhook_id} (${d.event_type}) accepted exactly once`);
    }
    const retried = all.filter((d) => expected.has(d.webhook_id));
    assert.ok(retried.every((d) => d.attempts >= 2), 'each was retried with the same webhook-id');
  });
});
