// End-to-end conformance of the agent engine with the official SDK (issue 3,
// "Must show": a session whose agent calls `bash` completes when a test worker
// posts the tool results through the API).
//
// A real `warren serve` runs the scripted model (tests/golden/engine_e2e/sdk_session.json,
// format in docs/MODELS.md). The test opens the SDK event stream first, sends
// user.message, and acts as the self-hosted worker: every agent.tool_use is
// answered with user.tool_result through client.beta.sessions.events.send,
// once with the org API key and once with an environment key
// (`warren keys create environment ENV_ID`). The expected event sequences are
// those of tests/golden/engine/*.json.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { missingBinaryReason, startServer, REPO_ROOT } from './lib/server.mjs';
import { waitFor, withTimeout, assertTimestamp } from './lib/util.mjs';

const SCRIPT = path.join(REPO_ROOT, 'tests/golden/engine_e2e/sdk_session.json');
const skip = missingBinaryReason();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });
const textOf = (ev) => (ev.content || []).filter((b) => b.type === 'text').map((b) => b.text).join('');

/** Drains an SDK Stream in the background into `events`. */
function drain(stream) {
  const st = { events: [], ended: false, error: null, stream };
  st.done = (async () => {
    try {
      for await (const ev of stream) {
        st.events.push(ev);
        if (st.onEvent) await st.onEvent(ev);
      }
    } catch (e) {
      st.error = e;
    } finally {
      st.ended = true;
    }
  })();
  st.close = async () => {
    stream.controller.abort();
    await st.done;
  };
  st.waitFor = (pred, what, timeoutMs = 10_000) =>
    waitFor(() => st.events.find(pred), { timeoutMs, what: `${what}; stream so far: ${summary(st.events)}` });
  return st;
}

const summary = (evs) =>
  evs
    .map((e) => e.type + (e.type === 'session.status_idle' ? `(${e.stop_reason?.type})` : '') +
      (e.type?.startsWith('user.') ? (e.processed_at ? '(done)' : '(queued)') : ''))
    .join(' ');

/** The persisted log (each event once, final form), read with the SDK's auto-pagination. */
async function log(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
  return out;
}

/**
 * Asserts that `types` occur in `events` in this order (other events may be
 * interleaved). Returns the matched events.
 */
function assertSubsequence(events, preds, what) {
  const got = [];
  let i = 0;
  for (const [n, pred] of preds.entries()) {
    const fn = typeof pred === 'string' ? (e) => e.type === pred : pred;
    while (i < events.length && !fn(events[i])) i++;
    assert.ok(i < events.length, `${what}: step ${n} (${typeof pred === 'string' ? pred : pred.toString()}) not found in order in: ${summary(events)}`);
    got.push(events[i++]);
  }
  return got;
}

