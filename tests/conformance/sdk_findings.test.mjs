// Issue 14, item 9: what the official SDK's generated resource tests
// (tests/api-resources/beta/ in the TypeScript SDK) found, as conformance
// tests with real objects in place of the placeholders: toolset configs that
// carry `type`, the sessions.resources routes (list, add, retrieve, update,
// delete, with only-required and required+optional params), and a session on
// an archived agent (409, docs/API.md). Each test creates what it uses.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, ConflictError, NotFoundError, PermissionDeniedError } from '@anthropic-ai/sdk';
import { serverFixture, assertApiError, assertTimestamp, collect, uniq } from './lib/util.mjs';

const fx = serverFixture();
const OPTIONAL = { betas: ['managed-agents-2026-04-01'], workspace_id: 'wrkspc_ignored' };

async function sessionWithRepos(n = 1) {
  const c = fx.client;
  const agent = await c.beta.agents.create({ name: uniq('res'), model: 'claude-sonnet-4-6' });
  const env = await c.beta.environments.create({ name: uniq('res-env') });
  const resources = Array.from({ length: n }, (_, i) => ({
    type: 'github_repository', url: `https://github.com/example/repo${i}`, authorization_token: `ghp_secret${i}`,
    checkout: { type: 'branch', name: 'main' },
  }));
  const session = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id, resources });
  return { session, env, agent };
}

