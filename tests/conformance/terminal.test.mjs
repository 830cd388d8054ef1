// The sandbox terminal (docs/SANDBOX_API.md, "Terminal"): a WebSocket into a
// PTY of a real sandbox under a real `warren serve`, opened like a browser
// does (Node's WHATWG WebSocket: no headers, a ticket in the URL). Needs root;
// skips with the reason otherwise. Own data dir and cgroup prefix; checks for
// leaks at the end like sandbox_api.test.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync, rmdirSync } from 'node:fs';
import { startServer, missingBinaryReason } from './lib/server.mjs';
import { envelopeProblems } from './lib/http.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './lib/host.mjs';
import { waitFor } from './lib/util.mjs';

function skipReason() {
  const missing = missingBinaryReason();
  if (missing) return missing;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (the sandbox runtime)';
  if (!existsSync('/sys/fs/cgroup/freezer') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup freezer';
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) return 'busybox-static missing';
  return false;
}

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const SB_DIR = `/var/tmp/warren-term-conf-${tag}`;
const PREFIX = `warren-term-${tag}`;
const fx = { srv: null };

async function call(method, path, body) {
  const h = { 'x-api-key': fx.srv.apiKey };
  if (body !== undefined) h['content-type'] = 'application/json';
  const res = await fetch(fx.srv.url + path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: Object.fromEntries(res.headers), text, json };
}

async function ticket(id, body = { cols: 80, rows: 24 }) {
  const r = await call('POST', `/v1/warren/sandboxes/${id}/terminal_tickets`, body);
  assert.equal(r.status, 201, r.text);
  return r.json;
}

