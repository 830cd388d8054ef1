// How often each event arrives on a live stream, on both stream kinds: the
// per-session GET /v1/sessions/{id}/events/stream and the multiplexed
// GET /v1/warren/stream (docs/API.md). User events are sent while clients
// stream (one before the turn, one while the model works), and two more
// clients join mid-turn with a cursor, so the replay/live switch is crossed
// while events are being written.
//
// The contract (spec 1.4 "processed_at", spec 3.13 "SSE", docs/API.md): a
// client event seen live is sent twice with one id, first queued
// (`processed_at: null`), then processed (a timestamp) when the engine
// consumes it; every other event exactly once. So per stream, every
// (event id, queued|processed) pair is counted exactly once, nothing is
// missing against the stored log, and nothing else repeats.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { serverFixture, waitFor, settle } from './lib/util.mjs';
import { openSse } from './lib/sse.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(here, '../golden/engine_e2e/sdk_session.json');
// Every model call takes 400 ms, so a message sent after the first one
// arrives while the session is running.
const fx = serverFixture(() => {
  const dir = mkdtempSync(path.join(tmpdir(), 'warren-echo-cfg-'));
  const config = path.join(dir, 'warren.json');
  writeFileSync(config, JSON.stringify({ model: { latency_ms: 400 } }));
  return { extraArgs: ['--config', config], env: { WARREN_MODEL_SCRIPT: SCRIPT } };
});
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

// The session events a stream carried, in order (previews and pings left out).
function eventsOf(stream, kind) {
  const out = [];
  for (const f of stream.frames) {
    if (!f.data) continue;
    const d = JSON.parse(f.data);
    if (kind === 'mux') {
      if (f.event === 'session_event') out.push(d.event);
    } else if (d.id && d.type !== 'ping' && d.type !== 'event_start' && d.type !== 'event_delta') {
      out.push(d);
    }
  }
  return out;
}

// Checks one stream's events against the stored log: each (id, state) once,
// the queued copy of a client event before its processed copy, no event of
// the log missing after `from` (the cursor the stream started at).
function checkOnce(name, got, log, { from } = {}) {
  const start = from ? log.findIndex((e) => e.id === from) + 1 : 0;
  const want = log.slice(start);
  const seen = new Map(); // id -> [states]
  for (const e of got) {
    const state = e.processed_at === null ? 'queued' : 'processed';
    const states = seen.get(e.id) || [];
    assert.ok(!states.includes(state), `${name}: ${e.type} ${e.id} arrived ${state} twice: ${JSON.stringify(got.filter((x) => x.id === e.id))}`);
    if (state === 'queued') {
      assert.ok(e.type.startsWith('user.'), `${name}: only client events are ever queued (${e.type} ${e.id})`);
      assert.deepEqual(states, [], `${name}: the queued copy of ${e.id} comes first`);
    }
    states.push(state);
    seen.set(e.id, states);
  }
  for (const e of want) {
    const states = seen.get(e.id) || [];
    assert.ok(states.includes('processed'), `${name}: ${e.type} ${e.id} never arrived processed`);
  }
  for (const id of seen.keys()) assert.ok(log.some((e) => e.id === id), `${name}: ${id} is not in the stored log`);
  // The last copy of every event is the stored event, field for field.
  const last = new Map(got.map((e) => [e.id, e]));
  for (const e of want) assert.deepEqual(last.get(e.id), e, `${name}: ${e.id} as stored`);
  return { total: got.length, ids: seen.size, echoed: [...seen.values()].filter((s) => s.length === 2).length };
}

describe('each event once per state on both stream kinds', { skip: fx.skip, timeout: 60_000 }, () => {
  before(fx.start);
  after(fx.stop);

  test('user.message sent while clients stream: queued once, processed once, all else once', async (t) => {
    const client = fx.client;
    const agent = await client.beta.agents.create({ name: 'echo', model: 'claude-sonnet-4-6' });
    const env = await client.beta.environments.create({ name: 'echo-env', config: { type: 'cloud' } });
    const s = await client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const key = { 'x-api-key': fx.srv.apiKey, 'anthropic-version': '2023-06-01' };

    const per = await openSse(fx.srv.url, `/v1/sessions/${s.id}/events/stream?event_deltas[]=agent.message`, key);
    const mux = await openSse(fx.srv.url, `/v1/warren/stream?session=${s.id}&previews=1&sessions_list=1`, key);
    assert.equal(per.status, 200);
    assert.equal(mux.status, 200);

    const [first] = (await client.beta.sessions.events.send(s.id, { events: [msg('stream please')] })).data;
    // The turn started: seen on the stream, which skips no status event
    // (polling GET for status 'running' can miss a short turn entirely).
    await waitFor(() => eventsOf(per, 'per').some((e) => e.type === 'session.status_running'), { timeoutMs: 60_000, what: 'running' });
    // Two late joiners with cursors, while the turn is under way.
    const perLate = await openSse(fx.srv.url, `/v1/sessions/${s.id}/events/stream`, { ...key, 'last-event-id': first.id });
    const muxLate = await openSse(fx.srv.url, `/v1/warren/stream?session=${s.id}@${first.id}`, key);
    const [second] = (await client.beta.sessions.events.send(s.id, { events: [msg('stream please')] })).data;
    assert.equal(second.processed_at, null);
    await settle(client, s.id);

    const log = [];
    for await (const e of client.beta.sessions.events.list(s.id, { limit: 1000 })) log.push(e);
    assert.equal(log.filter((e) => e.type === 'agent.message').length, 2, log.map((e) => e.type).join(','));
    await waitFor(() => [per, mux, perLate, muxLate].every((st) => {
      const evs = eventsOf(st, st === mux || st === muxLate ? 'mux' : 'per');
      return evs.length && evs.at(-1).id === log.at(-1).id;
    }), { timeoutMs: 60_000, what: 'every stream reached the last event' });

    const r1 = checkOnce('per-session stream', eventsOf(per, 'per'), log);
    const r2 = checkOnce('multiplexed stream', eventsOf(mux, 'mux'), log);
    checkOnce('per-session stream from a cursor', eventsOf(perLate, 'per'), log, { from: first.id });
    checkOnce('multiplexed stream from a cursor', eventsOf(muxLate, 'mux'), log, { from: first.id });
    // Both messages were sent while the first two streams were attached:
    // each is on them queued and then processed.
    for (const [name, evs] of [['per-session', eventsOf(per, 'per')], ['multiplexed', eventsOf(mux, 'mux')]]) {
      for (const m of [first, second]) {
        const copies = evs.filter((e) => e.id === m.id).map((e) => e.processed_at === null ? 'queued' : 'processed');
        assert.deepEqual(copies, ['queued', 'processed'], `${name}: ${m.id}`);
      }
      // Exactly the log plus one queued copy per client event sent live.
      assert.equal(evs.length, log.length + 2, `${name}: ${evs.length} events for a log of ${log.length}`);
    }
    t.diagnostic(`per-session: ${r1.total} frames for ${r1.ids} events (${r1.echoed} echoed); mux: ${r2.total} for ${r2.ids}`);
    for (const st of [per, mux, perLate, muxLate]) st.close();
  });
});
