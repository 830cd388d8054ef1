// Issue 14, item 1: a generator-driven type-fuzzing test of the event-send
// path against a live `warren serve`. It posts EVENTS client events (valid
// JSON, but with wrong types and odd values at every field: null, numbers for
// strings, integers beyond int64, nested arrays, unicode, empty strings, extra
// and missing fields) across every sendable type and a mix of sessions (cloud
// and self_hosted, with real ids of pending tool uses in the references, so
// the deep paths are reached). Every answer must be a 2xx or a 4xx in the
// error envelope (never a 5xx, never a dropped connection); the service stays
// up; afterwards every session settles (idle or terminated) and lists its
// events. Seeded: FUZZ_SEED replays a run (the seed is printed).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { missingBinaryReason, startServer, REPO_ROOT } from './lib/server.mjs';
import { waitFor } from './lib/util.mjs';

const SCRIPT = path.join(REPO_ROOT, 'tests/golden/engine_e2e/sdk_session.json');
const SEED = Number(process.env.FUZZ_SEED || Math.floor(Math.random() * 2 ** 31));
const EVENTS = Number(process.env.FUZZ_EVENTS || 6000);
const CONCURRENCY = 8;
const skip = missingBinaryReason();

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Raw JSON fragments: numbers JavaScript cannot hold are spliced in as text.
const RAW = ['9223372036854775807', '9223372036854775808', '18446744073709551616', '-9223372036854775809',
  '1e308', '-0', '1.5', '123456789012345678901234567890'];
const ODD = [null, 0, -1, 1, true, false, '', ' ', '\u0000', 'é😀\u202e', 'x'.repeat(70_000), [], [[[]]], [null],
  {}, { type: 'text' }, { type: null }, { type: 7 }, [{ type: 'text', text: 7 }], [{ type: 'text', text: null }],
  [{ type: 'image', source: { type: 'url', url: 5 } }], [{ type: 'document', source: { type: 'text', data: [] } }],
  [{ type: 'search_result', source: '', title: null, content: [{ type: 'text' }] }], [{ type: 'redacted', x: 1 }],
  'user.message', 'sevt_nope', { a: { b: { c: [1, { d: null }] } } }, Array(50).fill('a')];