/** A raw upgrade request: the HTTP answer when the server refuses it. */
function rawUpgrade(path, { upgrade = true } = {}) {
  const u = new URL(path, fx.srv.url);
  return new Promise((resolve, reject) => {
    const headers = upgrade
      ? { connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': randomBytes(16).toString('base64') }
      : {};
    const req = http.request({ host: u.hostname, port: u.port, path: u.pathname + u.search, headers, agent: false });
    req.on('upgrade', (res, socket) => { socket.destroy(); resolve({ status: res.statusCode, text: '' }); });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (text += c));
      res.on('end', () => {
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Opens the terminal; collects output text, control frames and the close. */
function openTerminal(id, t) {
  const url = `${fx.srv.url.replace(/^http/, 'ws')}/v1/warren/sandboxes/${id}/terminal?ticket=${t}`;
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  const term = { ws, out: '', controls: [], close: null, error: null };
  const dec = new TextDecoder();
  term.opened = new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = (e) => { term.error = e; reject(new Error('websocket error')); };
  });
  ws.onmessage = (m) => {
    if (typeof m.data === 'string') term.controls.push(JSON.parse(m.data));
    else term.out += dec.decode(m.data, { stream: true });
  };
  term.closed = new Promise((resolve) => {
    ws.onclose = (e) => { term.close = { code: e.code, reason: e.reason }; resolve(); };
  });
  term.type = (s) => ws.send(new TextEncoder().encode(s));
  return term;
}

describe('sandbox terminal (WebSocket)', { skip: skipReason() }, () => {
  let sb;
  before(async () => {
    fx.srv = await startServer({
      env: {
        WARREN_SANDBOX_ENABLED: 'true',
        WARREN_SANDBOX_DATA_DIR: SB_DIR,
        WARREN_SANDBOX_CGROUP_PREFIX: PREFIX,
        WARREN_SANDBOX_POOL_BYTES: String(4 * 2 ** 30),
      },
    });
    const r = await call('POST', '/v1/warren/sandboxes', { labels: { 'warren.session_id': `sesn_term_${tag}` }, network: 'none' });
    assert.equal(r.status, 201, r.text);
    sb = r.json;
  });

  after(async () => {
    if (!fx.srv) return;
    const alive = fx.srv.alive;
    const tail = fx.srv.tail();
    if (alive) {
      const list = await call('GET', '/v1/warren/sandboxes?limit=100');
      for (const s of list.json?.data ?? []) await call('DELETE', `/v1/warren/sandboxes/${s.id}`);
    }
    await fx.srv.stop(20_000);
    await fx.srv.cleanup();
    const mounts = mountsUnder(SB_DIR);
    const loops = await loopsLeft(`${SB_DIR}/pool.img`);
    const cgs = cgroupsUnder(PREFIX);
    for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${PREFIX}`); } catch { /* absent */ } }
    if (mounts.length === 0 && loops.length === 0) rmSync(SB_DIR, { recursive: true, force: true });
    assert.ok(alive, `warren serve died during the suite (exit ${JSON.stringify(fx.srv.exit)}):\n${tail}`);
    assert.deepEqual(mounts, [], 'no mount left under the sandbox data dir');
    assert.deepEqual(loops, [], 'no loop device left on the pool file');
    assert.deepEqual(cgs, [], 'no cgroup left under the prefix');
  });

  test("the console finds a session's sandbox by label", async () => {
    const r = await call('GET', `/v1/warren/sandboxes?label=warren.session_id=sesn_term_${tag}`);
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.data.map((s) => s.id), [sb.id]);
  });

  test('echo hi, resize, exit frame and close 1000', async () => {
    const t = await ticket(sb.id, { cols: 100, rows: 30 });
    assert.match(t.ticket, /^wtt_[A-Za-z0-9]{40}$/);
    assert.equal(t.sandbox_id, sb.id);
    assert.ok(Date.parse(t.expires_at) > Date.now(), t.expires_at);
    const term = openTerminal(sb.id, t.ticket);
    await term.opened;
    // $((40+2)) proves the shell ran it (the typed echo shows "$((40+2))").
    term.type('echo hi-$((40+2))\n');
    await waitFor(() => term.out.includes('hi-42'), { timeoutMs: 60_000, what: `'hi-42' in ${JSON.stringify(term.out)}` });
    term.type('stty size\n');
    await waitFor(() => term.out.includes('30 100'), { timeoutMs: 60_000, what: `initial size in ${JSON.stringify(term.out)}` });
    term.ws.send(JSON.stringify({ type: 'resize', cols: 132, rows: 50 }));
    term.type('stty size\n');
    await waitFor(() => term.out.includes('50 132'), { timeoutMs: 60_000, what: `resized in ${JSON.stringify(term.out)}` });
    // A bad control message is answered, and the terminal lives on.
    term.ws.send(JSON.stringify({ type: 'resize', cols: 0, rows: 5 }));
    await waitFor(() => term.controls.some((c) => c.type === 'error'), { what: 'error control frame' });
    term.type('exit 3\n');
    await term.closed;
    assert.deepEqual(term.controls.filter((c) => c.type === 'exit'), [{ type: 'exit', code: 3 }]);
    assert.equal(term.close.code, 1000);
  });

  test('bad, used or missing tickets are 401 before any upgrade; a plain GET is 426', async () => {
    const t = await ticket(sb.id);
    const term = openTerminal(sb.id, t.ticket);
    await term.opened;
    term.type('exit\n');
    await term.closed;
    assert.deepEqual(term.controls.at(-1), { type: 'exit', code: 0 });
    for (const q of [`?ticket=${t.ticket}`, '?ticket=wtt_nope', '']) {
      const r = await rawUpgrade(`/v1/warren/sandboxes/${sb.id}/terminal${q}`);
      assert.equal(r.status, 401, `${q}: ${r.text}`);
      assert.deepEqual(envelopeProblems(r), [], r.text);
      assert.equal(r.json.error.type, 'authentication_error');
    }
    // A ticket is bound to its sandbox.
    const other = await call('POST', '/v1/warren/sandboxes', { network: 'none' });
    assert.equal(other.status, 201, other.text);
    const t2 = await ticket(sb.id);
    const cross = await rawUpgrade(`/v1/warren/sandboxes/${other.json.id}/terminal?ticket=${t2.ticket}`);
    assert.equal(cross.status, 401);
    const plain = await rawUpgrade(`/v1/warren/sandboxes/${sb.id}/terminal?ticket=x`, { upgrade: false });
    assert.equal(plain.status, 426);
    assert.deepEqual(envelopeProblems(plain), [], plain.text);
    // Tickets need the API key and a running sandbox.
    const anon = await fetch(`${fx.srv.url}/v1/warren/sandboxes/${sb.id}/terminal_tickets`, { method: 'POST' });
    assert.equal(anon.status, 401);
    const stopped = await call('POST', '/v1/warren/sandboxes', { start: false });
    assert.equal(stopped.status, 201, stopped.text);
    const r409 = await call('POST', `/v1/warren/sandboxes/${stopped.json.id}/terminal_tickets`, {});
    assert.equal(r409.status, 409, r409.text);
    assert.deepEqual(envelopeProblems(r409), [], r409.text);
    const bad = await call('POST', `/v1/warren/sandboxes/${sb.id}/terminal_tickets`, { cols: 0 });
    assert.equal(bad.status, 400, bad.text);
  });

  test('closing the socket kills the program', async () => {
    const t = await ticket(sb.id, { command: ['/bin/sh', '-c', 'echo started; exec sleep 1000'] });
    const term = openTerminal(sb.id, t.ticket);
    await term.opened;
    await waitFor(() => term.out.includes('started'), { timeoutMs: 60_000, what: 'program output' });
    const ps = async () => (await call('POST', `/v1/warren/sandboxes/${sb.id}/exec`, { command: 'ps' })).json;
    const before = await ps();
    assert.match(before.stdout, /sleep/, JSON.stringify(before));
    term.ws.close(1000);
    await term.closed;
    await waitFor(async () => !(await ps()).stdout.includes('sleep'),
      { timeoutMs: 60_000, what: 'sleep killed' });
  });
});