describe('SDK generated-test findings (issue 14 item 9)', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  test('agents.create: a toolset config entry may carry type (the SDK declares it); it must equal the name', async () => {
    const a = await fx.client.beta.agents.create({
      name: uniq('typed'), model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401',
        configs: [{ name: 'bash', type: 'bash', enabled: true, permission_policy: { type: 'always_ask' } },
          { name: 'web_search', type: 'web_search', enabled: false }] }],
    });
    const byName = Object.fromEntries(a.tools[0].configs.map((c) => [c.name, c]));
    assert.equal(byName.bash.type, 'bash');
    assert.deepEqual(byName.bash.permission_policy, { type: 'always_ask' });
    assert.equal(byName.web_search.enabled, false);
    for (const c of a.tools[0].configs) assert.equal(c.type, c.name, 'every resolved config echoes its type');
    const err = await assertApiError(fx.client.beta.agents.create({
      name: uniq('typed-bad'), model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', type: 'read' }] }],
    }), BadRequestError, 400, 'invalid_request_error', 'type differs from name');
    assert.match(err.error.error.message, /^tools\[0\]\.configs\[0\]\.type: must equal the tool's name 'bash'/);
    await assertApiError(fx.client.beta.agents.create({
      name: uniq('typed-num'), model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'bash', type: 7 }] }],
    }), BadRequestError, 400, 'invalid_request_error', 'type of the wrong JSON type');
  });

  test('sessions.resources.list: only required params, and paging with limit/page', async () => {
    const { session } = await sessionWithRepos(3);
    const page = await fx.client.beta.sessions.resources.list(session.id);
    assert.equal(page.data.length, 3);
    for (const r of page.data) {
      assert.match(r.id, /^sesrsc_/);
      assert.equal(r.type, 'github_repository');
      assert.equal(r.authorization_token, undefined, 'the token is never returned');
      assertTimestamp(r.created_at, 'created_at');
    }
    assert.deepEqual(page.data.map((r) => r.id), session.resources.map((r) => r.id), 'creation order');
    const paged = await collect(fx.client.beta.sessions.resources.list(session.id, { limit: 1, ...OPTIONAL }));
    assert.deepEqual(paged.map((r) => r.id), session.resources.map((r) => r.id), 'three pages of one, same order');
    await assertApiError(fx.client.beta.sessions.resources.list(session.id, { limit: 0 }), BadRequestError, 400,
      'invalid_request_error', 'limit 0');
    await assertApiError(fx.client.beta.sessions.resources.list('sesn_missing'), NotFoundError, 404, 'not_found_error',
      'unknown session');
  });

  test('sessions.resources.retrieve: required and optional params; unknown ids are 404', async () => {
    const { session } = await sessionWithRepos(1);
    const rid = session.resources[0].id;
    const r = await fx.client.beta.sessions.resources.retrieve(rid, { session_id: session.id, ...OPTIONAL });
    assert.deepEqual(r, session.resources[0]);
    await assertApiError(fx.client.beta.sessions.resources.retrieve('sesrsc_missing', { session_id: session.id }),
      NotFoundError, 404, 'not_found_error', 'unknown resource');
  });

  test('sessions.resources.update rotates a repository token; validation of the body', async () => {
    const { session } = await sessionWithRepos(1);
    const rid = session.resources[0].id;
    const before = session.resources[0];
    await new Promise((r) => setTimeout(r, 5));
    const u = await fx.client.beta.sessions.resources.update(rid, { session_id: session.id, authorization_token: 'ghp_rotated', ...OPTIONAL });
    assert.equal(u.id, rid);
    assert.equal(u.url, before.url);
    assert.equal(u.authorization_token, undefined);
    assert.ok(Date.parse(u.updated_at) >= Date.parse(before.updated_at));
    const again = await fx.client.beta.sessions.resources.retrieve(rid, { session_id: session.id });
    assert.equal(again.updated_at, u.updated_at, 'the update was stored');
    await assertApiError(fx.client.beta.sessions.resources.update(rid, { session_id: session.id, authorization_token: '' }),
      BadRequestError, 400, 'invalid_request_error', 'empty token');
    await assertApiError(fx.client.beta.sessions.resources.update(rid, { session_id: session.id, authorization_token: 5 }),
      BadRequestError, 400, 'invalid_request_error', 'token of the wrong type');
  });

  test('sessions.resources.delete: the resource is gone; a second delete is 404', async () => {
    const { session } = await sessionWithRepos(2);
    const [a, b] = session.resources.map((r) => r.id);
    const d = await fx.client.beta.sessions.resources.delete(a, { session_id: session.id });
    assert.deepEqual(d, { id: a, type: 'session_resource_deleted' });
    const left = await fx.client.beta.sessions.resources.list(session.id);
    assert.deepEqual(left.data.map((r) => r.id), [b]);
    const s = await fx.client.beta.sessions.retrieve(session.id);
    assert.deepEqual(s.resources.map((r) => r.id), [b], 'the session object agrees');
    await assertApiError(fx.client.beta.sessions.resources.delete(a, { session_id: session.id, ...OPTIONAL }),
      NotFoundError, 404, 'not_found_error', 'second delete');
  });

  test('sessions.resources.add: file only; Warren has no Files API yet, so a file id is 404', async () => {
    const { session } = await sessionWithRepos(0);
    const err = await assertApiError(fx.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: 'file_011CNha8iCJcU1wXNR6q4V8w' }),
      NotFoundError, 404, 'not_found_error', 'add: only required params');
    assert.match(err.error.error.message, /file_011CNha8iCJcU1wXNR6q4V8w/);
    await assertApiError(fx.client.beta.sessions.resources.add(session.id, {
      type: 'file', file_id: 'file_x', mount_path: '/uploads/receipt.pdf', ...OPTIONAL,
    }), NotFoundError, 404, 'not_found_error', 'add: required and optional params');
    await assertApiError(fx.client.beta.sessions.resources.add(session.id, { type: 'file', file_id: 'file_x', mount_path: 'relative' }),
      BadRequestError, 400, 'invalid_request_error', 'relative mount_path');
    await assertApiError(fx.client.beta.sessions.resources.add(session.id, { type: 'memory_store', memory_store_id: 'memstore_x' }),
      BadRequestError, 400, 'invalid_request_error', 'memory stores only at create');
    await assertApiError(fx.client.beta.sessions.resources.add(session.id, { type: 'file' }),
      BadRequestError, 400, 'invalid_request_error', 'missing file_id');
    const list = await fx.client.beta.sessions.resources.list(session.id);
    assert.deepEqual(list.data, [], 'nothing was added');
  });

  test('sessions.resources mutations need an org key; reads follow the session', async () => {
    const { session, env } = await sessionWithRepos(1);
    const envClient = fx.srv.bearerClient(await fx.srv.createEnvKey(env.id));
    const rid = session.resources[0].id;
    const got = await envClient.beta.sessions.resources.retrieve(rid, { session_id: session.id });
    assert.equal(got.id, rid);
    await assertApiError(envClient.beta.sessions.resources.delete(rid, { session_id: session.id }),
      PermissionDeniedError, 403, 'permission_error', 'env key delete');
    await assertApiError(envClient.beta.sessions.resources.update(rid, { session_id: session.id, authorization_token: 't' }),
      PermissionDeniedError, 403, 'permission_error', 'env key update');
  });

  test('sessions.resources on an archived session are read-only (409)', async () => {
    const { session } = await sessionWithRepos(1);
    const rid = session.resources[0].id;
    await fx.client.beta.sessions.archive(session.id);
    await assertApiError(fx.client.beta.sessions.resources.delete(rid, { session_id: session.id }),
      ConflictError, 409, 'invalid_request_error', 'delete on archived');
    await assertApiError(fx.client.beta.sessions.resources.update(rid, { session_id: session.id, authorization_token: 't' }),
      ConflictError, 409, 'invalid_request_error', 'update on archived');
    assert.equal((await fx.client.beta.sessions.resources.list(session.id)).data.length, 1);
  });

  test('creating a session on an archived agent is 409 (docs/API.md: archived objects are conflicts)', async () => {
    const agent = await fx.client.beta.agents.create({ name: uniq('archived'), model: 'claude-sonnet-4-6' });
    const env = await fx.client.beta.environments.create({ name: uniq('archived-env') });
    await fx.client.beta.agents.archive(agent.id);
    const err = await assertApiError(fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id }),
      ConflictError, 409, 'invalid_request_error', 'archived agent');
    assert.match(err.error.error.message, /archived/);
    const sessions = await collect(fx.client.beta.sessions.list({ agent_id: agent.id }));
    assert.equal(sessions.length, 0, 'no session was created');
  });
});
