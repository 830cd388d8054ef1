// Issue 14, item 1: no client event may take the service down.
//
// 1. The crash reproducer: the worker's sessions token posts a
//    `user.tool_result` with `"is_error": null`. The SDK declares the field
//    `boolean | null`, so the event is accepted (null means "not an error",
//    docs/API.md); the service stays up and the session settles with the
//    model's answer to the result.
// 2. A poisoned event already in the database (written by an older build, or
//    by hand) does not crash-loop the service: it is marked processed and
//    skipped, and the session goes on when a valid answer arrives.
// Each test sets up its own server, agent, environment and session.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { missingBinaryReason, startServer, REPO_ROOT } from './lib/server.mjs';
import { waitFor } from './lib/util.mjs';

const SCRIPT = path.join(REPO_ROOT, 'tests/golden/engine_e2e/sdk_session.json');
const ENV = { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: SCRIPT };
const run = promisify(execFile);
const skip = missingBinaryReason();

async function allEvents(client, sid) {
  const out = [];
  for await (const e of client.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
  return out;
}

/**
 * A self_hosted session whose agent has called `bash` and waits for the
 * result, plus the worker's sessions token for it (from the work item's
 * secret, as a real worker gets it).
 */
async function pendingToolUse(srv, command) {
  const org = srv.client();
  const agent = await org.beta.agents.create({
    name: `hostile ${command}`, model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }],
  });
  const env = await org.beta.environments.create({ name: `hostile-${Date.now()}-${Math.random()}`, config: { type: 'self_hosted' } });
  const envKey = await srv.createEnvKey(env.id);
  const session = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
  await org.beta.sessions.events.send(session.id, {
    events: [{ type: 'user.message', content: [{ type: 'text', text: `run: ${command}` }] }],
  });
  const use = await waitFor(async () => (await allEvents(org, session.id)).find((e) => e.type === 'agent.tool_use'),
    { timeoutMs: 60_000, what: 'agent.tool_use' });
  const item = await srv.bearerClient(envKey).beta.environments.work.poll(env.id, { block_ms: 999 });
  assert.ok(item, 'the session has a work item');
  const token = JSON.parse(Buffer.from(item.secret, 'base64url').toString('utf8')).sessions_token;
  assert.equal(typeof token, 'string');
  return { org, session, use, token };
}

async function settled(org, sid, what) {
  return waitFor(async () => {
    const s = await org.beta.sessions.retrieve(sid);
    if (s.status !== 'idle' && s.status !== 'terminated') return null;
    const evs = await allEvents(org, sid);
    const last = evs.at(-1);
    return last?.type === 'session.status_idle' || last?.type === 'session.status_terminated' ? evs : null;
  }, { timeoutMs: 60_000, what });
}

describe('hostile client events (issue 14)', { skip, timeout: 120_000 }, () => {
  test('regression: the worker posts is_error null; the service stays up and the session settles', async () => {
    const srv = await startServer({ env: ENV });
    try {
      const { org, session, use, token } = await pendingToolUse(srv, 'echo null-is-error');
      const worker = srv.bearerClient(token);
      const sent = await worker.beta.sessions.events.send(session.id, {
        events: [{ type: 'user.tool_result', tool_use_id: use.id, is_error: null, content: [{ type: 'text', text: 'null-is-error' }] }],
      });
      assert.equal(sent.data[0].type, 'user.tool_result');
      assert.equal(sent.data[0].is_error, null, 'the echo is what the client sent');
      const evs = await settled(org, session.id, 'the session to settle after is_error null');
      // null is "not an error": the script's success branch answered.
      const answer = evs.filter((e) => e.type === 'agent.message').at(-1);
      assert.match(JSON.stringify(answer.content), /The command printed: null-is-error/);
      assert.equal(evs.at(-1).stop_reason.type, 'end_turn');
      const result = evs.find((e) => e.type === 'user.tool_result');
      assert.ok(result.processed_at, 'the result was processed');
      // The service is still up and serves other calls.
      assert.ok(srv.alive, srv.tail());
      await org.beta.agents.list();
      // A wrong-typed is_error is refused in the error envelope.
      const again = await pendingToolUse(srv, 'echo bad-type');
      let err;
      try {
        await srv.bearerClient(again.token).beta.sessions.events.send(again.session.id, {
          events: [{ type: 'user.tool_result', tool_use_id: again.use.id, is_error: 'false' }],
        });
      } catch (e) { err = e; }
      assert.equal(err?.status, 400, `expected 400, got ${err?.status} ${err?.message}`);
      assert.equal(err.error.type, 'error');
      assert.equal(err.error.error.type, 'invalid_request_error');
      assert.match(err.error.error.message, /events\[0\]\.is_error: expected a boolean, got string/);
      assert.ok(srv.alive, srv.tail());
    } finally {
      await srv.cleanup();
    }
  });

  test('a poisoned event already in the database does not crash-loop the service on restart', async () => {
    let srv = await startServer({ env: ENV });
    const dataDir = srv.dataDir;
    const apiKey = srv.apiKey;
    try {
      const { session, use } = await pendingToolUse(srv, 'echo poisoned');
      await srv.stop();
      // What a pre-fix build stored: the engine's old `value("is_error", false)`
      // threw on it. Inserted unprocessed, as the API would have (and as
      // store migration 7 backfills such rows: awaiting_engine = 1).
      const db = path.join(dataDir, 'warren.db');
      const body = JSON.stringify({ type: 'user.tool_result', tool_use_id: use.id, is_error: 'poison', content: 7, id: 'sevt_poison', processed_at: null });
      const sql = `INSERT INTO events (session_id, id, type, ts, body, awaiting_engine) VALUES ('${session.id}', 'sevt_poison', 'user.tool_result', 0, '${body.replaceAll("'", "''")}', 1);`;
      await run('sqlite3', [db, sql]);

      for (let restart = 0; restart < 2; restart++) {
        srv = await startServer({ dataDir, env: ENV });
        srv.apiKey = apiKey;
        const org = srv.client();
        // The engine consumed the poisoned event (marked processed, once) and
        // is still up. The row is the call's one recorded answer (a tool call
        // is answered once, docs/QUEUE.md), read as an error result, so the
        // turn goes on and the session settles.
        await waitFor(async () => {
          const evs = await allEvents(org, session.id);
          return evs.find((e) => e.id === 'sevt_poison')?.processed_at;
        }, { timeoutMs: 60_000, what: 'the poisoned event to be processed' });
        assert.ok(srv.alive, `the service died on the poisoned event:\n${srv.tail()}`);
        const evs = await settled(org, session.id, 'the session to settle after the poisoned answer');
        assert.equal(evs.filter((e) => e.id === 'sevt_poison').length, 1);
        const s = await org.beta.sessions.retrieve(session.id);
        assert.equal(s.status, 'idle');
        if (restart === 0) await srv.stop();
      }
      // A second, different answer to the same call is refused: 409 in the
      // envelope, nothing appended; the service stays up.
      const org = srv.client();
      const before = (await allEvents(org, session.id)).length;
      let err;
      try {
        await org.beta.sessions.events.send(session.id, {
          events: [{ type: 'user.tool_result', tool_use_id: use.id, content: [{ type: 'text', text: 'fine' }] }],
        });
      } catch (e) { err = e; }
      assert.equal(err?.status, 409, `expected 409, got ${err?.status} ${err?.message}`);
      assert.equal(err.error.error.details?.error_code, 'tool_result_already_recorded');
      assert.equal((await allEvents(org, session.id)).length, before);
      assert.ok(srv.alive, srv.tail());
    } finally {
      await srv.cleanup();
    }
  });
});
