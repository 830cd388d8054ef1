// The multiplexed event stream GET /v1/warren/stream (docs/API.md,
// "Multiplexed stream"), read the way the web console reads it: fetch() and
// a ReadableStream SSE parser, the API key in a header. Setup uses the
// official SDK against a real `warren serve`.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { serverFixture, waitFor, settle } from './lib/util.mjs';
import { envelopeProblems } from './lib/http.mjs';
import { startServer } from './lib/server.mjs';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

// Session frames are coalesced (docs/API.md): a burst of changes is one frame
// with the latest state. An instant scripted model can go running -> idle
// inside one burst on a loaded machine, so every model call here takes 1 s
// (a timer in the scripted provider) and "running" is a state that lasts.
const fx = serverFixture(() => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warren-mux-cfg-'));
  const config = path.join(dir, 'warren.json');
  writeFileSync(config, JSON.stringify({ model: { latency_ms: 1000 } }));
  return { extraArgs: ['--config', config] };
});
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

/** Opens the stream with fetch; frames are parsed as they arrive. */
async function openMux(query, { key = fx.srv.apiKey } = {}) {
  const ctrl = new AbortController();
  const headers = key ? { 'x-api-key': key } : {};
  const res = await fetch(`${fx.srv.url}/v1/warren/stream?${query}`, { headers, signal: ctrl.signal });
  const s = { status: res.status, headers: Object.fromEntries(res.headers), frames: [], pings: 0, text: '', ended: false };
  s.close = () => ctrl.abort();
  if (res.status !== 200) {
    s.text = await res.text();
    s.json = JSON.parse(s.text);
    return s;
  }
  assert.match(res.headers.get('content-type'), /text\/event-stream/);
  s.done = (async () => {
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const f = { event: 'message', id: null, data: '' };
          let comment = false;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comment = true;
            else if (line.startsWith('event: ')) f.event = line.slice(7);
            else if (line.startsWith('id: ')) f.id = line.slice(4);
            else if (line.startsWith('data: ')) f.data += line.slice(6);
          }
          if (comment && !f.data) { s.pings++; continue; }
          f.json = JSON.parse(f.data);
          s.frames.push(f);
        }
      }
    } catch { /* aborted */ }
    s.ended = true;
  })();
  return s;
}

const eventsOf = (s, sid) => s.frames.filter((f) => f.event === 'session_event' && f.json.session_id === sid);

async function listAll(sid) {
  const out = [];
  for await (const e of fx.client.beta.sessions.events.list(sid)) out.push(e);
  return out;
}

