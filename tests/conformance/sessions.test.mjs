// Conformance: sessions (spec 1.3, check 3 of section 9), driven by the official SDK.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { NotFoundError, BadRequestError } from '@anthropic-ai/sdk';
import { serverFixture, assertTimestamp, assertApiError, collect, uniq, settle, waitFor } from './lib/util.mjs';

const fx = serverFixture();

function assertSessionShape(s) {
  assert.equal(s.type, 'session');
  assert.match(s.id, /^sesn_[A-Za-z0-9]+/);
  assert.ok(['rescheduling', 'running', 'idle', 'terminated'].includes(s.status), `status ${s.status}`);
  for (const k of ['id', 'name', 'description', 'model', 'system', 'tools', 'mcp_servers', 'skills', 'multiagent', 'version']) {
    assert.ok(k in s.agent, `agent.${k} present in the resolved copy: ${JSON.stringify(s.agent)}`);
  }
  assert.equal(typeof s.environment_id, 'string');
  assert.ok(s.title === null || typeof s.title === 'string');
  assert.equal(typeof s.metadata, 'object');
  assert.ok(Array.isArray(s.resources), 'resources[]');
  assert.ok(Array.isArray(s.vault_ids), 'vault_ids[]');
  assert.ok(Array.isArray(s.outcome_evaluations), 'outcome_evaluations[]');
  assert.equal(typeof s.stats?.active_seconds, 'number', 'stats.active_seconds');
  assert.equal(typeof s.stats?.duration_seconds, 'number', 'stats.duration_seconds');
  for (const k of ['input_tokens', 'output_tokens', 'cache_read_input_tokens']) {
    assert.equal(typeof s.usage?.[k], 'number', `usage.${k}`);
  }
  assert.equal(typeof s.usage?.cache_creation, 'object', 'usage.cache_creation');
  assertTimestamp(s.created_at, 'created_at');
  assertTimestamp(s.updated_at, 'updated_at');
}

