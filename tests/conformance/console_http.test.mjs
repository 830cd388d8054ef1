// The console's files over the wire (docs/CONSOLE.md, "Serving and
// embedding"), read with a raw HTTP client that does not decompress: gzip
// (compressed at build time) only when Accept-Encoding allows it, the same
// bytes once inflated, `Vary: Accept-Encoding`, one strong ETag per
// representation and 304 on If-None-Match; index.html never compressed.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { gunzipSync } from 'node:zlib';
import { startServer, missingBinaryReason } from './lib/server.mjs';

// GET `path` on a fresh connection; the body as raw bytes (no decoding).
function get(baseURL, path, headers = {}) {
  const u = new URL(path, baseURL);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

describe('console assets over HTTP', { skip: missingBinaryReason(), timeout: 60_000 }, () => {
  let srv;
  before(async () => {
    srv = await startServer();
  });
  after(async () => {
    if (srv) await srv.cleanup();
  });

  test('gzip when accepted, identity otherwise; Vary, ETags, 304', async (t) => {
    const page = await get(srv.url, '/console/', { 'accept-encoding': 'gzip, deflate, br' });
    assert.equal(page.status, 200);
    assert.equal(page.headers['content-encoding'], undefined, 'index.html is never compressed (per-response nonce)');
    assert.equal(page.headers.etag, undefined, 'index.html has no validator: its body changes with every answer');
    assert.equal(page.headers['cache-control'], 'no-cache');
    const html = page.body.toString('utf8');
    const assets = [...html.matchAll(/\/console\/(assets\/[^"]+)/g)].map((m) => m[1]);
    if (!assets.length) return t.skip('console not built into this binary (placeholder page)');
    assert.ok(assets.some((a) => a.endsWith('.js')) && assets.some((a) => a.endsWith('.css')), assets.join(' '));

    for (const a of assets) {
      const plain = await get(srv.url, `/console/${a}`);
      const gz = await get(srv.url, `/console/${a}`, { 'accept-encoding': 'gzip, deflate, br' });
      const refused = await get(srv.url, `/console/${a}`, { 'accept-encoding': 'br, gzip;q=0' });
      assert.equal(plain.status, 200);
      assert.equal(plain.headers['content-encoding'], undefined, `${a}: no Accept-Encoding, no gzip`);
      assert.equal(refused.headers['content-encoding'], undefined, `${a}: gzip;q=0 is a refusal`);
      assert.deepEqual(refused.body, plain.body);
      assert.equal(gz.headers['content-encoding'], 'gzip', a);
      assert.equal(gz.headers.vary, 'Accept-Encoding', a);
      assert.equal(plain.headers.vary, 'Accept-Encoding', a);
      assert.equal(gz.headers['content-type'], plain.headers['content-type']);
      assert.equal(gz.headers['cache-control'], 'public, max-age=31536000, immutable');
      assert.equal(Number(gz.headers['content-length']), gz.body.length);
      assert.ok(gz.body.length < plain.body.length * 0.9, `${a}: ${gz.body.length} vs ${plain.body.length} bytes`);
      assert.deepEqual(gunzipSync(gz.body), plain.body, `${a}: inflates to the identity bytes`);
      t.diagnostic(`${a}: ${plain.body.length} -> ${gz.body.length} bytes gzipped`);

      // One strong ETag per representation; each validates only its own.
      assert.match(plain.headers.etag, /^"[0-9a-f]{32}"$/);
      assert.equal(gz.headers.etag, plain.headers.etag.replace(/"$/, '-gz"'));
      const nm = await get(srv.url, `/console/${a}`, { 'accept-encoding': 'gzip', 'if-none-match': gz.headers.etag });
      assert.equal(nm.status, 304);
      assert.equal(nm.body.length, 0);
      assert.equal(nm.headers.etag, gz.headers.etag);
      assert.equal(nm.headers.vary, 'Accept-Encoding');
      const cross = await get(srv.url, `/console/${a}`, { 'if-none-match': gz.headers.etag });
      assert.equal(cross.status, 200, 'the gzip tag does not validate the identity copy');
      assert.equal((await get(srv.url, `/console/${a}`, { 'if-none-match': plain.headers.etag })).status, 304);
    }
  });
});
