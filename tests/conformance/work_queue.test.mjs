// Conformance: the self-hosted work queue through the SDK's raw work calls
// (spec 3.3, 3.13, 8 and section 9 check #6), with an environment key minted by
// `warren keys create environment`.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BadRequestError, ConflictError, PermissionDeniedError, NotFoundError } from '@anthropic-ai/sdk';
import { BetaHeartbeatPreconditionFailedError } from '@anthropic-ai/sdk/resources/beta/environments/work';
import { serverFixture, assertApiError, assertTimestamp, collect, waitFor } from './lib/util.mjs';

const fx = serverFixture();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

function decodeSecret(secret) {
  assert.equal(typeof secret, 'string', 'poll returns a secret');
  assert.doesNotMatch(secret, /[=+/]/, 'secret is unpadded base64url');
  const json = JSON.parse(Buffer.from(secret, 'base64url').toString('utf8'));
  assert.equal(typeof json.sessions_token, 'string');
  assert.ok(json.sessions_token.length > 0);
  return json.sessions_token;
}

describe('work queue (spec 9 check #6)', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  let agent, env, cloudEnv, envKey, wc;
  before(async () => {
    const c = fx.client;
    agent = await c.beta.agents.create({ name: 'work agent', model: 'claude-sonnet-4-6' });
    env = await c.beta.environments.create({ name: 'work-env', config: { type: 'self_hosted' } });
    cloudEnv = await c.beta.environments.create({ name: 'work-cloud' });
    envKey = await fx.srv.createEnvKey(env.id);
    wc = fx.srv.bearerClient(envKey);
  });

  const work = () => wc.beta.environments.work;

  test('empty queue: a blocking poll returns null after block_ms', async () => {
    const t0 = Date.now();
    const item = await work().poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': 'w1' });
    assert.equal(item, null);
    assert.ok(Date.now() - t0 >= 500, 'the poll was parked, not answered at once');
    // Non-blocking poll on an empty queue.
    assert.equal(await work().poll(env.id), null);
  });

  let sessionId, item, token, last;

  test('session create enqueues; poll returns the item with a secret', async () => {
    const s = await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    sessionId = s.id;
    item = await work().poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': 'w1' });
    assert.ok(item, 'an item is delivered');
    assert.equal(item.type, 'work');
    assert.match(item.id, /^work_/);
    assert.equal(item.environment_id, env.id);
    assert.deepEqual(item.data, { type: 'session', id: sessionId });
    assert.equal(item.state, 'queued');
    assertTimestamp(item.created_at, 'created_at');
    for (const f of ['acknowledged_at', 'started_at', 'latest_heartbeat_at', 'stop_requested_at', 'stopped_at'])
      assert.equal(item[f], null, f);
    assert.deepEqual(item.metadata, {});
    token = decodeSecret(item.secret);
    // Delivered but not acked: invisible to the next poll.
    assert.equal(await work().poll(env.id), null);
    const stats = await work().stats(env.id);
    assert.equal(stats.depth, 0);
    assert.equal(stats.pending, 1);
  });

  test('a parked long-poll wakes when a session is created', async () => {
    // block_ms is at most 999: on a loaded machine the create can finish
    // after the poll expired. That case (the poll ended before the create
    // did) proves nothing either way: its item is cleared and the check runs
    // again. A poll that ends empty after the create finished is a failure.
    for (let attempt = 1; ; attempt++) {
      let pollEnded = Infinity;
      const p = work().poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': 'w2' })
        .then((w) => { pollEnded = Date.now(); return w; });
      await new Promise((r) => setTimeout(r, 100));
      const s = await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id });
      const created = Date.now();
      const got = await p;
      if (!got && pollEnded < created && attempt < 5) {
        const left = await work().poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': 'w2' });
        assert.equal(left?.data.id, s.id, 'the item created after the poll expired is still queued');
        await work().stop(left.id, { environment_id: env.id, force: true });
        continue;
      }
      assert.ok(got, 'the parked poll returned the new item');
      assert.equal(got.data.id, s.id);
      await work().stop(got.id, { environment_id: env.id, force: true });
      break;
    }
  });

  test('ack, heartbeat NO_HEARTBEAT, heartbeat CAS, stale heartbeat 412', async () => {
    const acked = await work().ack(item.id, { environment_id: env.id });
    assert.equal(acked.state, 'starting');
    assertTimestamp(acked.acknowledged_at, 'acknowledged_at');
    assert.equal(acked.secret, null);

    const hb = await work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: 'NO_HEARTBEAT' });
    assert.equal(hb.type, 'work_heartbeat');
    assert.equal(hb.state, 'active');
    assert.equal(hb.lease_extended, true);
    assert.equal(hb.ttl_seconds, 90);
    assertTimestamp(hb.last_heartbeat, 'last_heartbeat');

    // The per-item sessions token is the worker's credential for the item.
    const tc = fx.srv.bearerClient(token);
    const hb2 = await tc.beta.environments.work.heartbeat(item.id, {
      environment_id: env.id, expected_last_heartbeat: hb.last_heartbeat, desired_ttl_seconds: 10,
    });
    assert.equal(hb2.state, 'active');
    assert.equal(hb2.ttl_seconds, 30, 'desired_ttl_seconds is clamped to [30, 600]');
    assert.notEqual(hb2.last_heartbeat, hb.last_heartbeat);
    last = hb2.last_heartbeat;

    // A stale expected value: another worker holds the lease.
    const err = await assertApiError(
      work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: hb.last_heartbeat }),
      BetaHeartbeatPreconditionFailedError, 412, 'invalid_request_error', 'stale heartbeat');
    assert.equal(err.errorCode, 'heartbeat_precondition_failed');
    assert.deepEqual(err.details.current_state, {
      state: 'active', ttl_seconds: 30, last_heartbeat: last, lease_extended: false,
    });
    await assertApiError(
      work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: 'NO_HEARTBEAT' }),
      BetaHeartbeatPreconditionFailedError, 412, 'invalid_request_error', 'second claimant');

    // expected_last_heartbeat is optional in the SDK: without it the held
    // lease is renewed without compare-and-set (docs/QUEUE.md).
    const bare = await tc.beta.environments.work.heartbeat(item.id, { environment_id: env.id });
    assert.equal(bare.type, 'work_heartbeat');
    assert.equal(bare.state, 'active');
    assert.equal(bare.lease_extended, true);
    assert.equal(bare.ttl_seconds, 30);
    assert.notEqual(bare.last_heartbeat, last);
    await assertApiError(
      work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: last }),
      BetaHeartbeatPreconditionFailedError, 412, 'invalid_request_error', 'the bare beat moved the token');
    last = bare.last_heartbeat;

    const item2 = await fx.client.beta.environments.work.retrieve(item.id, { environment_id: env.id });
    assert.equal(item2.state, 'active');
    assert.equal(item2.latest_heartbeat_at, last);
    assertTimestamp(item2.started_at, 'started_at');
    assert.equal(item2.secret, null, 'retrieve never returns the secret');
  });

  test('credentials: retrieve and update take only the org key', async () => {
    await assertApiError(work().retrieve(item.id, { environment_id: env.id }), PermissionDeniedError, 403,
      'permission_error', 'env key retrieve');
    await assertApiError(fx.srv.bearerClient(token).beta.environments.work.retrieve(item.id, { environment_id: env.id }),
      PermissionDeniedError, 403, 'permission_error', 'secret retrieve');
    await assertApiError(work().update(item.id, { environment_id: env.id, metadata: { a: 'b' } }),
      PermissionDeniedError, 403, 'permission_error', 'env key update');
    const upd = await fx.client.beta.environments.work.update(item.id, { environment_id: env.id, metadata: { a: 'b' } });
    assert.deepEqual(upd.metadata, { a: 'b' });
    const upd2 = await fx.client.beta.environments.work.update(item.id, { environment_id: env.id, metadata: { a: null } });
    assert.deepEqual(upd2.metadata, {});
  });

  test('a new user.message while the item is live enqueues nothing', async () => {
    await fx.client.beta.sessions.events.send(sessionId, { events: [msg('hello')] });
    const items = await collect(work().list(env.id));
    assert.equal(items.filter((w) => w.data.id === sessionId).length, 1);
    for (const w of items) assert.equal(w.secret, null);
  });

  test('stop force twice: second is 409; the next user event enqueues a fresh item', async () => {
    const stopped = await work().stop(item.id, { environment_id: env.id, force: true });
    assert.equal(stopped.state, 'stopped');
    assertTimestamp(stopped.stopped_at, 'stopped_at');
    await assertApiError(work().stop(item.id, { environment_id: env.id, force: true }), ConflictError, 409,
      'invalid_request_error', 'second stop');
    // A heartbeat on a stopped item tells the worker to stop.
    const hb = await work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: last });
    assert.equal(hb.state, 'stopped');
    assert.equal(hb.lease_extended, false);

    await fx.client.beta.sessions.events.send(sessionId, { events: [msg('again')] });
    const next = await work().poll(env.id, { 'Anthropic-Worker-ID': 'w1' });
    assert.ok(next, 'a fresh item');
    assert.notEqual(next.id, item.id);
    assert.equal(next.data.id, sessionId);
    item = next;
  });

  test('graceful stop reaches the holder as stopping; its confirmation stops the item', async () => {
    await work().ack(item.id, { environment_id: env.id });
    const hb = await work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: 'NO_HEARTBEAT' });
    assert.equal(hb.state, 'active');
    const s = await fx.client.beta.environments.work.stop(item.id, { environment_id: env.id });
    assert.equal(s.state, 'stopping');
    assertTimestamp(s.stop_requested_at, 'stop_requested_at');
    const seen = await work().heartbeat(item.id, { environment_id: env.id, expected_last_heartbeat: hb.last_heartbeat });
    assert.equal(seen.state, 'stopping');
    assert.equal(seen.lease_extended, true);
    // A stopping item is still the session's live item (issue 13): its holder
    // works until it confirms, so a user event queues no second item.
    await fx.client.beta.sessions.events.send(sessionId, { events: [msg('while stopping')] });
    const during = (await collect(work().list(env.id))).filter((w) => w.data.id === sessionId && w.state !== 'stopped');
    assert.deepEqual(during.map((w) => `${w.id}:${w.state}`), [`${item.id}:stopping`]);
    const done = await fx.srv.bearerClient(decodeSecret(item.secret)).beta.environments.work.stop(item.id,
      { environment_id: env.id, force: true });
    assert.equal(done.state, 'stopped');
  });

  // Regression guard for the GCC 12 double destruction of a lambda temporary
  // inside co_await (docs/QUEUE.md): 48 parked polls crashed the server.
  test('many parked polls share the event loop: no thread per waiter; each item goes to one poll',
    async () => {
    const threads = () => {
      const m = readFileSync(`/proc/${fx.srv.pid}/status`, 'utf8').match(/^Threads:\s+(\d+)/m);
      return Number(m[1]);
    };
    const before = threads();
    const N = 48;
    // Each of N workers keeps a poll parked until the test has its items (a
    // single 999 ms poll each would expire before the creates on a loaded
    // machine, and its item would never be seen).
    const delivered = [];
    let stop = false;
    const worker = async (i) => {
      while (!stop) {
        const w = await work().poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': `many-${i}` });
        if (w) delivered.push(w);
      }
    };
    const polls = Array.from({ length: N }, (_, i) => worker(i));
    await new Promise((r) => setTimeout(r, 250));
    const during = threads();
    // Other requests are served while the polls are parked.
    const stats = await work().stats(env.id);
    assert.equal(stats.depth, 0);
    const created = [];
    for (let i = 0; i < 3; i++)
      created.push((await fx.client.beta.sessions.create({ agent: agent.id, environment_id: env.id })).id);
    await waitFor(() => delivered.length >= 3, { timeoutMs: 60_000, what: 'the 3 items delivered' });
    stop = true;
    await Promise.all(polls);  // the parked ones end empty within 999 ms
    const items = delivered;
    assert.equal(items.length, 3, 'each new item is delivered to exactly one poll');
    assert.deepEqual(items.map((w) => w.data.id).sort(), [...created].sort());
    assert.ok(during - before < N / 2, `threads grew from ${before} to ${during} with ${N} parked polls`);
    for (const w of items) await work().stop(w.id, { environment_id: env.id, force: true });
  });

  test('stats counts workers_polling by Anthropic-Worker-ID', async () => {
    const stats = await work().stats(env.id);
    assert.equal(stats.type, 'work_queue_stats');
    assert.equal(stats.workers_polling, 2 + 48, 'w1, w2 (and the parked pollers) polled in the last 30 s');
    assert.equal(stats.depth, 0);
    assert.equal(stats.pending, 0);
    assert.equal(stats.oldest_queued_at, null);
    const orgStats = await fx.client.beta.environments.work.stats(env.id);
    assert.equal(orgStats.workers_polling, stats.workers_polling);
  });

  test('bad requests: block_ms 0 / 1000, cloud environment, unknown environment and item', async () => {
    await assertApiError(work().poll(env.id, { block_ms: 0 }), BadRequestError, 400, 'invalid_request_error', 'block_ms 0');
    await assertApiError(work().poll(env.id, { block_ms: 1000 }), BadRequestError, 400, 'invalid_request_error', 'block_ms 1000');
    await assertApiError(work().poll(env.id, { reclaim_older_than_ms: 0 }), BadRequestError, 400,
      'invalid_request_error', 'reclaim 0');
    await assertApiError(fx.client.beta.environments.work.poll(cloudEnv.id), BadRequestError, 400,
      'invalid_request_error', 'cloud env');
    await assertApiError(work().poll(cloudEnv.id), PermissionDeniedError, 403, 'permission_error', 'other env key');
    await assertApiError(fx.client.beta.environments.work.poll('env_missing'), NotFoundError, 404, 'not_found_error',
      'unknown env');
    await assertApiError(work().ack('work_missing', { environment_id: env.id }), NotFoundError, 404, 'not_found_error',
      'unknown item');
  });
});
