// Conformance: environments (spec 1.2, check 2 of section 9), driven by the official SDK.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ConflictError, NotFoundError, BadRequestError } from '@anthropic-ai/sdk';
import { serverFixture, assertTimestamp, assertApiError, collect, uniq } from './lib/util.mjs';

const PKG_ARRAYS = ['apt', 'cargo', 'gem', 'go', 'npm', 'pip'];
const fx = serverFixture();

function assertFullCloudConfig(cfg) {
  assert.equal(cfg.type, 'cloud');
  assert.ok(cfg.networking && typeof cfg.networking === 'object', `networking echoed: ${JSON.stringify(cfg)}`);
  assert.ok(['unrestricted', 'limited'].includes(cfg.networking.type), `networking.type: ${cfg.networking.type}`);
  assert.ok(cfg.packages && typeof cfg.packages === 'object', `packages echoed: ${JSON.stringify(cfg)}`);
  assert.equal(cfg.packages.type, 'packages');
  for (const k of PKG_ARRAYS) assert.ok(Array.isArray(cfg.packages[k]), `packages.${k} present as an array`);
}

describe('environments', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  test('create self_hosted', async () => {
    const selfHosted = await fx.client.beta.environments.create({
      name: uniq('sh-env'), description: 'workers on our hosts', config: { type: 'self_hosted' }, metadata: { owner: 'qa' },
    });
    assert.equal(selfHosted.type, 'environment');
    assert.match(selfHosted.id, /^env_[A-Za-z0-9]+/);
    assert.match(selfHosted.name, /^sh-env/);
    assert.equal(selfHosted.description, 'workers on our hosts');
    assert.deepEqual(selfHosted.config, { type: 'self_hosted' }, 'self_hosted config has nothing else');
    assert.deepEqual(selfHosted.metadata, { owner: 'qa' });
    assertTimestamp(selfHosted.created_at, 'created_at');
    assertTimestamp(selfHosted.updated_at, 'updated_at');
    assert.equal(selfHosted.archived_at, null);
    const got = await fx.client.beta.environments.retrieve(selfHosted.id);
    assert.deepEqual(got, selfHosted, 'retrieve returns the same object');
  });

  test('description is present when unset (string per PY, "null when unset" per TS 1.10.0)', async () => {
    const e = await fx.client.beta.environments.create({ name: uniq('nodesc'), config: { type: 'self_hosted' } });
    assert.ok('description' in e, 'description key present');
    // Warren answers null when unset (the TS SDK 1.10.0 type), never an empty string.
    assert.equal(e.description, null, `description: ${JSON.stringify(e.description)}`);
    assert.deepEqual(e.metadata, {});
  });

  test('create cloud with a minimal config echoes full networking and packages', async () => {
    const e = await fx.client.beta.environments.create({ name: 'cloud-min', config: { type: 'cloud' } });
    assertFullCloudConfig(e.config);
    for (const k of PKG_ARRAYS) assert.deepEqual(e.config.packages[k], [], `packages.${k} empty`);
  });

  test('create cloud with limited networking and packages echoes every field', async () => {
    const e = await fx.client.beta.environments.create({
      name: 'cloud-full',
      config: {
        type: 'cloud',
        networking: { type: 'limited', allowed_hosts: ['example.com', 'pypi.org'] },
        packages: { type: 'packages', pip: ['requests==2.32.0'], npm: ['left-pad'] },
      },
    });
    assertFullCloudConfig(e.config);
    assert.deepEqual(e.config.networking, {
      type: 'limited', allowed_hosts: ['example.com', 'pypi.org'], allow_mcp_servers: false, allow_package_managers: false,
    });
    assert.deepEqual(e.config.packages, {
      type: 'packages', apt: [], cargo: [], gem: [], go: [], npm: ['left-pad'], pip: ['requests==2.32.0'],
    });
    const got = await fx.client.beta.environments.retrieve(e.id);
    assert.deepEqual(got.config, e.config);
  });

  test('a duplicate name is 409 ConflictError', async () => {
    const first = await fx.client.beta.environments.create({ name: uniq('dup'), config: { type: 'self_hosted' } });
    const err = await assertApiError(
      fx.client.beta.environments.create({ name: first.name, config: { type: 'self_hosted' } }),
      ConflictError, 409, 'invalid_request_error', 'duplicate environment name');
    assert.ok(err.message.length > 0);
    const all = await collect(fx.client.beta.environments.list({ include_archived: true, limit: 100 }));
    assert.equal(all.filter((e) => e.name === first.name).length, 1, 'no second row');
  });

  test('self_hosted with networking is rejected', async () => {
    await assertApiError(
      fx.client.beta.environments.create({ name: uniq('bad'), config: { type: 'self_hosted', networking: { type: 'unrestricted' } } }),
      BadRequestError, 400, 'invalid_request_error', 'self_hosted + networking');
  });

  test('limited allowed_hosts the egress proxy cannot enforce are 400, naming the entry', async () => {
    for (const [host, why] of [['https://pypi.org/simple', /not a URL/], ['*', /not a valid host name|wildcard/],
      ['*.com', /two labels/], ['pypi.org:443', /no port/], ['a.*.org', /leading/]]) {
      const err = await assertApiError(
        fx.client.beta.environments.create({
          name: uniq('hosts'), config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['ok.example.com', host] } },
        }),
        BadRequestError, 400, 'invalid_request_error', `allowed host ${host}`);
      assert.match(err.message, /config\.networking\.allowed_hosts\[1\]/);
      assert.match(err.message, why);
    }
    const ok = await fx.client.beta.environments.create({
      name: uniq('hosts-ok'),
      config: { type: 'cloud', networking: { type: 'limited', allowed_hosts: ['*.pythonhosted.org', 'Example.COM', '203.0.113.7'] } },
    });
    assert.deepEqual(ok.config.networking.allowed_hosts, ['*.pythonhosted.org', 'Example.COM', '203.0.113.7'], 'echoed as sent');
  });

  test('list auto-paginates', async () => {
    const made = [];
    for (let i = 0; i < 7; i++) {
      made.push((await fx.client.beta.environments.create({ name: `page-env-${i}`, config: { type: 'self_hosted' } })).id);
    }
    const first = await fx.client.beta.environments.list({ limit: 2 });
    assert.equal(first.data.length, 2);
    assert.equal(typeof first.next_page, 'string');
    const all = await collect(fx.client.beta.environments.list({ limit: 2 }));
    const ids = all.map((e) => e.id);
    assert.equal(new Set(ids).size, ids.length, 'no duplicates');
    for (const id of made) assert.ok(ids.includes(id), `${id} listed`);
    for (const e of all) assert.equal(e.type, 'environment');
  });

  test('update changes name/description and patches metadata (null and "" delete)', async () => {
    const e = await fx.client.beta.environments.create({
      name: uniq('upd'), config: { type: 'self_hosted' }, metadata: { a: '1', b: '2', c: '3' },
    });
    const u = await fx.client.beta.environments.update(e.id, {
      name: `${e.name}-renamed`, description: 'new text', metadata: { a: null, b: '', d: '4' },
    });
    assert.equal(u.id, e.id);
    assert.equal(u.name, `${e.name}-renamed`);
    assert.equal(u.description, 'new text');
    assert.deepEqual(u.metadata, { c: '3', d: '4' });
    assert.deepEqual(u.config, { type: 'self_hosted' });
    assertTimestamp(u.updated_at, 'updated_at');
    const got = await fx.client.beta.environments.retrieve(e.id);
    assert.deepEqual(got.metadata, { c: '3', d: '4' });
    assert.equal(got.name, `${e.name}-renamed`);
  });

  test('update to a name that is taken is 409', async () => {
    const taken = await fx.client.beta.environments.create({ name: uniq('owner'), config: { type: 'self_hosted' } });
    const e = await fx.client.beta.environments.create({ name: uniq('taken'), config: { type: 'self_hosted' } });
    await assertApiError(fx.client.beta.environments.update(e.id, { name: taken.name }),
      ConflictError, 409, 'invalid_request_error', 'rename onto existing name');
  });

  test('archive hides the environment from list unless include_archived', async () => {
    const e = await fx.client.beta.environments.create({ name: uniq('arch'), config: { type: 'self_hosted' } });
    const a = await fx.client.beta.environments.archive(e.id);
    assert.equal(a.id, e.id);
    assertTimestamp(a.archived_at, 'archived_at');
    const visible = await collect(fx.client.beta.environments.list({ limit: 100 }));
    assert.ok(!visible.some((x) => x.id === e.id));
    const all = await collect(fx.client.beta.environments.list({ limit: 100, include_archived: true }));
    assert.ok(all.some((x) => x.id === e.id));
  });

  test('delete answers {id, type:"environment_deleted"}; the environment is gone', async () => {
    const e = await fx.client.beta.environments.create({ name: uniq('del'), config: { type: 'cloud' } });
    const d = await fx.client.beta.environments.delete(e.id);
    assert.deepEqual(d, { id: e.id, type: 'environment_deleted' });
    await assertApiError(fx.client.beta.environments.retrieve(e.id), NotFoundError, 404, 'not_found_error', 'retrieve deleted');
    await assertApiError(fx.client.beta.environments.delete(e.id), NotFoundError, 404, 'not_found_error', 'delete twice');
    const all = await collect(fx.client.beta.environments.list({ limit: 100, include_archived: true }));
    assert.ok(!all.some((x) => x.id === e.id));
    // The name is free again.
    const again = await fx.client.beta.environments.create({ name: e.name, config: { type: 'self_hosted' } });
    assert.notEqual(again.id, e.id);
  });
});