describe('engine end to end with the official SDK', { skip }, () => {
  let srv, org, agent, gatedAgent, customAgent, env;

  before(async () => {
    srv = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: SCRIPT } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0, timeout: 30_000 });
    env = await org.beta.environments.create({ name: 'e2e-worker-env', config: { type: 'self_hosted' } });
    agent = await org.beta.agents.create({
      name: 'e2e bash agent', model: 'claude-sonnet-4-6', system: 'You run commands.',
      tools: [{ type: 'agent_toolset_20260401' }],
    });
    gatedAgent = await org.beta.agents.create({
      name: 'e2e gated agent', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'read', permission_policy: { type: 'always_ask' } }] }],
    });
    customAgent = await org.beta.agents.create({
      name: 'e2e custom agent', model: 'claude-sonnet-4-6',
      tools: [{
        type: 'custom', name: 'get_weather', description: 'Weather for a city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
      }],
    });
  });

  after(async () => {
    if (!srv) return;
    const alive = srv.alive;
    const tail = srv.tail();
    await srv.cleanup();
    assert.ok(alive, `warren serve died during the suite (exit ${JSON.stringify(srv.exit)}):\n${tail}`);
  });

  const newSession = async (a = agent) =>
    (await org.beta.sessions.create({ agent: a.id, environment_id: env.id })).id;

  test('bash round trip: the worker answers with the org key after requires_action; exact event sequence', async () => {
    const sid = await newSession();
    const st = drain(await withTimeout(org.beta.sessions.events.stream(sid), 30_000, 'stream opens'));
    const sent = (await org.beta.sessions.events.send(sid, { events: [msg('run: echo hello-from-bash')] })).data[0];
    assert.equal(sent.processed_at, null, 'the send response has the queued event');

    const idle1 = await st.waitFor((e) => e.type === 'session.status_idle', 'first idle');
    assert.equal(idle1.stop_reason.type, 'requires_action', `stop_reason: ${JSON.stringify(idle1.stop_reason)}`);
    const use = st.events.find((e) => e.type === 'agent.tool_use');
    assert.ok(use, 'agent.tool_use on the stream');
    assert.equal(use.name, 'bash');
    assert.deepEqual(use.input, { command: 'echo hello-from-bash' });
    assert.equal(use.evaluated_permission, 'allow');
    assert.deepEqual(idle1.stop_reason.event_ids, [use.id], 'requires_action lists the outstanding tool use');
    const s1 = await org.beta.sessions.retrieve(sid);
    assert.equal(s1.status, 'idle', 'the session idles while the tool runs on the worker');

    // The worker: run the command (well, pretend) and post the result.
    const res = (await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'hello-from-bash' }] }],
    })).data[0];
    const idle2 = await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn', 'end_turn');
    const final = st.events.filter((e) => e.type === 'agent.message').at(-1);
    assert.equal(textOf(final), 'The command printed: hello-from-bash', 'the final answer carries the tool output');

    // The whole stream, in order (golden tests/golden/engine/tool_roundtrip.json plus the queued echoes).
    // The processed echo of a client event is written in the same store step as the
    // status/span events that follow it; here it only has to come after its queued
    // echo and before the model's output (its position within the step is checked
    // against the log in the next test).
    const isQueued = (e) => e.type.startsWith('user.') && e.processed_at === null;
    const isDone = (id) => (e) => e.id === id && e.processed_at !== null;
    const seq = st.events.filter((e) => e.type !== 'session.updated');
    const core = seq.filter((e) => !e.type.startsWith('user.'));
    const expected = [
      ['session.status_running'], ['span.model_request_start'],
      ['agent.message', (e) => textOf(e) === 'Running `echo hello-from-bash`.'],
      ['agent.tool_use'], ['span.model_request_end', (e) => e.is_error === false], ['session.usage'],
      ['session.status_idle', (e) => e.stop_reason.type === 'requires_action'],
      ['session.status_running'], ['span.model_request_start'],
      ['agent.message', (e) => e.id === final.id], ['span.model_request_end', (e) => e.is_error === false],
      ['session.usage'], ['session.status_idle', (e) => e.id === idle2.id],
    ];
    assert.deepEqual(core.map((e) => e.type), expected.map((x) => x[0]), `stream sequence: ${summary(seq)}`);
    for (const [i, [, pred]] of expected.entries()) if (pred) assert.ok(pred(core[i]), `event ${i} (${core[i].type}): ${JSON.stringify(core[i])}`);
    const pos = (pred) => seq.findIndex(pred);
    assert.equal(seq[0].id, sent.id, 'the queued user.message echo comes first');
    assert.equal(seq[0].processed_at, null);
    assert.ok(pos(isDone(sent.id)) > 0 && pos(isDone(sent.id)) < seq.indexOf(core[2]), `user.message processed before the model output: ${summary(seq)}`);
    assert.equal(seq.filter((e) => e.id === sent.id).length, 2, 'user.message echoed exactly twice');
    const q = pos((e) => e.id === res.id);
    assert.ok(q > seq.indexOf(core[6]) && isQueued(seq[q]), 'the queued tool result echo follows requires_action');
    assert.ok(pos(isDone(res.id)) > q && pos(isDone(res.id)) < seq.indexOf(core[9]), `user.tool_result processed before the answer: ${summary(seq)}`);
    assert.equal(seq.filter((e) => e.id === res.id).length, 2, 'user.tool_result echoed exactly twice');
    const spans = seq.filter((e) => e.type.startsWith('span.'));
    assert.equal(spans[1].model_request_start_id, spans[0].id, 'span end names its start');
    assert.equal(spans[3].model_request_start_id, spans[2].id, 'span end names its start');
    for (const e of spans.filter((x) => x.type === 'span.model_request_end')) {
      assert.equal(typeof e.model_usage?.input_tokens, 'number', 'model_usage on span end');
      assert.equal(typeof e.model_usage?.output_tokens, 'number', 'model_usage on span end');
    }

    // The persisted log has every event once, client events processed.
    const all = await log(org, sid);
    assert.deepEqual(new Set(all.map((e) => e.id)), new Set(seq.filter((e) => !isQueued(e)).map((e) => e.id)),
      'the log holds exactly the streamed events');
    assert.equal(all.length, seq.filter((e) => !isQueued(e)).length, 'each event once in the log');
    for (const e of all.filter((x) => x.type.startsWith('user.'))) assertTimestamp(e.processed_at, `${e.type}.processed_at`);
    const s2 = await org.beta.sessions.retrieve(sid);
    assert.equal(s2.status, 'idle');
    assert.ok(s2.usage.output_tokens > 0, `session usage accumulated: ${JSON.stringify(s2.usage)}`);
    await st.close();
  });

  // Regression guard (bug found and fixed 2026-11-24): SqliteStore::StepSession publishes a step's
  // appended events before its replaced ones (the processed echoes), so on the
  // stream user.message(processed) follows the session.status_running and
  // span.model_request_start of the same step, while the log has it first.
  //
  const STREAM_ORDER_TODO = false;  // fixed: StepSession publishes replaced events first
  test('the stream delivers the persisted events in log order (processed echoes where the log has them)', { todo: STREAM_ORDER_TODO }, async () => {
    // A client that follows the stream and one that lists the log must see the
    // same history in the same order; otherwise resuming with Last-Event-ID
    // (replay by log position) and live delivery disagree.
    const sid = await newSession();
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('run: true')] });
    const idle = await st.waitFor((e) => e.type === 'session.status_idle', 'requires_action');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_result', tool_use_id: idle.stop_reason.event_ids[0], content: [{ type: 'text', text: 'ok' }] }],
    });
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'end_turn', 'end_turn');
    const all = await log(org, sid);
    const streamed = st.events.filter((e) => !(e.type.startsWith('user.') && e.processed_at === null));
    assert.deepEqual(streamed.map((e) => e.type), all.map((e) => e.type),
      `stream order (without queued echoes) vs log order:\n  stream: ${summary(streamed)}\n  log:    ${summary(all)}`);
    await st.close();
  });

  // Regression test: every SSE stream used to be cut write_timeout (30 s) after
  // it opened, busy or idle (fixed in 77ce3df: the peer-gone reader inherited
  // the write deadline).
  test('a stream stays open for a session that works longer than the HTTP write timeout (35 s)', {
    timeout: 60_000,
  }, async () => {
    const sid = await newSession();
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('run: sleep 35')] });
    const idle = await st.waitFor((e) => e.type === 'session.status_idle', 'requires_action');
    await new Promise((r) => setTimeout(r, 35_000)); // the worker's command runs
    assert.equal(st.error, null, `the stream failed while the tool ran: ${st.error}`);
    assert.equal(st.ended, false, 'the stream is still open');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_result', tool_use_id: idle.stop_reason.event_ids[0], content: [{ type: 'text', text: 'slept' }] }],
    });
    const answer = await st.waitFor((e) => e.type === 'agent.message' && textOf(e).includes('slept'), 'the answer on the same stream');
    assert.equal(textOf(answer), 'The command printed: slept');
    await st.close();
  });

  // Regression guard (bug found and fixed 2026-11-24): Engine::ConsumeClientEvents reads only
  // EventsAfter(consumed_seq, 1000) and, when that page holds no client event,
  // returns without advancing consumed_seq; a client event behind 1000 other
  // events (session.updated here; also a long chain of model calls without a
  // client answer) is never processed, before or after a restart. Remove

  test('a user.message sent after more than 1000 other events is still processed', {
    timeout: 120_000,
  }, async () => {
    const sid = await newSession();
    for (let i = 0; i < 1005; i++) await org.beta.sessions.update(sid, { metadata: { step: `v${i}` } });
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('run: echo late')] });
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'requires_action', 'the turn starts');
    await st.close();
  });

  test('a test worker with an environment key answers every agent.tool_use as soon as it appears; two turns complete', async () => {
    const envKey = await srv.createEnvKey(env.id);
    assert.match(envKey, /\S{20,}/);
    const worker = new Anthropic({ apiKey: envKey, baseURL: srv.url, maxRetries: 0, timeout: 30_000 });
    const sid = await newSession();
    const st = drain(await worker.beta.sessions.events.stream(sid));
    const answered = [];
    st.onEvent = async (ev) => {
      if (ev.type !== 'agent.tool_use') return;
      const out = `ran<${ev.input.command}>`;
      const r = await worker.beta.sessions.events.send(sid, {
        events: [{ type: 'user.tool_result', tool_use_id: ev.id, content: [{ type: 'text', text: out }] }],
      });
      answered.push(r.data[0].id);
    };
    // Queued user.message echoes first: twice per message.
    const m1 = (await org.beta.sessions.events.send(sid, { events: [msg('run: uname -a')] })).data[0];
    await st.waitFor((e) => e.type === 'agent.message' && textOf(e) === 'The command printed: ran<uname -a>', 'first answer');
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn', 'first end_turn');
    const m2 = (await org.beta.sessions.events.send(sid, { events: [msg('run: ls /tmp')] })).data[0];
    await st.waitFor((e) => e.type === 'agent.message' && textOf(e) === 'The command printed: ran<ls /tmp>', 'second answer');
    await waitFor(() => st.events.filter((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn').length === 2,
      { what: 'second end_turn' });
    assert.equal(answered.length, 2, 'one tool result per tool use');
    for (const m of [m1, m2]) {
      const echoes = st.events.filter((e) => e.id === m.id);
      assert.equal(echoes.length, 2, `user.message ${m.id} echoed twice: ${JSON.stringify(echoes)}`);
      assert.equal(echoes[0].processed_at, null);
      assertTimestamp(echoes[1].processed_at, 'second echo processed_at');
    }
    // The session is idle; the log has each model request closed once.
    const all = await log(org, sid);
    const starts = all.filter((e) => e.type === 'span.model_request_start');
    const ends = all.filter((e) => e.type === 'span.model_request_end');
    assert.equal(starts.length, 4);
    assert.deepEqual(ends.map((e) => e.model_request_start_id), starts.map((e) => e.id));
    assert.equal((await worker.beta.sessions.retrieve(sid)).status, 'idle', 'the env key can read its session');
    await st.close();
  });

  test('event_deltas[]=agent.message: event_start and event_delta previews precede agent.message; the deltas add up to it', async () => {
    const sid = await newSession();
    const plain = drain(await org.beta.sessions.events.stream(sid));
    const st = drain(await org.beta.sessions.events.stream(sid, { event_deltas: ['agent.message'] }));
    await org.beta.sessions.events.send(sid, { events: [msg('stream please')] });
    const message = await st.waitFor((e) => e.type === 'agent.message', 'agent.message');
    await st.waitFor((e) => e.type === 'session.status_idle', 'idle');
    const want = 'This answer is streamed to you in several small pieces.';
    assert.equal(textOf(message), want);
    const start = st.events.findIndex((e) => e.type === 'event_start');
    const at = st.events.indexOf(message);
    assert.ok(start >= 0 && start < at, `event_start before agent.message: ${summary(st.events)}`);
    assert.equal(st.events[start].event.type, 'agent.message');
    assert.equal(st.events[start].event.id, message.id, 'the preview announces the id of the final event');
    const deltas = st.events.filter((e) => e.type === 'event_delta');
    assert.ok(deltas.length >= 3, `several deltas (chunk 7 over ${want.length} bytes), got ${deltas.length}`);
    for (const d of deltas) {
      assert.ok(st.events.indexOf(d) > start && st.events.indexOf(d) < at, 'deltas between event_start and agent.message');
      assert.equal(d.event_id, message.id);
    }
    assert.equal(deltas.map((d) => d.delta.content.text).join(''), want, 'deltas concatenate to the message');
    // Previews go only to the stream that asked; neither is persisted.
    await plain.waitFor((e) => e.type === 'session.status_idle', 'idle on the plain stream');
    assert.equal(plain.events.filter((e) => e.type === 'event_start' || e.type === 'event_delta').length, 0,
      'a stream without event_deltas[] gets no previews');
    const all = await log(org, sid);
    assert.equal(all.filter((e) => e.type.startsWith('event_')).length, 0, 'previews are not in the log');
    assert.equal(all.filter((e) => e.type === 'agent.message').length, 1);
    await Promise.all([st.close(), plain.close()]);
  });

  test('an always_ask tool waits for user.tool_confirmation; allow then result completes, deny sends the message to the model', async () => {
    const sid = await newSession(gatedAgent);
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('read: /etc/motd')] });
    const idle = await st.waitFor((e) => e.type === 'session.status_idle', 'requires_action');
    const use = st.events.find((e) => e.type === 'agent.tool_use');
    assert.equal(use.name, 'read');
    assert.equal(use.evaluated_permission, 'ask');
    assert.deepEqual(idle.stop_reason, { type: 'requires_action', event_ids: [use.id] });

    const conf = (await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }],
    })).data[0];
    await st.waitFor((e) => e.id === conf.id && e.processed_at, 'confirmation processed');
    // Still waiting for the worker: no model call yet.
    assert.equal(st.events.filter((e) => e.type === 'span.model_request_start').length, 1, 'no model call before the result');
    assert.equal((await org.beta.sessions.retrieve(sid)).status, 'idle');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'Welcome!' }] }],
    });
    const done = await st.waitFor((e) => e.type === 'agent.message', 'answer after allow');
    assert.equal(textOf(done), 'The file says: Welcome!');
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'end_turn', 'end_turn');

    // Deny: the deny_message goes back to the model as an error result.
    await org.beta.sessions.events.send(sid, { events: [msg('read: /etc/shadow')] });
    const use2 = await st.waitFor((e) => e.type === 'agent.tool_use' && e.id !== use.id, 'second tool use');
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason?.event_ids?.includes(use2.id), 'second requires_action');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_confirmation', tool_use_id: use2.id, result: 'deny', deny_message: 'not that file' }],
    });
    const refused = await st.waitFor((e) => e.type === 'agent.message' && e.id !== done.id, 'answer after deny');
    assert.equal(textOf(refused), 'No read: not that file');
    await waitFor(() => st.events.filter((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'end_turn').length === 2,
      { what: 'second end_turn' });
    await st.close();
  });

  test('custom tool round trip: agent.custom_tool_use, user.custom_tool_result, answer', async () => {
    const sid = await newSession(customAgent);
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('weather in Paris')] });
    const idle = await st.waitFor((e) => e.type === 'session.status_idle', 'requires_action');
    const use = st.events.find((e) => e.type === 'agent.custom_tool_use');
    assert.ok(use, `agent.custom_tool_use on the stream: ${summary(st.events)}`);
    assert.equal(use.name, 'get_weather');
    assert.deepEqual(use.input, { city: 'Paris' });
    assert.deepEqual(idle.stop_reason, { type: 'requires_action', event_ids: [use.id] });
    assert.equal(st.events.filter((e) => e.type === 'agent.tool_use').length, 0, 'custom tools are not built-in tool uses');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.custom_tool_result', custom_tool_use_id: use.id, content: [{ type: 'text', text: 'sunny, 21 C' }] }],
    });
    const answer = await st.waitFor((e) => e.type === 'agent.message' && textOf(e).startsWith('Forecast'), 'answer');
    assert.equal(textOf(answer), 'Forecast: sunny, 21 C');
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'end_turn', 'end_turn');
    await st.close();
  });

  test('user.interrupt while a tool call is outstanding settles the session idle (end_turn); the next message works', async () => {
    const sid = await newSession();
    const st = drain(await org.beta.sessions.events.stream(sid));
    await org.beta.sessions.events.send(sid, { events: [msg('run: sleep 1000')] });
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'requires_action', 'requires_action');
    const intr = (await org.beta.sessions.events.send(sid, { events: [{ type: 'user.interrupt' }] })).data[0];
    const idle = await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'end_turn', 'end_turn after interrupt');
    await st.waitFor((e) => e.id === intr.id && e.processed_at, 'the interrupt is processed');
    assert.ok(idle);
    assert.equal(st.events.filter((e) => e.type === 'span.model_request_start').length, 1, 'no model call for the interrupt');
    assert.equal((await org.beta.sessions.retrieve(sid)).status, 'idle');
    // A late result for the interrupted call is recorded but ignored.
    const use = st.events.find((e) => e.type === 'agent.tool_use');
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'too late' }] }],
    });
    await org.beta.sessions.events.send(sid, { events: [msg('run: echo again')] });
    await st.waitFor((e) => e.type === 'session.status_idle' && e.stop_reason.type === 'requires_action' &&
      !e.stop_reason.event_ids.includes(use.id), 'the new turn asks for its own tool');
    assert.equal(st.events.filter((e) => e.type === 'agent.message' && textOf(e).includes('too late')).length, 0,
      'the late result did not reach the model');
    await st.close();
  });
});

