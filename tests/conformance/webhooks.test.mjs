// Standard Webhooks interop: Warren's C++ signer/verifier (src/orchestrator/
// webhooks.h, driven through the tiny `warren-webhook-tool`) against the npm
// `standardwebhooks` package, which is what the Anthropic SDK uses to verify
// deliveries. Both directions: Node signs -> C++ verifies (fresh, replayed,
// tampered, stale, future), C++ signs -> Node verifies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Webhook } from 'standardwebhooks';
import { WARREN_BIN } from './lib/server.mjs';

const TOOL = process.env.WARREN_WEBHOOK_TOOL ||
  path.resolve(path.dirname(WARREN_BIN), '../orchestrator/warren-webhook-tool');

function verifyWithWarren(key, nowSeconds, deliveries) {
  const input = deliveries.map((d) => JSON.stringify(d)).join('\n') + '\n';
  const out = execFileSync(TOOL, ['verify', key, String(nowSeconds)], { input, encoding: 'utf8' });
  return out.trim().split('\n').map((l) => JSON.parse(l));
}

test('warren-webhook-tool is built', () => {
  assert.ok(existsSync(TOOL), `missing ${TOOL} (build the warren-webhook-tool target or set WARREN_WEBHOOK_TOOL)`);
});

test('deliveries signed by standardwebhooks verify in Warren; replays, tampering and stale ones are refused', () => {
  const key = 'whsec_' + randomBytes(32).toString('base64');
  const wh = new Webhook(key);
  const now = Math.floor(Date.now() / 1000);  // Node's verify below uses the real clock
  const body = (i) => JSON.stringify({ type: 'event', id: `event_${i}`, created_at: '2026-06-01T00:00:00Z',
    data: { type: 'session.status_run_started', id: `sesn_${i}`, organization_id: 'org', workspace_id: 'ws' } });
  const signed = (id, ts, payload) => ({ id, timestamp: String(ts), body: payload,
    signature: wh.sign(id, new Date(ts * 1000), payload) });
  const fresh = [0, 1, 2].map((i) => signed(`msg_${i}`, now - i * 60, body(i)));
  const unicode = signed('msg_u', now, 'café ✓ "quoted"\n{}');
  const deliveries = [
    ...fresh,
    unicode,
    fresh[0],                                                       // replay
    { ...signed('msg_t', now, body(9)), body: body(9).replace('sesn_9', 'sesn_X') },  // tampered body
    signed('msg_old', now - 301, body(5)),                          // stale
    signed('msg_future', now + 301, body(6)),                       // from the future
    { ...signed('msg_k', now, body(7)), signature: new Webhook('whsec_' + randomBytes(32).toString('base64'))
        .sign('msg_k', new Date(now * 1000), body(7)) },            // other key
    { ...signed('msg_multi', now, body(8)), signature: 'v1,AAAA ' + wh.sign('msg_multi', new Date(now * 1000), body(8)) },
    { id: 'msg_missing', timestamp: String(now), body: '{}', signature: '' },
  ];
  const results = verifyWithWarren(key, now, deliveries);
  const detail = results.map((r) => (r.ok ? 'ok' : r.detail));
  assert.deepEqual(detail, ['ok', 'ok', 'ok', 'ok', 'webhook_replay', 'webhook_bad_signature',
    'webhook_stale_timestamp', 'webhook_stale_timestamp', 'webhook_bad_signature', 'ok', 'webhook_malformed']);
  assert.equal(results[4].code, 'Conflict');
  assert.equal(results[5].code, 'Unauthenticated');
  assert.equal(results[6].code, 'Unauthenticated');
  // And the Node library agrees on the fresh ones.
  for (const d of fresh) {
    wh.verify(d.body, { 'webhook-id': d.id, 'webhook-timestamp': d.timestamp, 'webhook-signature': d.signature });
  }
});

test('deliveries signed by Warren verify with standardwebhooks', () => {
  const key = 'whsec_' + randomBytes(24).toString('base64');
  const wh = new Webhook(key);
  const ts = Math.floor(Date.now() / 1000);
  for (const [i, payload] of ['{"type":"event","id":"event_1"}', '', 'naïve ☃'].entries()) {
    const sig = execFileSync(TOOL, ['sign', key, `msg_w${i}`, String(ts)], { input: payload, encoding: 'utf8' }).trim();
    assert.match(sig, /^v1,[A-Za-z0-9+/]+=*$/);
    const headers = { 'webhook-id': `msg_w${i}`, 'webhook-timestamp': String(ts), 'webhook-signature': sig };
    wh.verify(payload, headers, { jsonParse: false });  // throws on a bad signature
    assert.throws(() => wh.verify(payload + 'x', headers, { jsonParse: false }), /signature/i);
  }
});
