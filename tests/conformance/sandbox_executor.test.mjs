// Long sandbox calls never occupy the HTTP worker pool (issue 14, item 6):
// 8 non-streamed execs, each in its own sandbox and each more than the 4
// HTTP workers, are kept in flight while plain Managed Agents calls (list
// agents, send an event) and quick sandbox calls complete. The execs wait
// for a file that the test writes only after those calls have completed, so
// the check is the order of completion, not time: with the execs on the
// worker pool the plain calls would never complete (the guard below turns
// that hang into a failure).
//
// Also checks the embedded default of sandbox.data_dir: with no setting,
// the runtime lives in DATA_DIR/sandbox (one data dir holds everything).
//
// Needs root (the real runtime); skips with the reason otherwise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmdirSync, statSync } from 'node:fs';
import { startServer, missingBinaryReason } from './lib/server.mjs';
import { mountsUnder } from './lib/host.mjs';

function skipReason() {
  const missing = missingBinaryReason();
  if (missing) return missing;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (the sandbox runtime)';
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) return 'busybox-static missing (builtin:minimal snapshot)';
  return false;
}

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const PREFIX = `warren-exq-${tag}`;
const N = 8;


/** Rejects if `p` has not settled after `ms` (a hang guard, not a measurement). */
function guard(p, ms, what) {
  let t;
  const timer = new Promise((_, reject) => { t = setTimeout(() => reject(new Error(`${what} did not complete while ${N} execs were in flight`)), ms); });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

describe('sandbox API long calls run off the HTTP worker pool', { skip: skipReason() }, () => {
  let srv, key;
  async function call(method, path, body) {
    const h = { 'x-api-key': key };
    if (body !== undefined) h['content-type'] = 'application/json';
    const res = await fetch(srv.url + path, { method, headers: h, body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body) });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, text, json };
  }

  before(async () => {
    srv = await startServer({
      env: {
        WARREN_SANDBOX_ENABLED: 'true',
        WARREN_SANDBOX_DATA_DIR: '', // the embedded default: DATA_DIR/sandbox
        WARREN_SANDBOX_CGROUP_PREFIX: PREFIX,
        WARREN_SANDBOX_POOL_BYTES: String(8 * 2 ** 30),
        WARREN_WORKER_THREADS: '4',
      },
    });
    key = srv.apiKey;
  });

  after(async () => {
    if (!srv) return;
    const alive = srv.alive;
    const tail = srv.tail();
    if (alive) {
      const list = await call('GET', '/v1/warren/sandboxes?limit=100');
      for (const s of list.json?.data ?? []) await call('DELETE', `/v1/warren/sandboxes/${s.id}`);
    }
    const sbDir = `${srv.dataDir}/sandbox`;
    await srv.stop(30_000);
    const mounts = mountsUnder(sbDir);
    for (const c of ['cpu', 'memory', 'pids', 'freezer']) { try { rmdirSync(`/sys/fs/cgroup/${c}/${PREFIX}`); } catch { /* absent */ } }
    if (mounts.length === 0) await srv.cleanup();
    assert.ok(alive, `warren serve died during the suite (exit ${JSON.stringify(srv.exit)}):\n${tail}`);
    assert.deepEqual(mounts, [], 'no mount left under the sandbox data dir');
  });

  test('8 long execs in flight; list agents and send an event complete first', async () => {
    // Plain API objects for the calls made during the execs.
    const agent = await call('POST', '/v1/agents', { name: 'exq agent', model: 'claude-sonnet-4-6' });
    assert.equal(agent.status, 200, agent.text);
    const env = await call('POST', '/v1/environments', { name: `exq-${tag}`, config: { type: 'self_hosted' } });
    assert.equal(env.status, 200, env.text);
    const sess = await call('POST', '/v1/sessions', { agent: agent.json.id, environment_id: env.json.id });
    assert.equal(sess.status, 200, sess.text);

    const ids = [];
    for (let i = 0; i < N; i++) {
      const r = await call('POST', '/v1/warren/sandboxes', { labels: { exq: String(i) } });
      assert.equal(r.status, 201, r.text);
      ids.push(r.json.id);
    }
    // The runtime lives in DATA_DIR/sandbox (the embedded default).
    for (const id of ids) assert.ok(existsSync(`${srv.dataDir}/sandbox/sandboxes/${id}.json`), `record of ${id} under DATA_DIR/sandbox`);
    assert.equal(statSync(srv.dataDir).mode & 0o777, 0o711, 'DATA_DIR is traversable, not listable');
    for (const f of readdirSync(srv.dataDir)) {
      const st = statSync(`${srv.dataDir}/${f}`);
      if (st.isFile()) assert.equal(st.mode & 0o077, 0, `${f} is private`);
    }

    const order = [];
    const execs = ids.map((id, i) => call('POST', `/v1/warren/sandboxes/${id}/exec`, {
      command: 'touch /tmp/started; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done',
      timeout_ms: 600_000,
    }).then((r) => { order.push(`exec${i}`); return r; }));

    // Every exec is running (its file appeared) -- polled through the file
    // API, itself a quick call on the worker pool.
    for (const id of ids) {
      for (;;) {
        const st = await guard(call('GET', `/v1/warren/sandboxes/${id}/files/stat?path=/tmp/started`), 120_000, 'file stat');
        if (st.status === 200) break;
        assert.equal(st.status, 404, st.text);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    assert.deepEqual(order, [], 'no exec finished before /tmp/go exists');

    // With 8 execs in flight: plain API calls complete.
    const list = await guard(call('GET', '/v1/agents?limit=10'), 120_000, 'list agents');
    assert.equal(list.status, 200, list.text);
    assert.ok(list.json.data.some((a) => a.id === agent.json.id));
    order.push('list_agents');
    const sent = await guard(call('POST', `/v1/sessions/${sess.json.id}/events`, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'hello during execs' }] }],
    }), 120_000, 'send event');
    assert.equal(sent.status, 200, sent.text);
    assert.equal(sent.json.data[0].type, 'user.message');
    order.push('send_event');
    const sbList = await guard(call('GET', '/v1/warren/sandboxes?limit=100'), 120_000, 'list sandboxes');
    assert.equal(sbList.status, 200, sbList.text);
    order.push('list_sandboxes');
    assert.deepEqual(order, ['list_agents', 'send_event', 'list_sandboxes'], 'every plain call completed while all execs were in flight');

    // Release the execs.
    for (const id of ids) {
      const w = await call('PUT', `/v1/warren/sandboxes/${id}/files/content?path=/tmp/go`, 'go');
      assert.ok(w.status === 200 || w.status === 201, w.text);
    }
    const results = await Promise.all(execs);
    for (const r of results) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.exit_code, 0, r.text);
      assert.equal(r.json.stdout, 'done\n');
    }
    assert.deepEqual(order.slice(0, 3), ['list_agents', 'send_event', 'list_sandboxes']);
    assert.equal(order.length, 3 + N);
  });

  test('a streamed exec runs on the executor too and ends with its exit frame', async () => {
    const r = await call('POST', '/v1/warren/sandboxes', {});
    assert.equal(r.status, 201, r.text);
    const res = await fetch(`${srv.url}/v1/warren/sandboxes/${r.json.id}/exec`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ command: 'echo one; echo two >&2; exit 3', stream: true }),
    });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /event: stdout\ndata: .*one/);
    assert.match(text, /event: stderr\ndata: .*two/);
    assert.match(text, /event: exit\ndata: \{[^}]*"exit_code":3/);
  });
});
