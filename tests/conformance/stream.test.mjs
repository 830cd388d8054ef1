// Conformance: the SSE event stream (spec 1.4 "SSE framing"/"Stream semantics", section 8,
// check 5 of section 9). The engine is a later issue: only user-event echoes and
// session.deleted are required here, not the second (processed) echo or agent.* events.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { BadRequestError, NotFoundError } from '@anthropic-ai/sdk';
import { serverFixture, assertApiError, waitFor, withTimeout, settle } from './lib/util.mjs';
import { openSse } from './lib/sse.mjs';

const fx = serverFixture();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

/** Drains an SDK Stream in the background. */
function drain(stream) {
  const st = { events: [], ended: false, error: null };
  st.done = (async () => {
    try {
      for await (const ev of stream) st.events.push(ev);
    } catch (e) {
      st.error = e;
    } finally {
      st.ended = true;
    }
  })();
  return st;
}

describe('events: stream', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agent, env;
  const newSession = async () => (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
  before(async () => {
    agent = await fx.client.beta.agents.create({ name: 'stream agent', model: 'claude-sonnet-4-6' });
    env = await fx.client.beta.environments.create({ name: 'stream-env', config: { type: 'self_hosted' } });
  });

  test('the SDK stream yields a sent user.message; deleting the session ends the iteration after session.deleted', async () => {
    const sid = await newSession();
    const stream = await withTimeout(fx.client.beta.sessions.events.stream(sid), 30_000,
      'stream() must resolve once headers arrive, before any event');
    const st = drain(stream);
    const sent = (await fx.client.beta.sessions.events.send(sid, { events: [msg('streamed hello')] })).data[0];
    const got = await waitFor(() => st.events.find((e) => e.id === sent.id), { timeoutMs: 5000, what: 'echo on the stream' });
    assert.equal(got.type, 'user.message');
    assert.deepEqual(got.content, [{ type: 'text', text: 'streamed hello' }]);
    const firstEcho = st.events.find((e) => e.id === sent.id);
    assert.equal(firstEcho.processed_at, null, 'the first echo of a user event is queued (processed_at null)');

    await settle(fx.client, sid); // delete while running is rejected (spec 1.3)
    await fx.client.beta.sessions.delete(sid);
    await withTimeout(st.done, 30_000, 'iteration ends after session.deleted');
    assert.equal(st.error, null, `stream ended cleanly: ${st.error}`);
    assert.equal(st.events.at(-1).type, 'session.deleted', `last event: ${JSON.stringify(st.events.at(-1))}`);
    for (const e of st.events) assert.equal(typeof e.type, 'string', 'type inside data');
  });

  test('two concurrent streams each receive the event; event_deltas[] is accepted', async () => {
    const sid = await newSession();
    const a = drain(await fx.client.beta.sessions.events.stream(sid));
    const b = drain(await fx.client.beta.sessions.events.stream(sid, { event_deltas: ['agent.message', 'agent.thinking'] }));
    const sent = (await fx.client.beta.sessions.events.send(sid, { events: [msg('fan'), msg('out')] })).data;
    for (const st of [a, b]) {
      await waitFor(() => sent.every((s) => st.events.some((e) => e.id === s.id)), { what: 'both echoes' });
      const order = st.events.filter((e) => e.processed_at === null && sent.some((s) => s.id === e.id)).map((e) => e.content[0].text);
      assert.deepEqual(order, ['fan', 'out'], 'stream order = send order');
    }
    await settle(fx.client, sid);
    await fx.client.beta.sessions.delete(sid);
    await withTimeout(Promise.all([a.done, b.done]), 30_000, 'both streams end');
  });

  test('wire framing: text/event-stream, event: equals data.type, id: equals data.id', async () => {
    const sid = await newSession();
    const s = await openSse(fx.srv.url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': fx.srv.apiKey });
    assert.equal(s.status, 200);
    assert.match(s.headers['content-type'], /^text\/event-stream/);
    const sent = (await fx.client.beta.sessions.events.send(sid, { events: [msg('framed')] })).data[0];
    const f = await waitFor(() => s.frames.find((x) => x.event === 'user.message'), { what: 'user.message frame' });
    const data = JSON.parse(f.data);
    assert.equal(data.type, f.event, 'event: line equals the payload type');
    assert.equal(data.id, sent.id);
    assert.equal(f.id, sent.id, 'id: line carries the sevt_ id (spec 8)');
    await settle(fx.client, sid);
    await fx.client.beta.sessions.delete(sid);
    await withTimeout(s.ended, 30_000, 'server closes the stream after session.deleted');
    const del = s.frames.find((x) => x.event === 'session.deleted');
    assert.ok(del, 'session.deleted frame');
    assert.equal(JSON.parse(del.data).type, 'session.deleted');
    for (const fr of s.frames) {
      if (fr.event === null) continue;
      assert.equal(JSON.parse(fr.data).type, fr.event, `frame ${fr.event}: data.type matches`);
    }
  });

  test('no replay: events sent before connecting are not streamed', async () => {
    const sid = await newSession();
    const before = (await fx.client.beta.sessions.events.send(sid, { events: [msg('before')] })).data[0];
    await settle(fx.client, sid); // the engine's later echo of `before` would be live, not a replay
    const st = drain(await fx.client.beta.sessions.events.stream(sid));
    const afterEv = (await fx.client.beta.sessions.events.send(sid, { events: [msg('after')] })).data[0];
    await waitFor(() => st.events.some((e) => e.id === afterEv.id), { what: 'live event' });
    assert.ok(!st.events.some((e) => e.id === before.id), 'earlier event not replayed without Last-Event-ID');
    await settle(fx.client, sid);
    await fx.client.beta.sessions.delete(sid);
    await withTimeout(st.done, 30_000, 'stream ends');
  });

  test('Last-Event-ID replays persisted events after that id, then goes live (spec 8)', async () => {
    const sid = await newSession();
    const sent = (await fx.client.beta.sessions.events.send(sid, { events: [msg('r1'), msg('r2'), msg('r3')] })).data;
    await settle(fx.client, sid);
    const s = await openSse(fx.srv.url, `/v1/sessions/${sid}/events/stream`,
      { 'x-api-key': fx.srv.apiKey, 'last-event-id': sent[0].id });
    assert.equal(s.status, 200);
    await waitFor(() => s.frames.filter((f) => f.event === 'user.message').length >= 2, { what: 'replayed frames' });
    const live = (await fx.client.beta.sessions.events.send(sid, { events: [msg('r4')] })).data[0];
    await waitFor(() => s.frames.some((f) => f.id === live.id), { what: 'live frame after replay' });
    const ids = s.frames.filter((f) => f.event === 'user.message').map((f) => JSON.parse(f.data).id);
    assert.ok(!ids.includes(sent[0].id), 'the Last-Event-ID event itself is not replayed');
    assert.deepEqual(ids.filter((id, i) => ids.indexOf(id) === i), [sent[1].id, sent[2].id, live.id]);
    s.close();
  });

  test('Last-Event-ID over a long history: every event after it exactly once, in log order, then live (paged replay)', async () => {
    const sid = await newSession();
    for (let i = 0; i < 25; i++) {
      await fx.client.beta.sessions.events.send(sid, { events: Array.from({ length: 100 }, (_, j) => msg(`h${i}-${j}`)) });
    }
    await settle(fx.client, sid);
    const log = [];
    for await (const e of fx.client.beta.sessions.events.list(sid, { limit: 1000 })) log.push(e.id);
    assert.ok(log.length > 2500, `a long history (${log.length} events)`);
    const s = await openSse(fx.srv.url, `/v1/sessions/${sid}/events/stream`,
      { 'x-api-key': fx.srv.apiKey, 'last-event-id': log[10] });
    assert.equal(s.status, 200);
    await waitFor(() => s.frames.filter((f) => f.id).length >= log.length - 11, { timeoutMs: 60_000, what: 'the whole replay' });
    const live = (await fx.client.beta.sessions.events.send(sid, { events: [msg('after the long replay')] })).data[0];
    await waitFor(() => s.frames.some((f) => f.id === live.id), { what: 'live frame after the replay' });
    const ids = s.frames.filter((f) => f.id).map((f) => f.id);
    // The replay is the log after the given id, in order, each once; live
    // frames (the new event and the engine's echoes of it) follow.
    assert.deepEqual(ids.slice(0, log.length - 11), log.slice(11));
    assert.equal(ids.indexOf(live.id), log.length - 11, 'the live event comes right after the replay');
    s.close();
  });

  test('an unknown event_deltas[] value is 400; an unknown session is 404', async () => {
    const sid = await newSession();
    await assertApiError(fx.client.beta.sessions.events.stream(sid, { event_deltas: ['agent.tool_use'] }),
      BadRequestError, 400, 'invalid_request_error', 'bad event_deltas');
    await assertApiError(fx.client.beta.sessions.events.stream('sesn_nope'), NotFoundError, 404, 'not_found_error', 'unknown session');
  });

  test('an idle stream stays open for minutes: pings every ~15 s, never surfaced by the SDK, events still delivered after 40 s', { timeout: 90_000 }, async () => {
    const sid = await newSession();
    const raw = await openSse(fx.srv.url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': fx.srv.apiKey });
    let rawEnded = false;
    const opened = Date.now();
    raw.ended.then(() => { rawEnded = `closed by the server after ${Date.now() - opened} ms`; });
    const st = drain(await fx.client.beta.sessions.events.stream(sid));
    const ping = await waitFor(() => raw.frames.find((f) => f.event === 'ping'), { timeoutMs: 60_000, intervalMs: 100, what: 'ping frame' });
    assert.deepEqual(JSON.parse(ping.data), { type: 'ping' });
    await new Promise((r) => setTimeout(r, 40_000 - (Date.now() - opened)));
    assert.equal(rawEnded, false, 'the server keeps an idle stream open (~40 s)');
    assert.ok(raw.frames.filter((f) => f.event === 'ping').length >= 2, 'a ping every ~15 s of silence');
    assert.equal(st.ended, false, `the SDK stream is still open after ~40 s (error: ${st.error})`);
    const sent = (await fx.client.beta.sessions.events.send(sid, { events: [msg('still listening')] })).data[0];
    await waitFor(() => st.events.some((e) => e.id === sent.id), { what: 'event delivered on the long-lived SDK stream' });
    await waitFor(() => raw.frames.some((f) => f.id === sent.id), { what: 'event delivered on the long-lived raw stream' });
    assert.ok(!st.events.some((e) => e.type === 'ping'), 'the SDK skips pings');
    raw.close();
    await settle(fx.client, sid);
    await fx.client.beta.sessions.delete(sid);
    await withTimeout(st.done, 30_000, 'stream ends');
  });
});