describe('multiplexed stream', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agent, env;
  const newSession = async (title) =>
    (await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id, ...(title ? { title } : {}) })).id;
  before(async () => {
    agent = await fx.client.beta.agents.create({ name: 'mux agent', model: 'claude-sonnet-4-6' });
    env = await fx.client.beta.environments.create({ name: `mux-env-${process.pid}`, config: { type: 'self_hosted' } });
  });

  test('replay then live, and a reconnect with cursors, without gap or duplicate', async () => {
    const a = await newSession(), b = await newSession();
    await fx.client.beta.sessions.events.send(a, { events: [msg('a1')] });
    await fx.client.beta.sessions.events.send(b, { events: [msg('b1')] });
    await settle(fx.client, a);
    await settle(fx.client, b);

    const first = await openMux(`session=${a}&session=${b}`);
    assert.equal(first.status, 200);
    // History first (the whole of it: no cursor).
    const histA = await listAll(a), histB = await listAll(b);
    await waitFor(() => eventsOf(first, a).length >= histA.length && eventsOf(first, b).length >= histB.length,
      { what: 'history replayed' });
    // Then live.
    await fx.client.beta.sessions.events.send(a, { events: [msg('a2 live')] });
    await waitFor(() => eventsOf(first, a).some((f) => f.json.event.content?.[0]?.text === 'a2 live'), { what: 'live event' });
    for (const f of first.frames.filter((x) => x.event === 'session_event'))
      assert.equal(f.id, `${f.json.session_id}@${f.json.event.id}`, 'SSE id is <session_id>@<event_id>');
    await settle(fx.client, a);
    // Cursors: the last id seen per session.
    const cursor = (sid) => eventsOf(first, sid).at(-1).json.event.id;
    const cA = cursor(a), cB = cursor(b);
    first.close();
    await first.done;

    // While disconnected, both sessions move on.
    await fx.client.beta.sessions.events.send(a, { events: [msg('a3 offline')] });
    await fx.client.beta.sessions.events.send(b, { events: [msg('b2 offline')] });
    const second = await openMux(`session=${a}@${cA}&session=${b}@${cB}`);
    assert.equal(second.status, 200);
    await fx.client.beta.sessions.events.send(b, { events: [msg('b3 live again')] });
    await settle(fx.client, a);
    await settle(fx.client, b);
    const fullA = await listAll(a), fullB = await listAll(b);
    await waitFor(() => {
      const n = (sid) => eventsOf(first, sid).length + eventsOf(second, sid).length;
      return n(a) >= fullA.length && n(b) >= fullB.length;
    }, { timeoutMs: 60_000, what: 'all events over the two connections' });
    for (const [sid, full] of [[a, fullA], [b, fullB]]) {
      const all = [...eventsOf(first, sid), ...eventsOf(second, sid)].map((f) => f.json.event);
      // As on the per-session stream (spec: client-sent events appear on
      // the stream twice), a user event seen live is echoed twice with one
      // id: queued (processed_at null), then processed, maybe after other
      // events of its session. Any other repeat would be a duplicate.
      const got = [];
      const at = new Map();
      for (const e of all) {
        if (at.has(e.id)) {
          const prev = got[at.get(e.id)];
          assert.ok(e.type.startsWith('user.'), `repeat of ${e.id} (${e.type}) is only a user event's echo`);
          assert.equal(prev.processed_at, null, `repeat of ${e.id} is only the processed echo`);
          assert.notEqual(e.processed_at, null, `repeat of ${e.id} is only the processed echo`);
          got[at.get(e.id)] = e;
          continue;
        }
        at.set(e.id, got.length);
        got.push(e);
      }
      assert.deepEqual(got.map((e) => e.id), full.map((e) => e.id), `session ${sid}: every event once, in order`);
      // The event objects exactly as the list returns them.
      assert.deepEqual(got, JSON.parse(JSON.stringify(full)));
    }
    second.close();
    await second.done;
  });

  test('an unknown session gets an error frame and the stream goes on; more than 50 is 400', async () => {
    const a = await newSession();
    const s = await openMux(`session=sesn_does_not_exist&session=${a}`);
    assert.equal(s.status, 200);
    await waitFor(() => s.frames.some((f) => f.event === 'error'), { what: 'error frame' });
    const err = s.frames.find((f) => f.event === 'error').json;
    assert.equal(err.type, 'error');
    assert.equal(err.error.type, 'not_found_error');
    assert.match(err.error.message, /sesn_does_not_exist/);
    await fx.client.beta.sessions.events.send(a, { events: [msg('still streaming')] });
    await waitFor(() => eventsOf(s, a).some((f) => f.json.event.content?.[0]?.text === 'still streaming'),
      { what: 'the other session streams' });
    s.close();
    await s.done;

    const many = Array.from({ length: 51 }, (_, i) => `session=sesn_${i}`).join('&');
    const r = await openMux(many);
    assert.equal(r.status, 400);
    assert.deepEqual(envelopeProblems(r), []);
    assert.equal(r.json.error.type, 'invalid_request_error');
    assert.match(r.json.error.message, /50/);

    const noKey = await openMux('sessions_list=1', { key: null });
    assert.equal(noKey.status, 401);
    assert.equal(noKey.json.error.type, 'authentication_error');
  });

  test('sessions_list=1 streams the session object on creation, status changes and title changes', async () => {
    const s = await openMux('sessions_list=1');
    assert.equal(s.status, 200);
    const sid = await newSession('watched');
    const sessionFrames = () => s.frames.filter((f) => f.event === 'session' && f.json.id === sid).map((f) => f.json);
    await waitFor(() => sessionFrames().length >= 1, { what: 'creation frame' });
    assert.equal(sessionFrames()[0].title, 'watched');
    await fx.client.beta.sessions.events.send(sid, { events: [msg('work please')] });
    await waitFor(() => sessionFrames().some((x) => x.status === 'running'), { timeoutMs: 60_000, what: 'running frame' });
    await settle(fx.client, sid);
    await waitFor(() => sessionFrames().at(-1).status === 'idle', { timeoutMs: 60_000, what: 'idle frame' });
    await fx.client.beta.sessions.update(sid, { title: 'renamed' });
    await waitFor(() => sessionFrames().at(-1).title === 'renamed', { what: 'title frame' });
    // The object is the one GET /v1/sessions/{id} returns.
    const got = await fx.client.beta.sessions.retrieve(sid);
    assert.deepEqual(sessionFrames().at(-1), JSON.parse(JSON.stringify(got)));
    // No session_event frames: none were asked for.
    assert.equal(s.frames.filter((f) => f.event === 'session_event').length, 0);
    s.close();
    await s.done;
  });
});

describe('multiplexed stream keep-alive', { skip: fx.skip }, () => {
  test('a silent stream gets `: ping` comments (keep-alive shortened to 200 ms)', async () => {
    const srv = await startServer({ env: { WARREN_SSE_KEEPALIVE_MS: '200' } });
    try {
      const ctrl = new AbortController();
      const res = await fetch(`${srv.url}/v1/warren/stream?sessions_list=1`, { headers: { 'x-api-key': srv.apiKey }, signal: ctrl.signal });
      assert.equal(res.status, 200);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      while ((text.match(/^: ping$/gm) ?? []).length < 2) {
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
      }
      assert.match(text, /^: ping\n\n: ping\n\n/, 'only pings on a silent stream');
      ctrl.abort();
    } finally {
      await srv.cleanup();
    }
  });
});
