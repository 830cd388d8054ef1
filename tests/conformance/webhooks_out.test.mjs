// Outgoing webhooks (issue 12 part 4) against a real `warren serve`:
//  - a receiver using the npm `standardwebhooks` package (what the Anthropic
//    SDK uses) verifies every delivery;
//  - session.status_run_started is sent on every transition to running;
//  - a receiver that is down for a while gets every delivery once it is back,
//    each webhook-id accepted exactly once, including across a SIGKILL of
//    the service while deliveries were pending;
//  - the delivery log (/v1/warren/webhooks/deliveries) lists them;
//  - agent, environment, vault, credential (incl. refresh_failed) and
//    session.archived events are delivered and verify;
//  - an endpoint that fails 20 attempts in a row is disabled (state in
//    GET /v1/warren/webhooks/endpoints, kept across a SIGKILL), its
//    deliveries held, and POST .../enable sends them, each once.
// Config: webhooks.endpoints with a whsec_ key; short backoff
// (initial 100 ms, max 400 ms). The default fallback poll (5 s) is kept in
// the second suite: deliveries arrive sooner because commits wake the
// dispatcher.
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
      env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_LOG_LEVEL: 'debug' } });
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
        // The down-for-a-while test below fails far more than 20 attempts in
        // a row; auto-disable has its own suite.
        disable_after_failures: 0,
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
    { timeoutMs: 60_000, what: `deliveries for ${sid}: ${JSON.stringify([...receiver.accepted.values()].map((v) => v.body.data.type))}` });
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
    // Nor does any log line (debug level: every line the server writes).
    assert.ok(srv.stdout.length + srv.stderr.length > 0);
    assert.ok(!(srv.stdout + srv.stderr).includes(SECRET.slice(6)), 'the signing key is in the log');
  });

  test('agent, environment, vault, credential and session.archived events verify with standardwebhooks', async () => {
    const client = srv.client();
    const agent = await client.beta.agents.create({ name: 'objects', model: 'claude-sonnet-4-6' });
    await client.beta.agents.update(agent.id, { version: agent.version, description: 'v2' });
    await client.beta.agents.archive(agent.id);
    const env = await client.beta.environments.create({ name: 'objects-env', config: { type: 'cloud' } });
    await client.beta.environments.update(env.id, { description: 'changed' });
    const env2 = await client.beta.environments.create({ name: 'objects-env-2', config: { type: 'cloud' } });
    await client.beta.environments.archive(env2.id);
    await client.beta.environments.delete(env2.id);
    const vault = await client.beta.vaults.create({ display_name: 'objects vault' });
    const cred = await client.beta.vaults.credentials.create(vault.id, {
      auth: { type: 'static_bearer', token: 'tok-objects', mcp_server_url: 'https://mcp.example.invalid/' },
    });
    await client.beta.vaults.credentials.archive(cred.id, { vault_id: vault.id });
    await client.beta.vaults.credentials.delete(cred.id, { vault_id: vault.id });
    // An OAuth refresh that fails (its token endpoint refuses connections):
    // vault_credential.refresh_failed, a delivery like the others.
    const oauth = await client.beta.vaults.credentials.create(vault.id, {
      auth: {
        type: 'mcp_oauth', access_token: 'at-objects', mcp_server_url: 'http://127.0.0.1:1/mcp', expires_at: '2099-01-01T00:00:00Z',
        refresh: { client_id: 'c', refresh_token: 'rt-objects', token_endpoint: 'http://127.0.0.1:1/token',
          token_endpoint_auth: { type: 'none' } },
      },
    });
    const val = await client.beta.vaults.credentials.mcpOAuthValidate(oauth.id, { vault_id: vault.id });
    assert.notEqual(val.refresh?.status, 'succeeded', JSON.stringify(val));
    await client.beta.vaults.archive(vault.id);
    const vault2 = await client.beta.vaults.create({ display_name: 'objects vault 2' });
    // Deleting a vault deletes its credentials, live or archived: each gets
    // its vault_credential.deleted (docs/WEBHOOKS.md).
    const live2 = await client.beta.vaults.credentials.create(vault2.id, {
      auth: { type: 'static_bearer', token: 'tok-live2', mcp_server_url: 'https://mcp2.example.invalid/' },
    });
    const gone2 = await client.beta.vaults.credentials.create(vault2.id, {
      auth: { type: 'static_bearer', token: 'tok-gone2', mcp_server_url: 'https://mcp3.example.invalid/' },
    });
    await client.beta.vaults.credentials.archive(gone2.id, { vault_id: vault2.id });
    await client.beta.vaults.delete(vault2.id);
    const s = await client.beta.sessions.create({ agent: (await client.beta.agents.create({ name: 'for-archive', model: 'm' })).id,
      environment_id: env.id });
    await client.beta.sessions.archive(s.id);

    const want = [
      ['agent.created', agent.id], ['agent.updated', agent.id], ['agent.archived', agent.id],
      ['environment.created', env.id], ['environment.updated', env.id], ['environment.created', env2.id],
      ['environment.archived', env2.id], ['environment.deleted', env2.id],
      ['vault.created', vault.id], ['vault_credential.created', cred.id], ['vault_credential.archived', cred.id],
      ['vault_credential.deleted', cred.id], ['vault_credential.created', oauth.id],
      ['vault_credential.refresh_failed', oauth.id], ['vault_credential.archived', oauth.id],
      ['vault.archived', vault.id], ['vault.created', vault2.id], ['vault_credential.deleted', live2.id],
      ['vault_credential.deleted', gone2.id], ['vault.deleted', vault2.id],
      ['session.created', s.id], ['session.archived', s.id],
    ];
    const has = ([type, id]) => receiver.ofType(type).some((b) => b.data.id === id);
    await waitFor(() => want.every(has), {
      timeoutMs: 60_000, what: `object events; missing ${JSON.stringify(want.filter((w) => !has(w)))}`,
    });
    assert.deepEqual(receiver.failures, []);
    for (const [type, id] of want) {
      const got = receiver.ofType(type).filter((b) => b.data.id === id);
      const keys = type.startsWith('vault_credential.')
        ? ['id', 'organization_id', 'type', 'vault_id', 'workspace_id'] : ['id', 'organization_id', 'type', 'workspace_id'];
      for (const b of got) {
        assert.deepEqual(Object.keys(b.data).sort(), keys, `${type}: ${JSON.stringify(b)}`);
        assert.match(b.id, /^event_/);
        assert.ok(b.created_at, `${type} has created_at`);
        if (type.startsWith('vault_credential.'))
          assert.equal(b.data.vault_id, [live2.id, gone2.id].includes(id) ? vault2.id : vault.id);
      }
    }
    // One agent.updated per new version; none for the archive (same version).
    assert.equal(receiver.ofType('agent.updated').filter((b) => b.data.id === agent.id).length, 1);
    // The delivery log names the object.
    const log = await deliveries(`webhook_id=${receiver.ofType('agent.archived').find((b) => b.data.id === agent.id).id}`);
    assert.equal(log.length, 1);
    assert.equal(log[0].object_id, agent.id);
    assert.equal(log[0].session_id, null);
    // The secrets never appear in any body.
    for (const v of receiver.accepted.values()) {
      const raw = JSON.stringify(v.body);
      for (const sec of ['tok-objects', 'at-objects', 'rt-objects']) assert.ok(!raw.includes(sec));
    }
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
    }, { timeoutMs: 60_000, intervalMs: 100, what: 'failed attempts while the receiver is down' });
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
      timeoutMs: 60_000, intervalMs: 50,
      what: `all ${expected.size} pending deliveries after the restart (have ${receiver.accepted.size - acceptedBefore})`,
    });
    await waitFor(async () => (await deliveries('state=pending')).length === 0, { timeoutMs: 60_000, what: 'no pending rows' });
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

