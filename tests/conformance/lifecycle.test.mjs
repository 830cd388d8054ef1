// Server lifecycle and HTTP-level robustness: graceful SIGTERM with open streams,
// data kept across a restart, answers to odd methods and oversized headers in
// the error envelope, and survival of abusive clients.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rmSync } from 'node:fs';
import { missingBinaryReason, startServer, makeDataDir } from './lib/server.mjs';
import { api, rawRequest, envelopeProblems } from './lib/http.mjs';
import { openSse } from './lib/sse.mjs';
import { withTimeout, waitFor } from './lib/util.mjs';

const skip = missingBinaryReason();

describe('lifecycle', { skip }, () => {
  const dirs = [];
  after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

  test('SIGTERM with open SSE streams exits 0 promptly, ends the streams, and keeps the data', { timeout: 60_000 }, async () => {
    const dataDir = await makeDataDir('lifecycle');
    dirs.push(dataDir);
    const srv = await startServer({ dataDir });
    const key = srv.apiKey;
    const ag = await api(srv.url, key, 'POST', '/v1/agents', { name: 'lc', model: 'm' });
    const env = await api(srv.url, key, 'POST', '/v1/environments', { name: 'lc-env', config: { type: 'self_hosted' } });
    const s = await api(srv.url, key, 'POST', '/v1/sessions', { agent: ag.json.id, environment_id: env.json.id });
    assert.equal(s.status, 200, s.text);
    const streams = await Promise.all([0, 1, 2].map(() =>
      openSse(srv.url, `/v1/sessions/${s.json.id}/events/stream`, { 'x-api-key': key })));
    for (const st of streams) assert.equal(st.status, 200);
    const t0 = Date.now();
    const exit = await srv.stop(15_000);
    const took = Date.now() - t0;
    assert.deepEqual(exit, { code: 0, signal: null }, `graceful exit status (took ${took} ms):\n${srv.tail()}`);
    assert.ok(took < 12_000, `shutdown took ${took} ms with open streams`);
    await withTimeout(Promise.all(streams.map((st) => st.ended)), 30_000, 'streams closed by shutdown');

    const again = await startServer({ dataDir });
    try {
      again.apiKey = key;
      const got = await api(again.url, key, 'GET', `/v1/sessions/${s.json.id}`);
      assert.equal(got.status, 200, 'the old key and the session survive a restart');
      assert.equal(got.json.agent.id, ag.json.id);
    } finally {
      await again.stop();
    }
  });

  describe('odd requests', () => {
    let srv;
    // One server for these probes (a hook, not a test the others depend on).
    before(async () => {
      srv = await startServer();
    });
    after(async () => {
      if (!srv) return;
      const alive = srv.alive;
      await srv.cleanup();
      assert.ok(alive, 'server survived');
    });

    test('unsupported methods on known paths answer 4xx in the envelope', async () => {
      for (const [method, p] of [['PUT', '/v1/agents'], ['PATCH', '/v1/sessions'], ['DELETE', '/v1/agents'], ['PUT', '/v1/environments']]) {
        const r = await rawRequest(srv.url, { method, path: p, headers: { 'x-api-key': srv.apiKey, 'content-type': 'application/json' }, body: '{}' });
        // docs/API.md: a wrong method on a known path is 404 not_found_error.
        assert.equal(r.status, 404, `${method} ${p}: ${r.status} ${r.text}`);
        assert.deepEqual(envelopeProblems(r), [], `${method} ${p}`);
      }
    });

    test('a 64 KiB header is refused with 431 in the envelope', async () => {
      const r = await rawRequest(srv.url, { path: '/v1/agents', headers: { 'x-api-key': srv.apiKey, 'x-padding': 'p'.repeat(64 << 10) } })
        .catch((e) => ({ error: e }));
      assert.ok(!r.error, `no answer: ${r.error}`);
      assert.equal(r.status, 431, r.text);
      assert.deepEqual(envelopeProblems(r), []);
    });

    test('garbage on the socket, half requests and abrupt disconnects do not hurt the server', async () => {
      const u = new URL(srv.url);
      const send = (data, { end = true } = {}) => new Promise((resolve) => {
        const sock = net.connect({ host: u.hostname, port: Number(u.port) }, () => {
          sock.write(data);
          if (end) sock.end();
          else setTimeout(() => sock.destroy(), 50);
        });
        sock.on('error', () => {});
        sock.on('close', resolve);
        sock.resume();
        setTimeout(() => sock.destroy(), 3000);
      });
      await send('\x00\x01\x02garbage\r\n\r\n');
      await send('GET /v1/agents HTTP/1.1\r\nhost: x\r\n', { end: false });
      await send(`POST /v1/agents HTTP/1.1\r\nhost: x\r\nx-api-key: ${srv.apiKey}\r\ncontent-length: 100\r\n\r\n{"name":`, { end: false });
      await send('GET /v1/agents HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nzz\r\n');
      await send('GET /%zz HTTP/1.1\r\nhost: x\r\n\r\n');
      const r = await api(srv.url, srv.apiKey, 'GET', '/v1/agents');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.data.length, 0, 'the half-sent create wrote nothing');
    });

    test('a stream consumer that stops reading does not block sends or other streams, and is cut off', { timeout: 150_000 }, async () => {
      const key = srv.apiKey;
      const ag = await api(srv.url, key, 'POST', '/v1/agents', { name: 'slow', model: 'm' });
      const env = await api(srv.url, key, 'POST', '/v1/environments', { name: 'slow-env', config: { type: 'self_hosted' } });
      const s = await api(srv.url, key, 'POST', '/v1/sessions', { agent: ag.json.id, environment_id: env.json.id });
      const sid = s.json.id;
      // The stalled consumer: a raw socket that sends the request and never reads.
      const u = new URL(srv.url);
      const slow = net.connect({ host: u.hostname, port: Number(u.port) });
      await new Promise((r) => slow.on('connect', r));
      slow.on('error', () => {});
      slow.write(`GET /v1/sessions/${sid}/events/stream HTTP/1.1\r\nhost: x\r\nx-api-key: ${key}\r\n\r\n`);
      slow.pause();
      const good = await openSse(srv.url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': key });
      // 3,000 user events of ~4 KB (plus their processed echoes): far more bytes
      // than the socket buffers hold, so the stalled subscriber's queue backs up.
      const text = 'x'.repeat(4000);
      const sent = [];
      const t0 = Date.now();
      for (let i = 0; i < 30; i++) {
        const r = await api(srv.url, key, 'POST', `/v1/sessions/${sid}/events`,
          { events: Array.from({ length: 100 }, (_, j) => ({ type: 'user.message', content: [{ type: 'text', text: `${i}.${j} ${text}` }] })) });
        assert.equal(r.status, 200, `send ${i}: ${r.text.slice(0, 200)}`);
        sent.push(...r.json.data.map((e) => e.id));
      }
      const sendMs = Date.now() - t0;
      const goodIds = () => new Set(good.frames.filter((f) => f.event === 'user.message').map((f) => f.id));
      await waitFor(() => sent.every((id) => goodIds().has(id)), { timeoutMs: 30_000, intervalMs: 100,
        what: `the reading stream to get all ${sent.length} events (has ${goodIds().size}; sends took ${sendMs} ms)` });
      // Resume the stalled socket: the server must have cut it (bounded queue or
      // write deadline), so it ends without the full history.
      let bytes = 0;
      let closed = false;
      slow.on('data', (c) => { bytes += c.length; });
      slow.on('close', () => { closed = true; });
      slow.resume();
      await waitFor(() => closed, { timeoutMs: 45_000, intervalMs: 100, what: 'the stalled stream to be closed by the server' });
      assert.ok(bytes < sent.length * 4000, `the stalled stream was cut short (${bytes} bytes)`);
      good.close();
    });

    test('a stream client that disconnects abruptly is cleaned up; sends keep working', async () => {
      const ag = await api(srv.url, srv.apiKey, 'POST', '/v1/agents', { name: 'dc', model: 'm' });
      const env = await api(srv.url, srv.apiKey, 'POST', '/v1/environments', { name: 'dc-env', config: { type: 'self_hosted' } });
      const s = await api(srv.url, srv.apiKey, 'POST', '/v1/sessions', { agent: ag.json.id, environment_id: env.json.id });
      for (let i = 0; i < 50; i++) {
        const st = await openSse(srv.url, `/v1/sessions/${s.json.id}/events/stream`, { 'x-api-key': srv.apiKey });
        st.close();
      }
      const r = await api(srv.url, srv.apiKey, 'POST', `/v1/sessions/${s.json.id}/events`,
        { events: [{ type: 'user.message', content: [{ type: 'text', text: 'still here' }] }] });
      assert.equal(r.status, 200, r.text);
    });
  });
});