describe(`event-send type fuzzing (seed ${SEED}, ${EVENTS} events)`, { skip, timeout: 110_000 }, () => {
  let srv, org;
  const sessions = []; // {id, selfHosted, toolUse, customUse}
  before(async () => {
    console.log(`event_fuzz: FUZZ_SEED=${SEED}`);
    srv = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: SCRIPT } });
    org = srv.client();
    const agent = await org.beta.agents.create({
      name: 'fuzz', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'read', permission_policy: { type: 'always_ask' } }] },
        { type: 'custom', name: 'get_weather', description: 'weather', input_schema: { type: 'object', properties: { city: { type: 'string' } } } }],
    });
    const cloud = await org.beta.environments.create({ name: 'fuzz-cloud' });
    const hosted = await org.beta.environments.create({ name: 'fuzz-hosted', config: { type: 'self_hosted' } });
    const opener = ['run: echo a', 'weather in Paris', 'read: /etc/hostname', 'hello'];
    for (let i = 0; i < 12; i++) {
      const selfHosted = i % 2 === 1;
      const s = await org.beta.sessions.create({ agent: agent.id, environment_id: selfHosted ? hosted.id : cloud.id });
      await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: opener[Math.floor(i / 2) % 4] }] }] });
      sessions.push({ id: s.id, selfHosted });
    }
    // Real ids for the reference fields, once the agent has asked.
    for (const s of sessions) {
      const evs = await waitFor(async () => {
        const got = [];
        for await (const e of org.beta.sessions.events.list(s.id)) got.push(e);
        return got.some((e) => e.type === 'session.status_idle') ? got : null;
      }, { timeoutMs: 60_000, what: `session ${s.id} to idle` });
      s.toolUse = evs.find((e) => e.type === 'agent.tool_use')?.id;
      s.customUse = evs.find((e) => e.type === 'agent.custom_tool_use')?.id;
    }
  });
  after(async () => {
    if (!srv) return;
    const alive = srv.alive;
    const tail = srv.tail();
    await srv.cleanup();
    assert.ok(alive, `warren serve died (seed ${SEED}):\n${tail}`);
  });

  test('every answer is 2xx or a 4xx error envelope; the service stays up; every session settles', async () => {
    const random = rng(SEED);
    const pick = (a) => a[Math.floor(random() * a.length)];
    const text = (t) => [{ type: 'text', text: t }];
    const base = (type, s) => {
      switch (type) {
        case 'user.message': return { type, content: text('fuzz hello') };
        case 'user.interrupt': return { type, session_thread_id: null };
        case 'user.tool_confirmation': return { type, tool_use_id: s.toolUse ?? 'sevt_x', result: pick(['allow', 'deny']), deny_message: null };
        case 'user.custom_tool_result': return { type, custom_tool_use_id: s.customUse ?? 'sevt_x', content: text('22C'), is_error: false };
        case 'user.tool_result': return { type, tool_use_id: s.toolUse ?? 'sevt_x', content: text('out'), is_error: false };
        case 'user.define_outcome': return { type, description: 'd', rubric: { type: 'text', content: 'r' }, max_iterations: 2 };
        default: return { type, content: text('sys') };
      }
    };
    const TYPES = ['user.message', 'user.interrupt', 'user.tool_confirmation', 'user.custom_tool_result',
      'user.tool_result', 'user.define_outcome', 'system.message'];
    // One mutated event, as JSON text (so RAW numbers survive).
    const mutate = (ev) => {
      const keys = Object.keys(ev);
      const raws = [];
      const oddValue = () => {
        if (random() < 0.2) {
          raws.push(pick(RAW));
          return `@@RAW${raws.length - 1}@@`;
        }
        return structuredClone(pick(ODD));
      };
      const n = 1 + Math.floor(random() * 3);
      for (let i = 0; i < n; i++) {
        const r = random();
        if (r < 0.5) ev[pick(keys)] = oddValue(); // wrong type/odd value at a field
        else if (r < 0.65) delete ev[pick(keys)]; // missing field
        else if (r < 0.75) ev[pick(['extra', 'id', 'processed_at', '', 'type '])] = oddValue(); // extra field
        else if (r < 0.85 && ev.content) ev.content = [{ ...ev.content[0], text: oddValue() }, ...(random() < 0.3 ? [oddValue()] : [])];
        else if (r < 0.92 && ev.rubric) ev.rubric = { ...ev.rubric, [pick(['type', 'content', 'file_id', 'x'])]: oddValue() };
        // else: left valid, so the accepted path (store, engine) is exercised too
      }
      let s = JSON.stringify(random() < 0.03 ? oddValue() : ev);
      raws.forEach((v, i) => { s = s.replace(`"@@RAW${i}@@"`, v); });
      return s;
    };

    let sent = 0;
    const counts = new Map();
    const bad = [];
    const auth = { 'x-api-key': srv.apiKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
    async function one() {
      const s = pick(sessions);
      const k = random() < 0.8 ? 1 : 2 + Math.floor(random() * 2);
      const evs = [];
      for (let i = 0; i < k; i++) evs.push(mutate(base(pick(TYPES), s)));
      sent += k;
      const body = `{"events":[${evs.join(',')}]}`;
      let res;
      try {
        res = await fetch(`${srv.url}/v1/sessions/${s.id}/events?beta=true`, { method: 'POST', headers: auth, body });
      } catch (e) {
        bad.push(`connection error ${e.cause?.code ?? e.message} for ${body.slice(0, 300)}`);
        return;
      }
      const txt = await res.text();
      counts.set(res.status, (counts.get(res.status) ?? 0) + 1);
      if (res.status >= 200 && res.status < 300) return;
      let j = null;
      try { j = JSON.parse(txt); } catch { /* reported below */ }
      const envelope = j && j.type === 'error' && typeof j.error?.type === 'string' && typeof j.error?.message === 'string' &&
        typeof j.request_id === 'string';
      if (res.status >= 500 || res.status < 400 || !envelope)
        bad.push(`${res.status} ${txt.slice(0, 200)} for ${body.slice(0, 300)}`);
    }
    const workers = [];
    for (let w = 0; w < CONCURRENCY; w++) {
      workers.push((async () => { while (sent < EVENTS && bad.length < 20) await one(); })());
    }
    await Promise.all(workers);
    console.log(`event_fuzz: ${sent} events, answers by status ${JSON.stringify(Object.fromEntries(counts))}`);
    assert.deepEqual(bad, [], `seed ${SEED}: bad answers`);
    assert.ok(sent >= EVENTS);
    assert.ok((counts.get(200) ?? 0) > 0 && (counts.get(400) ?? 0) > 0, 'both accepted and refused events were generated');
    assert.ok(srv.alive, srv.tail());

    // Every session settles and lists its events.
    for (const s of sessions) {
      await waitFor(async () => {
        const cur = await org.beta.sessions.retrieve(s.id);
        if (cur.status !== 'idle' && cur.status !== 'terminated') return false;
        const evs = [];
        for await (const e of org.beta.sessions.events.list(s.id, { limit: 1000 })) evs.push(e);
        const unprocessed = evs.filter((e) => (e.type.startsWith('user.') || e.type === 'system.message') && !e.processed_at);
        const lastStatus = evs.filter((e) => e.type.startsWith('session.status_')).at(-1);
        return unprocessed.length === 0 && ['session.status_idle', 'session.status_terminated'].includes(lastStatus?.type);
      }, { timeoutMs: 30_000, intervalMs: 100, what: `session ${s.id} to settle (seed ${SEED})` });
    }
    assert.ok(srv.alive, srv.tail());
  });
});