// A SIGKILL while a delivery is in flight: the receiver got the request but
// the service died before it could record the answer. At least once (spec
// 3.8): after the restart the same delivery comes again with the same
// webhook-id and body (re-signed), so a receiver that dedupes by id applies
// it once.
describe('outgoing webhooks: a SIGKILL during a delivery', { skip }, () => {
  let srv, receiver, dataDir, cfgPath, apiKey = null;
  let holding = true;
  const held = [];  // { id, body, res } of requests not answered

  async function start() {
    srv = await startServer({ dataDir, extraArgs: ['--config', cfgPath], env: { WARREN_MODEL_PROVIDER: 'scripted' } });
    if (srv.apiKey) apiKey = srv.apiKey;
    else srv.apiKey = apiKey;
    return srv.client();
  }

  before(async () => {
    receiver = new Receiver();
    const verify = receiver.handler.bind(receiver);
    receiver.handler = (req, res) => {
      if (!holding) return verify(req, res);
      const chunks = [];
      req.on('data', (c) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        receiver.wh.verify(raw, req.headers);  // a valid delivery, held unanswered
        held.push({ id: req.headers['webhook-id'], raw, sig: req.headers['webhook-signature'], res });
      });
    };
    await receiver.up();
    dataDir = await makeDataDir('webhooks-kill-inflight');
    cfgPath = path.join(dataDir, '..', `${path.basename(dataDir)}.json`);
    await writeFile(cfgPath, JSON.stringify({
      webhooks: {
        endpoints: [{ name: 'r', url: `http://127.0.0.1:${receiver.port}/hooks`, secret: SECRET, event_types: ['agent.created'] }],
        initial_backoff_ms: 100, max_backoff_ms: 400, max_attempts: 1000, concurrency: 2, timeout_ms: 2000,
      },
    }));
  });

  after(async () => {
    for (const h of held) h.res.destroy();
    await receiver?.down().catch(() => {});
    if (srv) await srv.cleanup();
    await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    await rm(cfgPath, { force: true }).catch(() => {});
  });

  test('the delivery in flight comes again after the restart with the same webhook-id and body', async () => {
    let client = await start();
    const agent = await client.beta.agents.create({ name: 'in-flight', model: 'm' });
    await waitFor(() => held.some((h) => JSON.parse(h.raw).data.id === agent.id),
      { timeoutMs: 60_000, what: 'the agent.created delivery to reach the receiver' });
    const first = held.find((h) => JSON.parse(h.raw).data.id === agent.id);
    await srv.kill9();
    holding = false;
    for (const h of held.splice(0)) h.res.destroy();
    client = await start();
    await waitFor(() => receiver.accepted.has(first.id),
      { timeoutMs: 60_000, what: `the same webhook-id ${first.id} delivered after the restart` });
    assert.deepEqual(receiver.failures, []);
    const again = receiver.accepted.get(first.id);
    assert.equal(again.count, 1);
    assert.equal(JSON.stringify(again.body), JSON.stringify(JSON.parse(first.raw)), 'the same body');
    const r = await fetch(`${srv.url}/v1/warren/webhooks/deliveries?webhook_id=${first.id}`, { headers: { 'x-api-key': srv.apiKey } });
    const log = (await r.json()).data;
    assert.equal(log.length, 1, 'one delivery row, not a new one');
    assert.equal(log[0].state, 'delivered');
    // Nothing else was made of it: one agent.created for the agent.
    assert.equal(receiver.ofType('agent.created').filter((b) => b.data.id === agent.id).length, 1);
  });
});

