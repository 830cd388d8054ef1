// Conformance: agents with versions, driven by the official SDK (spec 1.1, check 1 of section 9).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConflictError, NotFoundError, BadRequestError } from '@anthropic-ai/sdk';
import { serverFixture, assertTimestamp, assertApiError, collect, uniq } from './lib/util.mjs';

const TOOL_NAMES = ['bash', 'edit', 'read', 'write', 'glob', 'grep', 'web_fetch', 'web_search'];
const fx = serverFixture();

describe('agents', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  // Each test makes its own agent (no test depends on another's writes).
  const createV1 = () => fx.client.beta.agents.create({
    name: 'conformance agent',
    model: 'claude-sonnet-4-6',
    tools: [{ type: 'agent_toolset_20260401' }],
    metadata: { team: 'qa', tier: 'gold' },
  });
  const createV2 = async () => {
    const a = await createV1();
    await fx.client.beta.agents.update(a.id, { version: 1, system: 'You are terse.', description: 'second version',
      metadata: { tier: null, region: 'eu' } });
    return a;
  };

  test('create returns a full agent object at version 1 with a resolved toolset', async () => {
    const agent = await createV1();
    assert.equal(agent.type, 'agent');
    assert.match(agent.id, /^agent_[A-Za-z0-9]+/);
    assert.equal(agent.version, 1);
    assert.equal(agent.name, 'conformance agent');
    assert.equal(agent.model?.id, 'claude-sonnet-4-6', `model should be resolved to an object: ${JSON.stringify(agent.model)}`);
    assert.equal(agent.system, null);
    assert.equal(agent.description, null);
    assert.deepEqual(agent.mcp_servers, []);
    assert.deepEqual(agent.skills, []);
    assert.equal(agent.multiagent, null);
    assert.deepEqual(agent.metadata, { team: 'qa', tier: 'gold' });
    assertTimestamp(agent.created_at, 'created_at');
    assertTimestamp(agent.updated_at, 'updated_at');
    assert.equal(agent.archived_at, null);

    assert.equal(agent.tools.length, 1);
    const ts = agent.tools[0];
    assert.equal(ts.type, 'agent_toolset_20260401');
    assert.deepEqual(ts.default_config, { enabled: true, permission_policy: { type: 'always_allow' } });
    assert.ok(Array.isArray(ts.configs), 'configs resolved');
    const names = ts.configs.map((c) => c.name).sort();
    assert.deepEqual(names, [...TOOL_NAMES].sort(), 'one resolved config per built-in tool');
    for (const c of ts.configs) {
      assert.equal(c.enabled, true, `${c.name}.enabled`);
      assert.deepEqual(c.permission_policy, { type: 'always_allow' }, `${c.name}.permission_policy`);
    }
  });

  test('per-tool config overrides default_config in the resolved form', async () => {
    const a = await fx.client.beta.agents.create({
      name: 'toolset override',
      model: { id: 'claude-opus-4-8', effort: 'high' },
      tools: [{
        type: 'agent_toolset_20260401',
        default_config: { enabled: true, permission_policy: { type: 'always_allow' } },
        configs: [{ name: 'bash', enabled: true, permission_policy: { type: 'always_ask' } }, { name: 'web_search', enabled: false }],
      }],
    });
    assert.equal(a.model.id, 'claude-opus-4-8');
    assert.equal(a.model.effort, 'high');
    const byName = Object.fromEntries(a.tools[0].configs.map((c) => [c.name, c]));
    assert.deepEqual(byName.bash.permission_policy, { type: 'always_ask' });
    assert.equal(byName.web_search.enabled, false);
    assert.equal(byName.read.enabled, true);
    assert.deepEqual(byName.read.permission_policy, { type: 'always_allow' });
  });

  test('update with the current version creates version 2; metadata is a patch', async () => {
    const agent = await createV1();
    const v2 = await fx.client.beta.agents.update(agent.id, {
      version: 1,
      system: 'You are terse.',
      description: 'second version',
      metadata: { tier: null, region: 'eu' },
    });
    assert.equal(v2.id, agent.id);
    assert.equal(v2.version, 2);
    assert.equal(v2.system, 'You are terse.');
    assert.equal(v2.description, 'second version');
    assert.equal(v2.name, 'conformance agent', 'omitted fields are kept');
    assert.equal(v2.model.id, 'claude-sonnet-4-6');
    assert.deepEqual(v2.metadata, { team: 'qa', region: 'eu' }, 'null deletes a key, new keys are added');
    assert.ok(Date.parse(v2.updated_at) >= Date.parse(agent.updated_at), 'updated_at moves forward');
  });

  test('update with a stale version is 409 ConflictError (invalid_request_error) and changes nothing', async () => {
    const agent = await createV2();
    await assertApiError(
      fx.client.beta.agents.update(agent.id, { version: 1, system: 'stale write' }),
      ConflictError, 409, 'invalid_request_error', 'stale version');
    const cur = await fx.client.beta.agents.retrieve(agent.id);
    assert.equal(cur.version, 2);
    assert.equal(cur.system, 'You are terse.');
  });

  test('the SDK retries 409 by default and still surfaces ConflictError', async () => {
    const agent = await createV2();
    const c = fx.srv.client({ maxRetries: 1 });
    await assertApiError(c.beta.agents.update(agent.id, { version: 1, name: 'nope' }),
      ConflictError, 409, 'invalid_request_error', 'stale version with retries');
  });

  test('concurrent updates with the same version: exactly one wins, the rest are 409', async () => {
    const a = await fx.client.beta.agents.create({ name: uniq('race'), model: 'm' });
    const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) =>
      fx.client.beta.agents.update(a.id, { version: 1, description: `writer ${i}` })));
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r) => r.status === 'rejected');
    assert.equal(won.length, 1, `exactly one update wins: ${results.map((r) => r.status === 'fulfilled' ? 'ok' : r.reason?.status).join(',')}`);
    for (const r of lost) assert.ok(r.reason instanceof ConflictError, `loser gets ConflictError, got ${r.reason?.constructor?.name} ${r.reason?.message}`);
    assert.equal(won[0].value.version, 2);
    const cur = await fx.client.beta.agents.retrieve(a.id);
    assert.equal(cur.version, 2);
    assert.equal(cur.description, won[0].value.description);
    const versions = await collect(fx.client.beta.agents.versions.list(a.id));
    assert.equal(versions.length, 2, 'losers created no version');
  });

  test('retrieve with version returns that immutable version; without it the latest', async () => {
    const agent = await createV2();
    const v1 = await fx.client.beta.agents.retrieve(agent.id, { version: 1 });
    assert.equal(v1.version, 1);
    assert.equal(v1.system, null);
    assert.equal(v1.description, null);
    assert.deepEqual(v1.metadata, { team: 'qa', tier: 'gold' });
    const latest = await fx.client.beta.agents.retrieve(agent.id);
    assert.equal(latest.version, 2);
    await assertApiError(fx.client.beta.agents.retrieve(agent.id, { version: 99 }),
      NotFoundError, 404, 'not_found_error', 'unknown version');
  });

  test('update without version is accepted (optimistic check is optional); null clears system', async () => {
    const agent = await createV2();
    const v3 = await fx.client.beta.agents.update(agent.id, { system: null, description: '' });
    assert.equal(v3.version, 3);
    assert.equal(v3.system, null);
    assert.equal(v3.description, null, 'an empty description clears it (null, as when unset)');
    assert.equal(v3.tools.length, 1, 'tools kept when omitted');
    const v4 = await fx.client.beta.agents.update(agent.id, { tools: [] });
    assert.equal(v4.version, 4);
    assert.deepEqual(v4.tools, [], '[] clears tools');
  });

  test('name and model cannot be cleared', async () => {
    const agent = await createV2();
    await assertApiError(fx.client.beta.agents.update(agent.id, { name: null }),
      BadRequestError, 400, 'invalid_request_error', 'clear name');
    await assertApiError(fx.client.beta.agents.update(agent.id, { model: null }),
      BadRequestError, 400, 'invalid_request_error', 'clear model');
    const cur = await fx.client.beta.agents.retrieve(agent.id);
    assert.equal(cur.version, 2, 'rejected updates create no version');
  });

  test('versions.list auto-paginates one Agent per version', async () => {
    const agent = await createV2();
    await fx.client.beta.agents.update(agent.id, { system: null });
    await fx.client.beta.agents.update(agent.id, { tools: [] });
    const all = await collect(fx.client.beta.agents.versions.list(agent.id, { limit: 3 }));
    const versions = all.map((a) => a.version).sort((x, y) => x - y);
    assert.deepEqual(versions, [1, 2, 3, 4]);
    for (const a of all) {
      assert.equal(a.id, agent.id);
      assert.equal(a.type, 'agent');
    }
    const page = await fx.client.beta.agents.versions.list(agent.id, { limit: 3 });
    assert.equal(page.data.length, 3);
    assert.equal(typeof page.next_page, 'string');
  });

  test('list auto-paginates across pages and terminates on next_page null', async () => {
    const made = [];
    for (let i = 0; i < 23; i++) {
      made.push((await fx.client.beta.agents.create({ name: `list-${i}`, model: 'claude-haiku-4-5' })).id);
    }
    const first = await fx.client.beta.agents.list({ limit: 10 });
    assert.equal(first.data.length, 10);
    assert.equal(typeof first.next_page, 'string', 'first page has a cursor');
    const all = await collect(fx.client.beta.agents.list({ limit: 10 }));
    const ids = all.map((a) => a.id);
    assert.equal(new Set(ids).size, ids.length, 'no duplicates across pages');
    for (const id of made) assert.ok(ids.includes(id), `${id} listed`);
    for (const a of all) assert.equal(a.type, 'agent');
    // The default limit is 20 (spec 1.1).
    const def = await fx.client.beta.agents.list();
    assert.equal(def.data.length, 20);
  });

  test('list filters by created_at[gte] / created_at[lte]', async () => {
    const early = await fx.client.beta.agents.create({ name: 'early', model: 'm' });
    await new Promise((r) => setTimeout(r, 1100));
    const late = await fx.client.beta.agents.create({ name: 'late', model: 'm' });
    const after = await collect(fx.client.beta.agents.list({ 'created_at[gte]': late.created_at, limit: 100 }));
    assert.ok(after.some((a) => a.id === late.id), 'gte includes the boundary');
    assert.ok(!after.some((a) => a.id === early.id), 'gte excludes older');
    const before = await collect(fx.client.beta.agents.list({ 'created_at[lte]': early.created_at, limit: 100 }));
    assert.ok(before.some((a) => a.id === early.id), 'lte includes the boundary');
    assert.ok(!before.some((a) => a.id === late.id), 'lte excludes newer');
  });

  test('archive is permanent; archived agents are hidden unless include_archived', async () => {
    const a = await fx.client.beta.agents.create({ name: uniq('arch'), model: 'm' });
    const arch = await fx.client.beta.agents.archive(a.id);
    assert.equal(arch.id, a.id);
    assert.equal(arch.type, 'agent');
    assertTimestamp(arch.archived_at, 'archived_at');
    const got = await fx.client.beta.agents.retrieve(a.id);
    assertTimestamp(got.archived_at, 'archived_at after retrieve');
    const visible = await collect(fx.client.beta.agents.list({ limit: 100 }));
    assert.ok(!visible.some((x) => x.id === a.id), 'archived agent hidden by default');
    const withArchived = await collect(fx.client.beta.agents.list({ limit: 100, include_archived: true }));
    assert.ok(withArchived.some((x) => x.id === a.id), 'include_archived shows it');
  });

  // Regression: the roster is resolved outside the store transaction (a
  // mutator that read the store deadlocked the embedded store).
  test('update sets a multiagent roster naming another agent and self', async () => {
    const helper = await fx.client.beta.agents.create({ name: 'roster helper', model: 'claude-sonnet-4-6' });
    const lead = await fx.client.beta.agents.create({ name: 'roster lead', model: 'claude-sonnet-4-6' });
    const updated = await fx.client.beta.agents.update(lead.id, {
      version: lead.version,
      multiagent: { type: 'coordinator', agents: [helper.id, { type: 'self' }] },
    });
    assert.equal(updated.version, lead.version + 1);
    assert.deepEqual(updated.multiagent, {
      type: 'coordinator',
      agents: [
        { type: 'agent', id: helper.id, version: helper.version },
        { type: 'agent', id: lead.id, version: lead.version + 1 },
      ],
    });
    await assertApiError(
      fx.client.beta.agents.update(lead.id, { version: updated.version, multiagent: { type: 'coordinator', agents: ['agent_nope'] } }),
      BadRequestError, 400, 'invalid_request_error', 'a roster naming an unknown agent');
    const still = await fx.client.beta.agents.retrieve(lead.id);
    assert.equal(still.version, updated.version, 'a refused roster writes no version');
  });

  test('unknown agent ids are 404 NotFoundError', async () => {
    await assertApiError(fx.client.beta.agents.retrieve('agent_doesnotexist'), NotFoundError, 404, 'not_found_error', 'retrieve');
    await assertApiError(fx.client.beta.agents.update('agent_doesnotexist', { name: 'x' }), NotFoundError, 404, 'not_found_error', 'update');
    await assertApiError(fx.client.beta.agents.archive('agent_doesnotexist'), NotFoundError, 404, 'not_found_error', 'archive');
  });
});