describe('sessions', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agentA, agentB, env, env2;

  before(async () => {
    const c = fx.client;
    agentA = await c.beta.agents.create({ name: 'agent A', model: 'claude-sonnet-4-6', system: 'v1 system', tools: [{ type: 'agent_toolset_20260401' }] });
    agentA = await c.beta.agents.update(agentA.id, { version: 1, system: 'v2 system' });
    agentB = await c.beta.agents.create({ name: 'agent B', model: 'claude-haiku-4-5' });
    env = await c.beta.environments.create({ name: 'sessions-env', config: { type: 'self_hosted' } });
    env2 = await c.beta.environments.create({ name: 'sessions-env-cloud', config: { type: 'cloud' } });
  });

  test('create with a string agent id uses the latest version', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, title: 'first' });
    assertSessionShape(s);
    assert.equal(s.status, 'idle', 'a new session with no engine work is idle');
    assert.equal(s.agent.id, agentA.id);
    assert.equal(s.agent.version, 2);
    assert.equal(s.agent.system, 'v2 system');
    assert.equal(s.agent.name, 'agent A');
    assert.equal(s.agent.model.id, 'claude-sonnet-4-6');
    assert.equal(s.environment_id, env.id);
    assert.equal(s.title, 'first');
    assert.deepEqual(s.metadata, {});
    assert.deepEqual(s.resources, []);
    assert.deepEqual(s.vault_ids, []);
    assert.equal(s.archived_at, null);
    const got = await fx.client.beta.sessions.retrieve(s.id);
    assert.equal(got.id, s.id);
    assert.deepEqual(got.agent, s.agent);
    assert.equal(got.title, 'first');
  });

  test('create with {type:"agent", id, version} pins that version', async () => {
    const s = await fx.client.beta.sessions.create({ agent: { type: 'agent', id: agentA.id, version: 1 }, environment_id: env.id });
    assert.equal(s.agent.version, 1);
    assert.equal(s.agent.system, 'v1 system');
    const noVersion = await fx.client.beta.sessions.create({ agent: { type: 'agent', id: agentA.id }, environment_id: env.id });
    assert.equal(noVersion.agent.version, 2);
  });

  test('create with agent_with_overrides replaces the given fields only', async () => {
    const s = await fx.client.beta.sessions.create({
      agent: { type: 'agent_with_overrides', id: agentA.id, system: 'override system', model: 'claude-opus-4-8', tools: [] },
      environment_id: env.id,
    });
    assert.equal(s.agent.id, agentA.id);
    assert.equal(s.agent.system, 'override system');
    assert.equal(s.agent.model.id, 'claude-opus-4-8');
    assert.deepEqual(s.agent.tools, []);
    assert.equal(s.agent.name, 'agent A');
    // The agent itself is untouched.
    const a = await fx.client.beta.agents.retrieve(agentA.id);
    assert.equal(a.version, 2);
    assert.equal(a.system, 'v2 system');
  });

  test('metadata at the limits is accepted (16 pairs, 64-char key, 512-char value)', async () => {
    const metadata = {};
    for (let i = 0; i < 15; i++) metadata[`k${i}`] = `v${i}`;
    metadata['k'.repeat(64)] = 'v'.repeat(512);
    const s = await fx.client.beta.sessions.create({ agent: agentB.id, environment_id: env.id, metadata });
    assert.deepEqual(s.metadata, metadata);
  });

  test('a file resource on a self_hosted environment is 400 with the exact message', async () => {
    const err = await assertApiError(
      fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, resources: [{ type: 'file', file_id: 'file_abc123' }] }),
      BadRequestError, 400, 'invalid_request_error', 'file resource on self_hosted');
    assert.equal(err.error.error.message,
      `Environment ${env.id} is a self-hosted environment. \`resources\` are not supported with self-hosted environments.`);
  });

  test('unknown agent or environment is 404', async () => {
    await assertApiError(fx.client.beta.sessions.create({ agent: 'agent_nope', environment_id: env.id }),
      NotFoundError, 404, 'not_found_error', 'unknown agent');
    await assertApiError(fx.client.beta.sessions.create({ agent: agentA.id, environment_id: 'env_nope' }),
      NotFoundError, 404, 'not_found_error', 'unknown environment');
    await assertApiError(fx.client.beta.sessions.retrieve('sesn_nope'), NotFoundError, 404, 'not_found_error', 'retrieve');
  });

  describe('list', () => {
    let made; // ids in creation order
    let bOnes;
    before(async () => {
      made = [];
      bOnes = [];
      for (let i = 0; i < 7; i++) {
        const agent = i % 3 === 0 ? agentB.id : agentA.id;
        const s = await fx.client.beta.sessions.create({ agent, environment_id: env2.id, title: `list-${i}` });
        made.push(s.id);
        if (agent === agentB.id) bOnes.push(s.id);
      }
    });

    test('order asc auto-paginates in creation order without duplicates', async () => {
      const all = await collect(fx.client.beta.sessions.list({ limit: 3, order: 'asc' }));
      const ids = all.map((s) => s.id);
      assert.equal(new Set(ids).size, ids.length, 'no duplicates');
      const ours = ids.filter((id) => made.includes(id));
      assert.deepEqual(ours, made, 'ascending creation order');
      for (let i = 1; i < all.length; i++) {
        assert.ok(Date.parse(all[i - 1].created_at) <= Date.parse(all[i].created_at), 'created_at ascending');
      }
    });

    test('default order is desc', async () => {
      const all = await collect(fx.client.beta.sessions.list({ limit: 4 }));
      const ours = all.map((s) => s.id).filter((id) => made.includes(id));
      assert.deepEqual(ours, [...made].reverse());
    });

    test('next_page / prev_page walk both directions', async () => {
      const p1 = await fx.client.beta.sessions.list({ limit: 3, order: 'asc' });
      assert.equal(p1.data.length, 3);
      assert.equal(typeof p1.next_page, 'string');
      assert.ok(p1.hasNextPage());
      const p2 = await p1.getNextPage();
      assert.equal(p2.data.length, 3);
      assert.equal(typeof p2.prev_page, 'string', 'second page carries prev_page');
      const back = await fx.client.beta.sessions.list({ limit: 3, order: 'asc', page: p2.prev_page });
      assert.deepEqual(back.data.map((s) => s.id), p1.data.map((s) => s.id), 'prev_page of page 2 is page 1');
      const p3 = await p2.getNextPage();
      const back2 = await fx.client.beta.sessions.list({ limit: 3, order: 'asc', page: p3.prev_page });
      assert.deepEqual(back2.data.map((s) => s.id), p2.data.map((s) => s.id), 'prev_page of page 3 is page 2');
      for (const id of p1.data.map((s) => s.id)) assert.ok(!p2.data.some((s) => s.id === id), 'pages are disjoint');
    });

    test('prev_page also walks back in desc order', async () => {
      const p1 = await fx.client.beta.sessions.list({ limit: 2, order: 'desc' });
      const p2 = await p1.getNextPage();
      assert.equal(typeof p2.prev_page, 'string');
      const back = await fx.client.beta.sessions.list({ limit: 2, order: 'desc', page: p2.prev_page });
      assert.deepEqual(back.data.map((s) => s.id), p1.data.map((s) => s.id));
    });

    test('the last page has next_page null', async () => {
      let page = await fx.client.beta.sessions.list({ limit: 5 });
      let n = 0;
      while (page.hasNextPage()) {
        page = await page.getNextPage();
        assert.ok(++n < 100, 'pagination terminates');
      }
      assert.equal(page.next_page, null);
    });

    test('a cursor stays valid while new sessions are created (keyset paging)', async () => {
      const seen = [];
      let page = await fx.client.beta.sessions.list({ limit: 2, order: 'asc' });
      seen.push(...page.data.map((s) => s.id));
      const extra = [];
      for (let i = 0; i < 3; i++) extra.push((await fx.client.beta.sessions.create({ agent: agentB.id, environment_id: env2.id })).id);
      while (page.hasNextPage()) {
        page = await page.getNextPage();
        seen.push(...page.data.map((s) => s.id));
      }
      assert.equal(new Set(seen).size, seen.length, 'no duplicates across pages');
      for (const id of made) assert.ok(seen.includes(id), `${id} seen`);
      assert.deepEqual(seen.slice(-3), extra, 'sessions created mid-walk appear at the end in asc order');
      bOnes.push(...extra);
    });

    test('agent_id filter', async () => {
      const all = await collect(fx.client.beta.sessions.list({ agent_id: agentB.id, limit: 2 }));
      assert.ok(all.length >= bOnes.length);
      for (const s of all) assert.equal(s.agent.id, agentB.id);
      for (const id of bOnes) assert.ok(all.some((s) => s.id === id), `${id} listed`);
    });

    test('agent_version filter', async () => {
      const v1 = await collect(fx.client.beta.sessions.list({ agent_id: agentA.id, agent_version: 1, limit: 100 }));
      assert.ok(v1.length >= 1);
      for (const s of v1) assert.equal(s.agent.version, 1);
    });

    test('statuses[] filter', async () => {
      const idle = await collect(fx.client.beta.sessions.list({ statuses: ['idle'], limit: 100 }));
      for (const id of made) assert.ok(idle.some((s) => s.id === id), `${id} is idle`);
      for (const s of idle) assert.equal(s.status, 'idle');
      const running = await collect(fx.client.beta.sessions.list({ statuses: ['running', 'terminated'], limit: 100 }));
      for (const s of running) assert.ok(['running', 'terminated'].includes(s.status));
      assert.ok(!running.some((s) => made.includes(s.id)));
    });

    test('created_at[gt|gte|lt|lte] filters', async () => {
      const all = await collect(fx.client.beta.sessions.list({ order: 'asc', limit: 100 }));
      const ours = all.filter((s) => made.includes(s.id));
      const pivot = ours[3];
      const gte = await collect(fx.client.beta.sessions.list({ 'created_at[gte]': pivot.created_at, order: 'asc', limit: 100 }));
      assert.ok(gte.some((s) => s.id === pivot.id), 'gte includes boundary');
      for (const s of gte) assert.ok(Date.parse(s.created_at) >= Date.parse(pivot.created_at));
      const gt = await collect(fx.client.beta.sessions.list({ 'created_at[gt]': pivot.created_at, limit: 100 }));
      assert.ok(!gt.some((s) => s.id === pivot.id), 'gt excludes boundary');
      const lt = await collect(fx.client.beta.sessions.list({ 'created_at[lt]': pivot.created_at, limit: 100 }));
      assert.ok(!lt.some((s) => s.id === pivot.id), 'lt excludes boundary');
      for (const s of lt) assert.ok(Date.parse(s.created_at) <= Date.parse(pivot.created_at));
      const lte = await collect(fx.client.beta.sessions.list({ 'created_at[lte]': pivot.created_at, limit: 100 }));
      assert.ok(lte.some((s) => s.id === pivot.id), 'lte includes boundary');
      assert.ok(lte.some((s) => s.id === ours[0].id));
      const future = await collect(fx.client.beta.sessions.list({ 'created_at[gt]': '2999-01-01T00:00:00Z' }));
      assert.deepEqual(future, []);
    });
  });

  test('update: title, and metadata as a patch', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, metadata: { a: '1', b: '2' } });
    const u = await fx.client.beta.sessions.update(s.id, { title: 'renamed', metadata: { a: null, c: '3' } });
    assert.equal(u.id, s.id);
    assert.equal(u.title, 'renamed');
    assert.deepEqual(u.metadata, { b: '2', c: '3' });
    const got = await fx.client.beta.sessions.retrieve(s.id);
    assert.deepEqual(got.metadata, { b: '2', c: '3' });
    assert.equal(got.title, 'renamed');
  });

  test('update emits session.updated with the changed fields only (spec 1.3, 2.3)', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, title: 'before' });
    const stream = await fx.client.beta.sessions.events.stream(s.id);
    const seen = [];
    const done = (async () => { for await (const e of stream) seen.push(e); })();
    await fx.client.beta.sessions.update(s.id, { metadata: { k: 'v' } });
    const ev = await waitFor(() => seen.find((e) => e.type === 'session.updated'), { what: 'session.updated on the stream' });
    assert.deepEqual(ev.metadata, { k: 'v' });
    assert.ok(!('title' in ev) || ev.title === undefined, `unchanged title not included: ${JSON.stringify(ev)}`);
    const listed = await collect(fx.client.beta.sessions.events.list(s.id, { types: ['session.updated'] }));
    assert.equal(listed.length, 1, 'session.updated is persisted');
    assert.equal(listed[0].id, ev.id);
    stream.controller.abort();
    await done.catch(() => {});
  });

  test('archive: archived_at set, hidden from list unless include_archived, read-only', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id });
    const a = await fx.client.beta.sessions.archive(s.id);
    assert.equal(a.id, s.id);
    assertTimestamp(a.archived_at, 'archived_at');
    const visible = await collect(fx.client.beta.sessions.list({ limit: 100 }));
    assert.ok(!visible.some((x) => x.id === s.id), 'hidden by default');
    const all = await collect(fx.client.beta.sessions.list({ limit: 100, include_archived: true }));
    assert.ok(all.some((x) => x.id === s.id), 'include_archived shows it');
    const got = await fx.client.beta.sessions.retrieve(s.id);
    assertTimestamp(got.archived_at, 'archived_at after retrieve');
  });

  test('delete answers {id, type:"session_deleted"} and removes the session', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id });
    await fx.client.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'bye' }] }] });
    await settle(fx.client, s.id); // delete while running is rejected (spec 1.3)
    const d = await fx.client.beta.sessions.delete(s.id);
    assert.deepEqual(d, { id: s.id, type: 'session_deleted' });
    await assertApiError(fx.client.beta.sessions.retrieve(s.id), NotFoundError, 404, 'not_found_error', 'retrieve deleted');
    await assertApiError(fx.client.beta.sessions.events.list(s.id), NotFoundError, 404, 'not_found_error', 'events of deleted');
    await assertApiError(fx.client.beta.sessions.delete(s.id), NotFoundError, 404, 'not_found_error', 'delete twice');
    const all = await collect(fx.client.beta.sessions.list({ limit: 100, include_archived: true }));
    assert.ok(!all.some((x) => x.id === s.id));
  });

  test('metadata over the limits is 400 and creates nothing', async () => {
    const before = (await collect(fx.client.beta.sessions.list({ limit: 100, include_archived: true }))).length;
    const m17 = {};
    for (let i = 0; i < 17; i++) m17[`k${i}`] = 'v';
    await assertApiError(fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, metadata: m17 }),
      BadRequestError, 400, 'invalid_request_error', '17 pairs');
    await assertApiError(fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, metadata: { ['k'.repeat(65)]: 'v' } }),
      BadRequestError, 400, 'invalid_request_error', '65-char key');
    await assertApiError(fx.client.beta.sessions.create({ agent: agentA.id, environment_id: env.id, metadata: { k: 'v'.repeat(513) } }),
      BadRequestError, 400, 'invalid_request_error', '513-char value');
    const after = (await collect(fx.client.beta.sessions.list({ limit: 100, include_archived: true }))).length;
    assert.equal(after, before);
  });

  test('?beta=true (as the Python SDK sends) is accepted', async () => {
    const c = fx.srv.client({ defaultQuery: { beta: 'true' } });
    const s = await c.beta.sessions.create({ agent: agentA.id, environment_id: env.id, title: uniq('beta') });
    const got = await c.beta.sessions.retrieve(s.id);
    assert.equal(got.id, s.id);
    const page = await c.beta.sessions.list({ limit: 1 });
    assert.equal(page.data.length, 1);
  });
});
