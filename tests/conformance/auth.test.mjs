// Conformance: authentication, environment-key scopes (spec 3.2, 3.13) and the
// mapping of 400/401/403/404/409 onto the SDK's error classes (spec 0).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  AuthenticationError, PermissionDeniedError, NotFoundError, BadRequestError, ConflictError, ContentTooLargeError,
} from '@anthropic-ai/sdk';
import { serverFixture, assertApiError, collect, waitFor, withTimeout } from './lib/util.mjs';
import { api, envelopeProblems } from './lib/http.mjs';
import { runCli } from './lib/server.mjs';

const fx = serverFixture();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

describe('auth and error classes', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agent, envA, envB, sessA, sessB, keyA;
  before(async () => {
    const c = fx.client;
    agent = await c.beta.agents.create({ name: 'auth agent', model: 'claude-sonnet-4-6' });
    envA = await c.beta.environments.create({ name: 'auth-env-a', config: { type: 'self_hosted' } });
    envB = await c.beta.environments.create({ name: 'auth-env-b', config: { type: 'self_hosted' } });
    sessA = await c.beta.sessions.create({ agent: agent.id, environment_id: envA.id });
    sessB = await c.beta.sessions.create({ agent: agent.id, environment_id: envB.id });
    keyA = await fx.srv.createEnvKey(envA.id);
  });

  test('the org key works as x-api-key (raw) and as the SDK\'s default header', async () => {
    const r = await api(fx.srv.url, fx.srv.apiKey, 'GET', '/v1/agents');
    assert.equal(r.status, 200, r.text);
    assert.ok(Array.isArray(r.json.data));
    assert.ok('next_page' in r.json);
    const page = await fx.client.beta.agents.list();
    assert.ok(page.data.some((a) => a.id === agent.id));
  });

  test('missing key is 401 with the envelope', async () => {
    const r = await api(fx.srv.url, null, 'GET', '/v1/agents');
    assert.equal(r.status, 401);
    assert.deepEqual(envelopeProblems(r), []);
    assert.equal(r.json.error.type, 'authentication_error');
    assert.match(r.json.request_id, /^req_/);
  });

  test('a wrong key is AuthenticationError (401 authentication_error)', async () => {
    const bad = fx.srv.client({ apiKey: 'sk-ant-api03-not-a-real-key' });
    await assertApiError(bad.beta.agents.list(), AuthenticationError, 401, 'authentication_error', 'bad api key');
    const badBearer = fx.srv.bearerClient('sk-ant-oat01-not-a-real-key');
    await assertApiError(badBearer.beta.sessions.retrieve(sessA.id), AuthenticationError, 401, 'authentication_error', 'bad bearer');
  });

  test('a key minted by the CLI while the server runs works at once', async () => {
    const k = await fx.srv.createApiKey();
    assert.notEqual(k, fx.srv.apiKey);
    const c = fx.srv.client({ apiKey: k });
    const got = await c.beta.agents.retrieve(agent.id);
    assert.equal(got.id, agent.id);
  });

  test('the CLI refuses an environment key for an unknown environment', async () => {
    await assert.rejects(runCli(['keys', 'create', 'environment', 'env_doesnotexist', '--data-dir', fx.srv.dataDir]));
  });

  test('an environment key reads, lists, streams and sends on its own environment\'s sessions', async () => {
    const c = fx.srv.bearerClient(keyA);
    const s = await c.beta.sessions.retrieve(sessA.id);
    assert.equal(s.id, sessA.id);
    const sent = (await c.beta.sessions.events.send(sessA.id, { events: [msg('from worker')] })).data[0];
    assert.match(sent.id, /^sevt_/);
    const list = await collect(c.beta.sessions.events.list(sessA.id));
    assert.ok(list.some((e) => e.id === sent.id));
    const stream = await c.beta.sessions.events.stream(sessA.id);
    const seen = [];
    const done = (async () => { for await (const e of stream) seen.push(e); })();
    const sent2 = (await fx.client.beta.sessions.events.send(sessA.id, { events: [msg('to worker')] })).data[0];
    await waitFor(() => seen.some((e) => e.id === sent2.id), { what: 'env-key stream sees the event' });
    stream.controller.abort();
    await withTimeout(done.catch(() => {}), 30_000, 'abort ends the stream');
  });

  test('an environment key gets 403 PermissionDeniedError on another environment\'s session', async () => {
    const c = fx.srv.bearerClient(keyA);
    await assertApiError(c.beta.sessions.retrieve(sessB.id), PermissionDeniedError, 403, 'permission_error', 'retrieve other');
    await assertApiError(c.beta.sessions.events.list(sessB.id), PermissionDeniedError, 403, 'permission_error', 'list other');
    await assertApiError(c.beta.sessions.events.send(sessB.id, { events: [msg('x')] }), PermissionDeniedError, 403, 'permission_error', 'send other');
    await assertApiError(c.beta.sessions.events.stream(sessB.id), PermissionDeniedError, 403, 'permission_error', 'stream other');
    const evs = await collect(fx.client.beta.sessions.events.list(sessB.id));
    assert.equal(evs.length, 0, 'nothing was written to B');
  });

  test('an environment key gets 403 on org-level operations', async () => {
    const c = fx.srv.bearerClient(keyA);
    await assertApiError(c.beta.agents.create({ name: 'x', model: 'm' }), PermissionDeniedError, 403, 'permission_error', 'create agent');
    await assertApiError(c.beta.agents.list(), PermissionDeniedError, 403, 'permission_error', 'list agents');
    await assertApiError(c.beta.sessions.create({ agent: agent.id, environment_id: envA.id }), PermissionDeniedError, 403, 'permission_error', 'create session');
    await assertApiError(c.beta.environments.create({ name: 'y', config: { type: 'self_hosted' } }), PermissionDeniedError, 403, 'permission_error', 'create env');
    await assertApiError(c.beta.environments.delete(envB.id), PermissionDeniedError, 403, 'permission_error', 'delete other env');
    await assertApiError(c.beta.sessions.delete(sessA.id), PermissionDeniedError, 403, 'permission_error', 'delete own session');
    await assertApiError(c.beta.sessions.archive(sessA.id), PermissionDeniedError, 403, 'permission_error', 'archive own session');
    await assertApiError(c.beta.sessions.update(sessA.id, { title: 'nope' }), PermissionDeniedError, 403, 'permission_error', 'update own session');
    const s = await fx.client.beta.sessions.retrieve(sessA.id);
    assert.equal(s.archived_at, null);
    assert.notEqual(s.title, 'nope');
    const agents = await collect(fx.client.beta.agents.list({ limit: 100, include_archived: true }));
    assert.equal(agents.length, 1, 'no agent was created');
  });

  test('400 BadRequestError, 404 NotFoundError, 409 ConflictError', async () => {
    await assertApiError(fx.client.beta.agents.create({ name: 'no model' }), BadRequestError, 400, 'invalid_request_error', '400');
    await assertApiError(fx.client.beta.environments.retrieve('env_nope'), NotFoundError, 404, 'not_found_error', '404');
    await assertApiError(fx.client.beta.environments.create({ name: 'auth-env-a', config: { type: 'self_hosted' } }),
      ConflictError, 409, 'invalid_request_error', '409 duplicate env');
    await assertApiError(fx.client.beta.agents.update(agent.id, { version: 7, name: 'x' }),
      ConflictError, 409, 'invalid_request_error', '409 stale version');
  });

  test('an oversized body surfaces as ContentTooLargeError (413 request_too_large), every time', {
  }, async () => {
    // The answer must reach a client that is still sending: the server has to
    // read (discard) the rest of the body or linger before closing, otherwise
    // the close resets the connection and the SDK sees APIConnectionError.
    const before = (await collect(fx.client.beta.agents.list({ limit: 100, include_archived: true }))).length;
    for (let i = 0; i < 5; i++) {
      await assertApiError(fx.client.beta.agents.create({ name: 'big', model: 'm', system: 'a'.repeat(20 << 20) }),
        ContentTooLargeError, 413, 'request_too_large', `oversized create, attempt ${i + 1}`);
    }
    const after = (await collect(fx.client.beta.agents.list({ limit: 100, include_archived: true }))).length;
    assert.equal(after, before);
  });

  test('unknown anthropic-beta values, x-stainless-helper and anthropic-workspace-id are ignored', async () => {
    const r = await api(fx.srv.url, fx.srv.apiKey, 'GET', `/v1/sessions/${sessA.id}?beta=true`, undefined, {
      'anthropic-beta': 'managed-agents-2026-04-01,some-future-beta-2030-01-01',
      'x-stainless-helper': 'environments-worker',
      'anthropic-workspace-id': 'wrkspc_123',
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, sessA.id);
  });
});
