// Small assertion and async helpers shared by the conformance suites.
import assert from 'node:assert/strict';
import { missingBinaryReason, startServer } from './server.mjs';

export const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;

export function assertTimestamp(v, what) {
  assert.equal(typeof v, 'string', `${what} should be an RFC 3339 string, got ${JSON.stringify(v)}`);
  assert.match(v, RFC3339, `${what} is not RFC 3339: ${v}`);
}

export async function collect(iterable, max = 100_000) {
  const out = [];
  for await (const x of iterable) {
    out.push(x);
    if (out.length >= max) break;
  }
  return out;
}

/** Polls `pred` until truthy or timeout; returns its value. */
export async function waitFor(pred, { timeoutMs = 30_000, intervalMs = 10, what = 'condition' } = {}) {
  const t0 = Date.now();
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Rejects after ms unless p settles first. */
export function withTimeout(p, ms, what) {
  let t;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise((_, rej) => {
      t = setTimeout(() => rej(new Error(`timed out after ${ms} ms: ${what}`)), ms);
    }),
  ]);
}

/**
 * Asserts `p` rejects with an instance of `Cls` (an SDK error class) with the
 * given HTTP status and error.type, and that the body is the spec envelope.
 */
export async function assertApiError(p, Cls, status, type, what = '') {
  let err;
  try {
    await p;
  } catch (e) {
    err = e;
  }
  assert.ok(err, `${what}: expected ${Cls.name} (${status}), but the call succeeded`);
  assert.ok(err instanceof Cls, `${what}: expected ${Cls.name}, got ${err?.constructor?.name}: ${err?.message}`);
  assert.equal(err.status, status, `${what}: status`);
  assert.equal(err.type, type, `${what}: error.type (body ${JSON.stringify(err.error)})`);
  assert.equal(err.error?.type, 'error', `${what}: envelope type`);
  assert.equal(typeof err.error?.request_id, 'string', `${what}: request_id in body`);
  assert.equal(typeof err.error?.error?.message, 'string', `${what}: error.message`);
  assert.equal(err.requestID, err.error.request_id, `${what}: request-id header (read by the SDK as err.requestID) equals the body's request_id`);
  return err;
}

/** Suite scaffolding: a fresh server for the file; the file fails if the server died. */
/** A shared server for a suite; `options` go to startServer(). */
export function serverFixture(options = {}) {
  const ctx = { skip: missingBinaryReason(), srv: null, client: null };
  ctx.start = async () => {
    ctx.srv = await startServer(typeof options === 'function' ? options() : options);
    ctx.client = ctx.srv.client();
  };
  ctx.stop = async () => {
    if (!ctx.srv) return;
    const alive = ctx.srv.alive;
    const tail = ctx.srv.tail();
    await ctx.srv.cleanup();
    assert.ok(alive, `warren serve died during the suite (exit ${JSON.stringify(ctx.srv.exit)}):\n${tail}`);
  };
  return ctx;
}

export function uniq(prefix = 'x') {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * Waits until the engine has finished with a session: status idle (or
 * terminated) and the event count unchanged across two polls. Needed before
 * comparing event lists or deleting/archiving (spec 1.3: delete/archive while
 * running is rejected). Works with an SDK client.
 */
export async function settle(client, sid, { timeoutMs = 60_000 } = {}) {
  const t0 = Date.now();
  let lastCount = -1;
  for (;;) {
    const s = await client.beta.sessions.retrieve(sid);
    let count = 0;
    for await (const _ of client.beta.sessions.events.list(sid, { limit: 1000 })) count++;
    if ((s.status === 'idle' || s.status === 'terminated') && count === lastCount) return s;
    lastCount = count;
    if (Date.now() - t0 > timeoutMs) throw new Error(`session ${sid} did not settle in ${timeoutMs} ms (status ${s.status})`);
    await new Promise((r) => setTimeout(r, 150));
  }
}