describe('outgoing webhooks: endpoint auto-disable', { skip }, () => {
  let srv, receiver, dataDir, cfgPath, apiKey = null;
  let failing = true;
  let requests = 0;

  async function start() {
    srv = await startServer({ dataDir, extraArgs: ['--config', cfgPath], env: { WARREN_MODEL_PROVIDER: 'scripted' } });
    if (srv.apiKey) apiKey = srv.apiKey;
    else srv.apiKey = apiKey;
    return srv.client();
  }
  async function get(p) {
    const r = await fetch(`${srv.url}${p}`, { headers: { 'x-api-key': srv.apiKey } });
    assert.equal(r.status, 200, await r.clone().text());
    return r.json();
  }
  async function endpoint() {
    return (await get('/v1/warren/webhooks/endpoints')).data.find((e) => e.name === 'flaky');
  }
  async function pending() {
    return (await get('/v1/warren/webhooks/deliveries?state=pending&limit=100')).data;
  }

  before(async () => {
    receiver = new Receiver();
    // Answers 500 (after verifying) while `failing`.
    const verify = receiver.handler.bind(receiver);
    receiver.handler = (req, res) => {
      requests++;
      if (!failing) return verify(req, res);
      req.resume();
      req.on('end', () => res.writeHead(500).end());
    };
    await receiver.up();
    dataDir = await makeDataDir('webhooks-disable');
    cfgPath = path.join(dataDir, '..', `${path.basename(dataDir)}.json`);
    // disable_after_failures is left at its default (20); poll_interval_ms too.
    await writeFile(cfgPath, JSON.stringify({
      webhooks: {
        endpoints: [{ name: 'flaky', url: `http://127.0.0.1:${receiver.port}/hooks`, secret: SECRET }],
        initial_backoff_ms: 20, max_backoff_ms: 40, max_attempts: 1000, concurrency: 2, timeout_ms: 2000,
      },
    }));
  });

  after(async () => {
    await receiver?.down().catch(() => {});
    if (srv) await srv.cleanup();
    await rm(dataDir, { recursive: true, force: true }).catch(() => {});
    await rm(cfgPath, { force: true }).catch(() => {});
  });

  test('20 failures in a row disable the endpoint; its deliveries are held across a restart and sent after enable', async () => {
    let client = await start();
    const ep0 = await endpoint();
    assert.deepEqual([ep0.disabled, ep0.consecutive_failures, ep0.disabled_at], [false, 0, null]);
    const agents = [];
    for (let i = 0; i < 4; i++) agents.push((await client.beta.agents.create({ name: `flaky-${i}`, model: 'm' })).id);
    const ep = await waitFor(async () => { const e = await endpoint(); return e.disabled ? e : null; },
      { timeoutMs: 60_000, intervalMs: 50, what: 'the endpoint to be disabled' });
    assert.ok(ep.consecutive_failures >= 20, JSON.stringify(ep));
    assert.ok(!Number.isNaN(Date.parse(ep.disabled_at)), JSON.stringify(ep));
    // Every row is held: pending (none failed), with no next attempt.
    await waitFor(async () => {
      const p = await pending();
      return p.length === 4 && p.every((d) => d.next_attempt_at === null);
    }, { timeoutMs: 60_000, what: 'the 4 rows held' });
    assert.equal((await get('/v1/warren/webhooks/deliveries?state=failed')).data.length, 0);
    // New deliveries while disabled are written and held, never sent.
    const sentBefore = requests;
    for (let i = 4; i < 6; i++) agents.push((await client.beta.agents.create({ name: `flaky-${i}`, model: 'm' })).id);
    await waitFor(async () => {
      const p = await pending();
      return p.length === 6 && p.every((d) => d.next_attempt_at === null);
    }, { timeoutMs: 60_000, what: 'the 2 new rows held (the dispatcher saw them)' });
    assert.equal(requests, sentBefore, 'nothing was sent to a disabled endpoint');
    // The state is in the store: a SIGKILL and restart keep it.
    await srv.kill9();
    client = await start();
    const after = await endpoint();
    assert.equal(after.disabled, true);
    assert.equal(after.disabled_at, ep.disabled_at);
    assert.equal((await pending()).length, 6);
    assert.equal(requests, sentBefore, 'still nothing sent after the restart');
    // Enable: every held delivery goes out, each once.
    failing = false;
    const r = await fetch(`${srv.url}/v1/warren/webhooks/endpoints/flaky/enable`, { method: 'POST', headers: { 'x-api-key': srv.apiKey } });
    assert.equal(r.status, 200, await r.clone().text());
    const enabled = await r.json();
    assert.deepEqual([enabled.type, enabled.name, enabled.disabled, enabled.consecutive_failures, enabled.disabled_at],
      ['webhook_endpoint', 'flaky', false, 0, null]);
    await waitFor(() => agents.every((id) => receiver.ofType('agent.created').some((b) => b.data.id === id)),
      { timeoutMs: 60_000, what: 'all 6 agent.created deliveries after enable' });
    await waitFor(async () => (await pending()).length === 0, { timeoutMs: 60_000, what: 'no pending rows' });
    assert.deepEqual(receiver.failures, []);
    for (const v of receiver.accepted.values()) assert.equal(v.count, 1, `${v.body.id} accepted once`);
    assert.equal(receiver.accepted.size, 6);
    // Enabling again is a no-op; an unknown endpoint is 404.
    const again = await fetch(`${srv.url}/v1/warren/webhooks/endpoints/flaky/enable`, {
      method: 'POST', headers: { 'x-api-key': srv.apiKey, 'content-type': 'application/json' }, body: '{}' });
    assert.equal(again.status, 200);
    const none = await fetch(`${srv.url}/v1/warren/webhooks/endpoints/ghost/enable`, { method: 'POST', headers: { 'x-api-key': srv.apiKey } });
    assert.equal(none.status, 404);
    assert.equal((await none.json()).error.type, 'not_found_error');
  });
});