// An interrupt while the model call is in flight. The scripted model answers
// instantly, so this uses the `anthropic` provider against a minimal fake
// Messages API that starts a streamed answer and then holds it open.
describe('engine end to end: user.interrupt during a model call', { skip }, () => {
  // Regression guard (bug found and fixed 2026-11-24): the cancelled model call records
  // span.model_request_end + session.status_idle{end_turn} (ModelTurn), then
  // consuming the user.interrupt appends a second session.status_idle{end_turn}
  // (ConsumeClientEvents: status already idle, nothing unresolved). Remove

  test('the call is cancelled, the span closes with is_error, the session idles once with end_turn', {
  }, async () => {
    const http = await import('node:http');
    const held = [];
    const fake = http.createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: {
          id: 'msg_1', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [],
          stop_reason: null, usage: { input_tokens: 3, output_tokens: 1 } } })}\n\n`);
        held.push(res);
      });
    });
    await new Promise((r) => fake.listen(0, '127.0.0.1', r));
    const srv = await startServer({ env: {
      WARREN_MODEL_PROVIDER: 'anthropic', WARREN_MODEL_BASE_URL: `http://127.0.0.1:${fake.address().port}`,
      ANTHROPIC_API_KEY: 'sk-ant-fake-for-tests',
    } });
    try {
      const c = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0, timeout: 10_000 });
      const env = await c.beta.environments.create({ name: 'intr-env', config: { type: 'self_hosted' } });
      const agent = await c.beta.agents.create({ name: 'intr agent', model: 'claude-sonnet-4-6' });
      const sid = (await c.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id;
      const st = drain(await c.beta.sessions.events.stream(sid));
      await c.beta.sessions.events.send(sid, { events: [msg('think for a long time')] });
      await waitFor(() => held.length > 0, { what: 'the model call' });
      const intr = (await c.beta.sessions.events.send(sid, { events: [{ type: 'user.interrupt' }] })).data[0];
      await st.waitFor((e) => e.type === 'session.status_idle', 'idle after the interrupt');
      await st.waitFor((e) => e.id === intr.id && e.processed_at, 'the interrupt is processed');
      await new Promise((r) => setTimeout(r, 500)); // let anything else arrive
      const all = await log(c, sid);
      const what = `log: ${summary(all)}`;
      const end = all.filter((e) => e.type === 'span.model_request_end');
      assert.equal(end.length, 1, what);
      assert.equal(end[0].is_error, true, what);
      assert.equal(all.filter((e) => e.type === 'agent.message').length, 0, what);
      assert.equal((await c.beta.sessions.retrieve(sid)).status, 'idle');
      const idles = all.filter((e) => e.type === 'session.status_idle');
      assert.deepEqual(idles.map((e) => e.stop_reason), [{ type: 'end_turn' }], `one idle for the interrupted turn; ${what}`);
      await st.close();
    } finally {
      for (const r of held) r.destroy();
      await srv.cleanup();
      fake.closeAllConnections?.();
      await new Promise((r) => fake.close(r));
    }
  });
});
