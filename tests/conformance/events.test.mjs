// Conformance: sending and listing events (spec 1.4 and 2.1, check 4 of section 9).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, NotFoundError } from '@anthropic-ai/sdk';
import { serverFixture, assertApiError, collect, settle } from './lib/util.mjs';

const fx = serverFixture();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

describe('events: send and list', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agent, env, cloudEnv;
  // Every test uses a session of its own: none depends on another's events.
  const newSession = async () => (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
  before(async () => {
    agent = await fx.client.beta.agents.create({ name: 'events agent', model: 'claude-sonnet-4-6' });
    env = await fx.client.beta.environments.create({ name: 'events-env', config: { type: 'self_hosted' } });
    cloudEnv = await fx.client.beta.environments.create({ name: 'events-cloud', config: { type: 'cloud' } });
  });

  test('send user.message echoes the event with a sevt_ id', async () => {
    const sid = await newSession();
    const res = await fx.client.beta.sessions.events.send(sid, { events: [msg('hello')] });
    assert.ok(Array.isArray(res.data), 'response is {data:[...]}');
    assert.equal(res.data.length, 1);
    const first = res.data[0];
    assert.match(first.id, /^sevt_[A-Za-z0-9]+/);
    assert.equal(first.type, 'user.message');
    assert.deepEqual(first.content, [{ type: 'text', text: 'hello' }]);
    assert.ok('processed_at' in first, 'processed_at present (null or timestamp)');
    assert.equal(first.processed_at, null, 'the echo of a send is the queued event (docs/API.md)');
  });

  test('several events in one request keep their order and get distinct ids', async () => {
    const sid = await newSession();
    const res = await fx.client.beta.sessions.events.send(sid, { events: [msg('a'), msg('b'), msg('c')] });
    assert.equal(res.data.length, 3);
    assert.deepEqual(res.data.map((e) => e.content[0].text), ['a', 'b', 'c']);
    assert.equal(new Set(res.data.map((e) => e.id)).size, 3);
  });

  test('list returns the persisted events in send order (asc) and reversed (desc)', async () => {
    const sid = await newSession();
    const first = (await fx.client.beta.sessions.events.send(sid, { events: [msg('hello')] })).data[0];
    await fx.client.beta.sessions.events.send(sid, { events: [msg('a'), msg('b'), msg('c')] });
    await settle(fx.client, sid);
    const asc = await collect(fx.client.beta.sessions.events.list(sid, { order: 'asc' }));
    const texts = asc.filter((e) => e.type === 'user.message').map((e) => e.content[0].text);
    assert.deepEqual(texts, ['hello', 'a', 'b', 'c']);
    assert.equal(asc.find((e) => e.type === 'user.message').id, first.id);
    const desc = await collect(fx.client.beta.sessions.events.list(sid, { order: 'desc' }));
    assert.deepEqual(desc.map((e) => e.id), asc.map((e) => e.id).reverse());
    const dflt = await collect(fx.client.beta.sessions.events.list(sid));
    assert.deepEqual(dflt.map((e) => e.id), asc.map((e) => e.id), 'default order is asc');
    for (const e of asc) {
      assert.equal(typeof e.id, 'string');
      assert.equal(typeof e.type, 'string');
      assert.ok('processed_at' in e);
    }
  });

  test('user.message + system.message, user.interrupt and user.define_outcome are accepted', async () => {
    // system.message needs a model that supports mid-conversation system turns (Opus 4.8, spec 2.1).
    const opus = await fx.client.beta.agents.create({ name: 'opus agent', model: 'claude-opus-4-8' });
    const s = (await fx.client.beta.sessions.create({ agent: opus.id, environment_id: env.id })).id;
    const res = await fx.client.beta.sessions.events.send(s, {
      events: [
        msg('with a system note'),
        { type: 'system.message', content: [{ type: 'text', text: 'system note' }] },
      ],
    });
    assert.deepEqual(res.data.map((e) => e.type), ['user.message', 'system.message']);
    const more = [
      { type: 'user.interrupt' },
      { type: 'user.define_outcome', description: 'write a haiku', rubric: { type: 'text', content: '5-7-5' }, max_iterations: 2 },
    ];
    for (const ev of more) {
      const r = await fx.client.beta.sessions.events.send(s, { events: [ev] });
      assert.equal(r.data.length, 1, ev.type);
      assert.equal(r.data[0].type, ev.type);
      if (ev.type === 'user.define_outcome') assert.match(r.data[0].outcome_id, /^outc_/, 'define_outcome echo adds outcome_id');
    }
  });

  test('user.tool_result is rejected on a cloud environment', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: cloudEnv.id })).id;
    await assertApiError(
      fx.client.beta.sessions.events.send(s, { events: [{ type: 'user.tool_result', tool_use_id: 'sevt_x', content: [] }] }),
      BadRequestError, 400, 'invalid_request_error', 'tool_result on cloud');
    const list = await collect(fx.client.beta.sessions.events.list(s));
    assert.equal(list.filter((e) => e.type === 'user.tool_result').length, 0, 'nothing persisted');
  });

  test('unknown and server-only event types are 400 and persist nothing', async () => {
    const sid = await newSession();
    await settle(fx.client, sid);
    const before = (await collect(fx.client.beta.sessions.events.list(sid))).length;
    await assertApiError(fx.client.beta.sessions.events.send(sid, { events: [{ type: 'user.bogus' }] }),
      BadRequestError, 400, 'invalid_request_error', 'unknown type');
    await assertApiError(fx.client.beta.sessions.events.send(sid, { events: [{ type: 'agent.message', content: [{ type: 'text', text: 'x' }] }] }),
      BadRequestError, 400, 'invalid_request_error', 'server-only type');
    // A valid event followed by a bad one: the whole request is rejected.
    await assertApiError(fx.client.beta.sessions.events.send(sid, { events: [msg('half'), { type: 'user.bogus' }] }),
      BadRequestError, 400, 'invalid_request_error', 'mixed batch');
    const after = await collect(fx.client.beta.sessions.events.list(sid));
    assert.equal(after.length, before, 'no event persisted by rejected requests');
    assert.ok(!after.some((e) => e.type === 'user.message' && e.content?.[0]?.text === 'half'));
  });

  test('types[] filter', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
    await fx.client.beta.sessions.events.send(s, { events: [msg('one')] });
    await fx.client.beta.sessions.events.send(s, { events: [{ type: 'user.interrupt' }] });
    await fx.client.beta.sessions.events.send(s, { events: [msg('two')] });
    const onlyMsgs = await collect(fx.client.beta.sessions.events.list(s, { types: ['user.message'] }));
    assert.deepEqual(onlyMsgs.map((e) => e.content[0].text), ['one', 'two']);
    const onlyInt = await collect(fx.client.beta.sessions.events.list(s, { types: ['user.interrupt'] }));
    assert.equal(onlyInt.length, 1);
    assert.equal(onlyInt[0].type, 'user.interrupt');
    const both = await collect(fx.client.beta.sessions.events.list(s, { types: ['user.message', 'user.interrupt'] }));
    assert.deepEqual(both.map((e) => e.type), ['user.message', 'user.interrupt', 'user.message']);
    const agentOnly = await collect(fx.client.beta.sessions.events.list(s, { types: ['agent.message'] }));
    for (const e of agentOnly) assert.equal(e.type, 'agent.message', 'only the requested type');
    const noneSuch = await collect(fx.client.beta.sessions.events.list(s, { types: ['span.outcome_evaluation_end'] }));
    assert.deepEqual(noneSuch, []);
  });

  test('auto-pagination across pages, both orders', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
    const sent = [];
    for (let i = 0; i < 5; i++) {
      const r = await fx.client.beta.sessions.events.send(s, { events: [0, 1, 2, 3, 4].map((j) => msg(`m${i * 5 + j}`)) });
      sent.push(...r.data.map((e) => e.id));
    }
    const page = await fx.client.beta.sessions.events.list(s, { limit: 7 });
    assert.equal(page.data.length, 7);
    assert.equal(typeof page.next_page, 'string');
    await settle(fx.client, s);
    const userIds = (evs) => evs.filter((e) => e.type === 'user.message').map((e) => e.id);
    const asc = await collect(fx.client.beta.sessions.events.list(s, { limit: 7, order: 'asc' }));
    assert.deepEqual(userIds(asc), sent);
    const desc = await collect(fx.client.beta.sessions.events.list(s, { limit: 4, order: 'desc' }));
    assert.deepEqual(desc.map((e) => e.id), asc.map((e) => e.id).reverse());
    assert.deepEqual(userIds(desc), [...sent].reverse());
    const filtered = await collect(fx.client.beta.sessions.events.list(s, { limit: 3, types: ['user.message'] }));
    assert.equal(filtered.length, 25);
  });

  test('concurrent sends to one session: every event persisted once, list order = stream order', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
    const stream = await fx.client.beta.sessions.events.stream(s);
    const seen = [];
    const done = (async () => { for await (const e of stream) seen.push(e); })();
    const res = await Promise.all(Array.from({ length: 40 }, (_, i) =>
      fx.client.beta.sessions.events.send(s, { events: [msg(`c${i}a`), msg(`c${i}b`)] })));
    const sentIds = res.flatMap((r) => r.data.map((e) => e.id));
    assert.equal(new Set(sentIds).size, 80, 'distinct ids');
    const listed = (await collect(fx.client.beta.sessions.events.list(s, { order: 'asc' }))).filter((e) => e.type === 'user.message');
    const listedIds = listed.map((e) => e.id);
    assert.deepEqual([...listedIds].sort(), [...sentIds].sort(), 'every acknowledged event listed exactly once');
    for (const r of res) {
      const [a, b] = r.data.map((e) => listedIds.indexOf(e.id));
      assert.equal(b, a + 1, 'the events of one request are contiguous and in order');
    }
    const t0 = Date.now();
    const queued = () => seen.filter((e) => e.type === 'user.message' && e.processed_at === null);
    while (queued().length < 80 && Date.now() - t0 < 30_000) await new Promise((r) => setTimeout(r, 10));
    const streamedIds = queued().map((e) => e.id);
    assert.deepEqual(streamedIds, listedIds, 'stream order equals the persisted order');
    stream.controller.abort();
    await done.catch(() => {});
  });

  test('a ~6 MB user.message (under the 8 MiB body limit) round-trips intact', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
    // Three 1,000,000-character text blocks of a 2-byte UTF-8 character. (Warren caps
    // one text block at 1 Mi characters; the spec sets no such limit.)
    const content = [0, 1, 2].map((i) => ({ type: 'text', text: `${i}` + 'é'.repeat(999_999) }));
    const sent = (await fx.client.beta.sessions.events.send(s, { events: [{ type: 'user.message', content }] })).data[0];
    const listed = (await collect(fx.client.beta.sessions.events.list(s))).filter((e) => e.type === 'user.message');
    assert.equal(listed.length, 1);
    assert.equal(listed[0].id, sent.id);
    assert.equal(listed[0].content.length, 3);
    for (let i = 0; i < 3; i++) assert.ok(listed[0].content[i].text === content[i].text, `block ${i} unchanged (UTF-8 preserved)`);
  });

  test('created_at[...] filters compare with processed_at', async () => {
    const s = (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
    await fx.client.beta.sessions.events.send(s, { events: [msg('early')] });
    await settle(fx.client, s);
    await new Promise((r) => setTimeout(r, 50));
    await fx.client.beta.sessions.events.send(s, { events: [msg('late')] });
    await settle(fx.client, s);
    const all = await collect(fx.client.beta.sessions.events.list(s, { order: 'asc' }));
    const late = all.find((e) => e.type === 'user.message' && e.content[0].text === 'late');
    assert.equal(typeof late.processed_at, 'string', 'processed by now');
    const gte = await collect(fx.client.beta.sessions.events.list(s, { 'created_at[gte]': late.processed_at }));
    assert.ok(gte.some((e) => e.id === late.id), 'gte includes the boundary');
    assert.ok(!gte.some((e) => e.type === 'user.message' && e.content[0].text === 'early'), 'gte excludes earlier');
    for (const e of gte) assert.ok(e.processed_at && Date.parse(e.processed_at) >= Date.parse(late.processed_at));
    const lt = await collect(fx.client.beta.sessions.events.list(s, { 'created_at[lt]': late.processed_at }));
    assert.ok(!lt.some((e) => e.id === late.id), 'lt excludes the boundary');
    assert.ok(lt.some((e) => e.type === 'user.message' && e.content[0].text === 'early'), 'lt includes earlier');
  });

  test('a cursor reused with the other order is 400', async () => {
    const sid = await newSession();
    await fx.client.beta.sessions.events.send(sid, { events: [msg('one'), msg('two')] });
    const page = await fx.client.beta.sessions.events.list(sid, { limit: 1, order: 'asc' });
    assert.equal(typeof page.next_page, 'string');
    await assertApiError(fx.client.beta.sessions.events.list(sid, { limit: 1, order: 'desc', page: page.next_page }),
      BadRequestError, 400, 'invalid_request_error', 'cursor with other order');
  });

  test('events of an unknown session are 404', async () => {
    await assertApiError(fx.client.beta.sessions.events.send('sesn_nope', { events: [msg('x')] }),
      NotFoundError, 404, 'not_found_error', 'send');
    await assertApiError(fx.client.beta.sessions.events.list('sesn_nope'), NotFoundError, 404, 'not_found_error', 'list');
  });
});
