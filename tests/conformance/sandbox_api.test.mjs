// Warren's sandbox REST API (/v1/warren/, docs/SANDBOX_API.md) against a real
// `warren serve` running the real runtime. Needs root (namespaces, cgroups,
// a loop-mounted btrfs pool); skips with the reason otherwise.
//
// Each run uses its own sandbox data dir under /var/tmp and its own cgroup
// prefix, deletes what it made, and checks at the end that no mount, loop
// device or cgroup is left behind.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { existsSync, readFileSync, readdirSync, rmSync, rmdirSync } from 'node:fs';
import { startServer, missingBinaryReason, runCli } from './lib/server.mjs';
import { envelopeProblems } from './lib/http.mjs';
import { CONTROLLERS, mountsUnder, loopsLeft, cgroupsUnder } from './lib/host.mjs';

function skipReason() {
  const missing = missingBinaryReason();
  if (missing) return missing;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (the sandbox runtime uses namespaces, cgroups and a loop-mounted pool)';
  if (!existsSync('/sys/fs/cgroup/freezer') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup freezer';
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) return 'busybox-static missing (builtin:minimal snapshot)';
  return false;
}

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const SB_DIR = `/var/tmp/warren-api-conf-${tag}`;
const PREFIX = `warren-api-${tag}`;


const fx = { srv: null, key: null };

async function call(method, path, { body, headers = {}, key = fx.key, raw } = {}) {
  const h = { ...headers };
  if (key) h['x-api-key'] = key;
  let payload = raw;
  if (body !== undefined) {
    payload = typeof body === 'string' ? body : JSON.stringify(body);
    h['content-type'] = 'application/json';
  }
  const res = await fetch(fx.srv.url + path, { method, headers: h, body: payload });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: Object.fromEntries(res.headers), text, json };
}

function assertError(res, status, type, msgRe) {
  assert.equal(res.status, status, `want ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  const p = envelopeProblems(res);
  assert.deepEqual(p, [], `error envelope: ${p.join('; ')}`);
  if (type) assert.equal(res.json.error.type, type, res.text);
  if (msgRe) assert.match(res.json.error.message, msgRe);
}

async function ok(method, path, opts, status = 200) {
  const r = await call(method, path, opts);
  assert.equal(r.status, status, `${method} ${path}: ${r.status} ${r.text.slice(0, 400)}`);
  return r.json;
}

async function exec(id, body) {
  return ok('POST', `/v1/warren/sandboxes/${id}/exec`, { body });
}

/** Reads an SSE response from fetch into [{event, data}]. */
async function sse(method, path, { body, headers = {} } = {}) {
  const res = await fetch(fx.srv.url + path, {
    method,
    headers: { 'x-api-key': fx.key, 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  assert.equal(res.status, 200, `${path}: ${res.status} ${res.status !== 200 ? await res.text() : ''}`);
  assert.match(res.headers.get('content-type') || '', /text\/event-stream/);
  const frames = [];
  const text = await res.text();
  for (const block of text.split('\n\n')) {
    let event = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (event) frames.push({ event, data: JSON.parse(data.join('\n')) });
  }
  return frames;
}

/** Deterministic pseudo-random bytes in 1 MiB pieces (xorshift), hashed as produced. */
function* pieces(totalMiB, seed) {
  let x = seed >>> 0 || 1;
  for (let i = 0; i < totalMiB; i++) {
    const b = Buffer.allocUnsafe(1 << 20);
    for (let j = 0; j < b.length; j += 4) {
      x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
      b.writeUInt32LE(x, j);
    }
    yield b;
  }
}

describe('sandbox REST API', { skip: skipReason() }, () => {
  let sb; // the main sandbox
  const made = new Set();

  before(async () => {
    fx.srv = await startServer({
      env: {
        WARREN_SANDBOX_ENABLED: 'true',
        WARREN_SANDBOX_DATA_DIR: SB_DIR,
        WARREN_SANDBOX_CGROUP_PREFIX: PREFIX,
        WARREN_SANDBOX_POOL_BYTES: String(8 * 2 ** 30),
      },
    });
    fx.key = fx.srv.apiKey;
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
    // Leak checks: the runtime unmounts its idle pool at shutdown.
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

  test('features', async () => {
    const f = await ok('GET', '/v1/warren/features');
    assert.equal(f.type, 'features');
    assert.ok(['btrfs', 'btrfs-loop', 'copy'].includes(f.pool_kind), JSON.stringify(f));
    assert.ok(['v1', 'v2'].includes(f.cgroup_version));
    assert.equal(typeof f.copy_on_write_fork, 'boolean');
  });

  test('auth: no key 401, unknown key 401, environment key 403 (envelopes)', async () => {
    assertError(await call('GET', '/v1/warren/sandboxes', { key: null }), 401, 'authentication_error');
    assertError(await call('GET', '/v1/warren/sandboxes', { key: 'wrn-api-nope-nope-nope-nope' }), 401, 'authentication_error');
    const env = await ok('POST', '/v1/environments', { body: { name: `sb-api-${tag}`, config: { type: 'self_hosted' } } });
    const envKey = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', fx.srv.dataDir]);
    const r = await fetch(fx.srv.url + '/v1/warren/sandboxes', { headers: { authorization: `Bearer ${envKey}` } });
    const res = { status: r.status, headers: Object.fromEntries(r.headers), text: await r.text() };
    res.json = JSON.parse(res.text);
    assertError(res, 403, 'permission_error', /organization API key/);
    // Uploads are refused from the head, before the body is read.
    const up = await fetch(fx.srv.url + '/v1/warren/sandboxes/sbx_x/files/content?path=/x', {
      method: 'PUT', headers: { authorization: `Bearer ${envKey}` }, body: 'data',
    });
    assert.equal(up.status, 403, await up.text());
  });

  test('create, get, list with label/state filters and paging', async () => {
    sb = await ok('POST', '/v1/warren/sandboxes', {
      body: {
        name: `main-${tag}`, labels: { team: 'qa', role: 'main' }, env: { GREETING: 'hello' },
        resources: { memory_bytes: 256 << 20, pids: 256 }, auto_stop_minutes: 60, network: 'none',
      },
    }, 201);
    made.add(sb.id);
    assert.equal(sb.type, 'sandbox');
    assert.equal(sb.state, 'started');
    assert.equal(sb.name, `main-${tag}`);
    assert.deepEqual(sb.labels, { team: 'qa', role: 'main' });
    assert.equal(sb.resources.memory_bytes, 256 << 20);
    assert.equal(sb.auto_stop_minutes, 60);
    assert.deepEqual(sb.network, { type: 'none', allow_cidrs: [], block_all: false, dns: [] });
    const other = await ok('POST', '/v1/warren/sandboxes', { body: { labels: { team: 'dev' }, start: false } }, 201);
    made.add(other.id);
    assert.equal(other.state, 'stopped');

    const got = await ok('GET', `/v1/warren/sandboxes/${sb.id}`);
    assert.equal(got.id, sb.id);
    const byName = await ok('GET', `/v1/warren/sandboxes/${sb.name}`);
    assert.equal(byName.id, sb.id, 'a name works where an id does');

    const qa = await ok('GET', '/v1/warren/sandboxes?label=team=qa');
    assert.deepEqual(qa.data.map((s) => s.id), [sb.id]);
    const both = await ok('GET', '/v1/warren/sandboxes?label=team=qa&label=role=main');
    assert.deepEqual(both.data.map((s) => s.id), [sb.id]);
    const none = await ok('GET', '/v1/warren/sandboxes?label=team=qa&label=role=other');
    assert.deepEqual(none.data, []);
    const stopped = await ok('GET', '/v1/warren/sandboxes?state=stopped');
    assert.deepEqual(stopped.data.map((s) => s.id), [other.id]);

    const p1 = await ok('GET', '/v1/warren/sandboxes?limit=1');
    assert.equal(p1.data.length, 1);
    assert.match(p1.next_page, /^page_/);
    const p2 = await ok('GET', `/v1/warren/sandboxes?limit=1&page=${p1.next_page}`);
    assert.equal(p2.data.length, 1);
    assert.notEqual(p2.data[0].id, p1.data[0].id);
    assert.equal(p2.next_page, null);

    assert.deepEqual(await ok('DELETE', `/v1/warren/sandboxes/${other.id}`), { id: other.id, type: 'sandbox_deleted' });
    made.delete(other.id);
  });

  test('paging: each sandbox once, in order, while others are created and deleted between pages', async () => {
    // A keyset listing (runtime ListPage): sandboxes created after the
    // cursor are listed once, deleted ones not yet reached are not, nothing
    // is listed twice (docs/SANDBOX.md "Listings page by key").
    const label = `pg${tag.replace(/[^A-Za-z0-9]/g, '')}`;
    const mk = async () => {
      const s = await ok('POST', '/v1/warren/sandboxes', { body: { labels: { paging: label }, start: false } }, 201);
      made.add(s.id);
      return s;
    };
    const initial = [];
    for (let i = 0; i < 9; i++) initial.push(await mk());
    const seen = [];
    const created = [];
    const deletedAhead = new Set();
    const addedAhead = new Set();
    let page = null;
    for (let n = 0; n < 60; n++) {
      const r = await ok('GET', `/v1/warren/sandboxes?label=paging=${label}&limit=2${page ? `&page=${page}` : ''}`);
      assert.ok(r.data.length <= 2);
      for (const s of r.data) { seen.push(s.id); created.push(s.created_at); }
      if (!r.next_page) break;
      page = r.next_page;
      addedAhead.add((await mk()).id); // created now: after the cursor
      const notYet = initial.find((s) => !seen.includes(s.id) && !deletedAhead.has(s.id));
      if (notYet) {
        assert.deepEqual(await ok('DELETE', `/v1/warren/sandboxes/${notYet.id}`), { id: notYet.id, type: 'sandbox_deleted' });
        made.delete(notYet.id);
        deletedAhead.add(notYet.id);
      }
    }
    assert.equal(new Set(seen).size, seen.length, `listed twice: ${seen.join(' ')}`);
    for (let i = 1; i < created.length; i++) assert.ok(created[i - 1] <= created[i], `out of order at ${i}: ${created.join(' ')}`);
    for (const s of initial) assert.equal(seen.includes(s.id), !deletedAhead.has(s.id), s.id);
    for (const id of addedAhead) assert.ok(seen.includes(id), `created ahead of the cursor, not listed: ${id}`);
    assert.ok(deletedAhead.size >= 2, 'some were deleted ahead of the cursor');
    for (const id of [...made]) {
      if (!seen.includes(id) && !addedAhead.has(id)) continue;
      await ok('DELETE', `/v1/warren/sandboxes/${id}`);
      made.delete(id);
    }
  });

  test('exec: argv, command, env, cwd, stdin, exit code, timeout', async () => {
    const a = await exec(sb.id, { argv: ['/bin/sh', '-c', 'echo "$GREETING $EXTRA"; pwd; cat; echo oops >&2; exit 7'], env: { EXTRA: 'world' }, cwd: '/tmp', stdin: 'from-stdin' });
    assert.equal(a.type, 'exec_result');
    assert.equal(a.exit_code, 7);
    assert.equal(a.stdout, 'hello world\n/tmp\nfrom-stdin');
    assert.equal(a.stderr, 'oops\n');
    assert.equal(a.timed_out, false);
    const b = await exec(sb.id, { command: 'id -u; whoami', user: 'sandbox' });
    assert.equal(b.stdout, '1000\nsandbox\n');
    const t = await exec(sb.id, { command: 'sleep 30', timeout_ms: 300 });
    assert.equal(t.timed_out, true);
  });

  test('exec: SSE stream (stream:true and Accept header) with stdout/stderr chunks and exit', async () => {
    const frames = await sse('POST', `/v1/warren/sandboxes/${sb.id}/exec`, {
      body: { command: 'for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; exit 4', stream: true },
    });
    const out = frames.filter((f) => f.event === 'stdout').map((f) => f.data.data).join('');
    const err = frames.filter((f) => f.event === 'stderr').map((f) => f.data.data).join('');
    assert.equal(out, 'out1\nout2\nout3\n');
    assert.equal(err, 'err1\nerr2\nerr3\n');
    assert.ok(frames.filter((f) => f.event === 'stdout').length >= 2, 'output arrives in several chunks');
    const last = frames[frames.length - 1];
    assert.equal(last.event, 'exit');
    assert.deepEqual(last.data, { type: 'exit', exit_code: 4, timed_out: false });

    const viaAccept = await sse('POST', `/v1/warren/sandboxes/${sb.id}/exec`, {
      body: { argv: ['echo', 'héllo wörld'] }, headers: { accept: 'text/event-stream' },
    });
    assert.equal(viaAccept.filter((f) => f.event === 'stdout').map((f) => f.data.data).join(''), 'héllo wörld\n');
    assert.equal(viaAccept.at(-1).event, 'exit');
  });

  test('exec: a streaming client that goes away kills its command', async () => {
    const ac = new AbortController();
    const res = await fetch(`${fx.srv.url}/v1/warren/sandboxes/${sb.id}/exec`, {
      method: 'POST', signal: ac.signal,
      headers: { 'x-api-key': fx.key, 'content-type': 'application/json', accept: 'text/event-stream' },
      body: JSON.stringify({ command: 'echo started; exec sleep 77' }),
    });
    assert.equal(res.status, 200);
    const reader = res.body.getReader();
    let seen = '';
    while (!seen.includes('started')) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += Buffer.from(value).toString();
    }
    assert.match(seen, /started/);
    const running = await exec(sb.id, { command: 'ps -o args | grep -c "^[s]leep 77"' });
    assert.equal(running.stdout.trim(), '1', 'the command runs while the client listens');
    ac.abort();
    let left = '1';
    for (let i = 0; i < 600 && left !== '0'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      left = (await exec(sb.id, { command: 'ps -o args | grep -c "^[s]leep 77"' })).stdout.trim();
    }
    assert.equal(left, '0', 'the command was killed after the client left');
  });

  test('files: 64 MiB streamed upload and download, sha256 equal, server RSS does not grow by the file size', async () => {
    const MiB = 64;
    await ok('POST', `/v1/warren/sandboxes/${sb.id}/files/mkdir`, { body: { path: '/data' } }, 201);
    const rss0 = fx.srv.rssKb('VmRSS');
    // A streamed request body (chunked): produced 1 MiB at a time.
    const body = new ReadableStream({
      start() { this.it = pieces(MiB, 12345); },
      pull(controller) {
        const n = this.it.next();
        if (n.done) controller.close();
        else controller.enqueue(n.value);
      },
    });
    const res = await fetch(`${fx.srv.url}/v1/warren/sandboxes/${sb.id}/files/content?path=/data/big.bin&mode=0640`, {
      method: 'PUT', headers: { 'x-api-key': fx.key, 'content-type': 'application/octet-stream' }, body, duplex: 'half',
    });
    const up = await res.json();
    assert.equal(res.status, 200, JSON.stringify(up));
    assert.deepEqual(up, { type: 'file_written', path: '/data/big.bin', size: MiB << 20 });
    assert.equal((await ok('GET', `/v1/warren/sandboxes/${sb.id}/files/stat?path=/data/big.bin`)).mode, '0640');
    const rssAfterUp = fx.srv.rssKb('VmRSS');

    const want = createHash('sha256');
    for (const b of pieces(MiB, 12345)) want.update(b);
    const wantHex = want.digest('hex');
    const inside = await exec(sb.id, { command: 'sha256sum /data/big.bin' });
    assert.equal(inside.stdout.split(' ')[0], wantHex, 'the file inside the sandbox has the uploaded bytes');

    const dl = await fetch(`${fx.srv.url}/v1/warren/sandboxes/${sb.id}/files/content?path=/data/big.bin`, { headers: { 'x-api-key': fx.key } });
    assert.equal(dl.status, 200);
    assert.equal(dl.headers.get('transfer-encoding'), 'chunked');
    const got = createHash('sha256');
    let n = 0;
    for await (const chunk of dl.body) { got.update(chunk); n += chunk.length; }
    assert.equal(n, MiB << 20);
    assert.equal(got.digest('hex'), wantHex, 'downloaded bytes equal the uploaded ones');
    const rssAfterDown = fx.srv.rssKb('VmRSS');
    const peak = fx.srv.rssKb('VmHWM');
    const growthMiB = (Math.max(rssAfterUp, rssAfterDown) - rss0) / 1024;
    console.log(`# RSS before ${rss0} kB, after upload ${rssAfterUp} kB, after download ${rssAfterDown} kB, peak ${peak} kB`);
    assert.ok(growthMiB < MiB / 2, `server RSS grew by ${growthMiB.toFixed(1)} MiB for a ${MiB} MiB file`);
    assert.ok((peak - rss0) / 1024 < MiB / 2 || peak < rss0 + (MiB << 10) / 2, `peak RSS ${peak} kB vs ${rss0} kB before`);

    // Range.
    const part = await fetch(`${fx.srv.url}/v1/warren/sandboxes/${sb.id}/files/content?path=/data/big.bin`, { headers: { 'x-api-key': fx.key, range: 'bytes=1048576-1048591' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), `bytes 1048576-1048591/${MiB << 20}`);
    const partBytes = Buffer.from(await part.arrayBuffer());
    const second = pieces(2, 12345); second.next();
    assert.deepEqual(partBytes, second.next().value.subarray(0, 16));
    const bad = await call('GET', `/v1/warren/sandboxes/${sb.id}/files/content?path=/data/big.bin`, { headers: { range: `bytes=${MiB << 20}-` } });
    assertError(bad, 416);
  });

  test('files: an upload over sandbox.max_upload_bytes is 413 from its head and leaves no file', async () => {
    const path = `/v1/warren/sandboxes/${sb.id}/files/content?path=/data/huge.bin`;
    const raw = await new Promise((resolve, reject) => {
      const sock = net.connect(Number(new URL(fx.srv.url).port), '127.0.0.1');
      let got = '';
      sock.on('connect', () => sock.write(`PUT ${path} HTTP/1.1\r\nHost: x\r\nx-api-key: ${fx.key}\r\nContent-Length: ${2 ** 31}\r\n\r\nsome`));
      sock.on('data', (d) => { got += d; if (got.includes('}')) { sock.destroy(); resolve(got); } });
      sock.on('error', reject);
      setTimeout(() => { sock.destroy(); resolve(got); }, 10_000);
    });
    assert.match(raw, /^HTTP\/1\.1 413/, raw);
    assert.match(raw, /request_too_large/);
    const ls = await ok('GET', `/v1/warren/sandboxes/${sb.id}/files?path=/data`);
    assert.deepEqual(ls.data.map((e) => e.name), ['big.bin'], 'no huge.bin, no temp file');
  });

  test('files: list, stat, mkdir, move, chmod, delete; small and empty uploads', async () => {
    const base = `/v1/warren/sandboxes/${sb.id}/files`;
    await ok('POST', `${base}/mkdir`, { body: { path: '/work/a/b', parents: true, mode: '0750' } }, 201);
    const put = await call('PUT', `${base}/content?path=/work/a/b/note.txt`, { raw: 'hello note' });
    assert.equal(put.status, 200, put.text);
    const empty = await call('PUT', `${base}/content?path=/work/empty.txt`, { raw: '' });
    assert.equal(empty.status, 200, empty.text);
    assert.equal(empty.json.size, 0);
    const st = await ok('GET', `${base}/stat?path=/work/a/b/note.txt`);
    assert.equal(st.type, 'file');
    assert.equal(st.size, 10);
    assert.equal(st.mode, '0644');
    const dir = await ok('GET', `${base}/stat?path=/work/a/b`);
    assert.equal(dir.type, 'dir');
    assert.equal(dir.mode, '0750');
    const ls = await ok('GET', `${base}?path=/work`);
    assert.deepEqual(ls.data.map((e) => [e.name, e.type]), [['a', 'dir'], ['empty.txt', 'file']]);
    const mv = await ok('POST', `${base}/move`, { body: { from: '/work/a/b/note.txt', to: '/work/note.txt' } });
    assert.equal(mv.path, '/work/note.txt');
    assertError(await call('GET', `${base}/stat?path=/work/a/b/note.txt`), 404, 'not_found_error');
    const ch = await ok('POST', `${base}/chmod`, { body: { path: '/work/note.txt', mode: '0600' } });
    assert.equal(ch.mode, '0600');
    const seen = await exec(sb.id, { command: 'stat -c %a /work/note.txt; cat /work/note.txt' });
    assert.equal(seen.stdout, '600\nhello note');
    assertError(await call('DELETE', `${base}?path=/work/a`), 409, 'invalid_request_error', /not empty/);
    assert.deepEqual(await ok('DELETE', `${base}?path=/work/a&recursive=true`), { type: 'file_deleted', path: '/work/a' });
    assertError(await call('GET', `${base}/stat?path=/work/a`), 404);
  });

  test('files: path escapes and symlinks never reach host files', async () => {
    const base = `/v1/warren/sandboxes/${sb.id}/files`;
    const hostPasswd = readFileSync('/etc/passwd', 'utf8');
    const sandboxPasswd = (await exec(sb.id, { command: 'cat /etc/passwd' })).stdout;
    assert.notEqual(sandboxPasswd, hostPasswd, 'precondition: the image has its own /etc/passwd');
    for (const p of ['../../etc/passwd', '/../../../etc/passwd', '/tmp/../../etc/passwd']) {
      const r = await call('GET', `${base}/content?path=${encodeURIComponent(p)}`);
      // Resolved inside the sandbox root: its own passwd, never the host's.
      assert.ok(r.status === 200 ? r.text === sandboxPasswd : envelopeProblems(r).length === 0, `${p}: ${r.status} ${r.text.slice(0, 200)}`);
      assert.notEqual(r.text, hostPasswd, `${p} must not return the host's /etc/passwd`);
    }
    await exec(sb.id, { command: 'ln -s /etc/shadow /tmp/shadow-link; ln -s ../../../../../etc/shadow /tmp/rel-link' });
    const hostShadow = readFileSync('/etc/shadow', 'utf8');
    for (const p of ['/tmp/shadow-link', '/tmp/rel-link']) {
      const r = await call('GET', `${base}/content?path=${p}`);
      assert.ok(r.status >= 400, `${p}: ${r.status}`);
      assert.deepEqual(envelopeProblems(r), []);
      assert.ok(!r.text.includes(hostShadow.split('\n')[0]), 'no host shadow content');
    }
    // Writing through a symlink that points outside stays inside the root.
    await exec(sb.id, { command: 'mkdir -p /tmp/escape && ln -s /var/tmp /tmp/escape/out' });
    const marker = `marker-${tag}`;
    const w = await call('PUT', `${base}/content?path=/tmp/escape/out/${marker}`, { raw: 'x' });
    assert.equal(w.status, 200, w.text);
    assert.equal(existsSync(`/var/tmp/${marker}`), false, 'nothing written on the host');
    assert.equal((await exec(sb.id, { command: `cat /var/tmp/${marker}` })).stdout, 'x');
    // The upload temp file is gone after a refused upload.
    const ls = await ok('GET', `${base}?path=/tmp/escape/out`);
    assert.ok(ls.data.every((e) => !e.name.startsWith('.warren-upload-')), JSON.stringify(ls.data));
  });

  test('bad input answers in the envelope', async () => {
    const id = sb.id;
    const cases = [
      ['POST', '/v1/warren/sandboxes', { name: 5 }, 400, /name/],
      ['POST', '/v1/warren/sandboxes', { labels: { a: 1 } }, 400, /labels\.a/],
      ['POST', '/v1/warren/sandboxes', { env: ['A=1'] }, 400, /env/],
      ['POST', '/v1/warren/sandboxes', { resources: { cpus: 'two' } }, 400, /cpus/],
      ['POST', '/v1/warren/sandboxes', { network: 'bridge' }, 400, /network/],
      ['POST', '/v1/warren/sandboxes', { network: { type: 'none', block_all: true } }, 400, /isolated/],
      ['POST', '/v1/warren/sandboxes', { network: { type: 'isolated', allow_cidrs: 'x' } }, 400, /allow_cidrs/],
      ['POST', '/v1/warren/sandboxes', { network: { type: 'isolated', extra: 1 } }, 400, /extra: unknown field/],
      ['POST', '/v1/warren/sandboxes', { snapshot: 'no-such-snapshot' }, 400, /snapshot/],
      ['POST', '/v1/warren/sandboxes', { bogus: true }, 400, /bogus: unknown field/],
      ['POST', '/v1/warren/sandboxes', '{"name":', 400, /not valid JSON/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, {}, 400, /command|argv/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, { command: 'true', argv: ['true'] }, 400, /exactly one/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, { argv: 'ls' }, 400, /argv/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, { command: 'true', timeout_ms: -1 }, 400, /timeout_ms/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, { command: 'true', cwd: 'relative' }, 400, /cwd/],
      ['POST', `/v1/warren/sandboxes/${id}/exec`, { command: 'true', user: 'nobody-here' }, 400, /user/],
      ['POST', `/v1/warren/sandboxes/${id}/stop`, { force: 'yes' }, 400, /force/],
      ['POST', `/v1/warren/sandboxes/${id}/fork`, { count: 0 }, 400, /count/],
      ['POST', `/v1/warren/sandboxes/${id}/fork`, { count: 1000 }, 400, /count/],
      ['PUT', `/v1/warren/sandboxes/${id}/labels`, { labels: 'x' }, 400, /labels/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, {}, 400, /network: is required/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: 'bridge' }, 400, /network/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: 'none', extra: 1 }, 400, /extra: unknown field/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: { type: 'limited', allow_hosts: ['*'] } }, 400, /allowed host '\*'/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: { type: 'limited', allow_hosts: 'a.test' } }, 400, /allow_hosts/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: { type: 'isolated', allow_hosts: ['a.test'] } }, 400, /limited/],
      ['PUT', `/v1/warren/sandboxes/${id}/network`, { network: { type: 'none', dns: ['192.0.2.1'] } }, 400, /isolated/],
      ['PUT', '/v1/warren/sandboxes/sbx_doesnotexist/network', { network: 'none' }, 404, /not found/],
      ['POST', `/v1/warren/sandboxes/${id}/files/chmod`, { path: '/tmp', mode: '999' }, 400, /mode/],
      ['POST', `/v1/warren/sandboxes/${id}/files/mkdir`, { path: '' }, 400, /path/],
      ['POST', `/v1/warren/sandboxes/${id}/files/move`, { from: '/nope', to: '/nope2' }, 404, /no such file/],
      ['GET', `/v1/warren/sandboxes/${id}/files`, undefined, 400, /path/],
      ['GET', `/v1/warren/sandboxes/${id}/files/content?path=/tmp`, undefined, 400, /not a regular file/],
      ['GET', '/v1/warren/sandboxes?state=bogus', undefined, 400, /state/],
      ['GET', '/v1/warren/sandboxes?label=novalue', undefined, 400, /label/],
      ['GET', '/v1/warren/sandboxes?limit=0', undefined, 400, /limit/],
      ['GET', '/v1/warren/sandboxes?page=garbage', undefined, 400, /page/],
      ['GET', '/v1/warren/sandboxes/sbx_doesnotexist', undefined, 404, /not found/],
      ['DELETE', '/v1/warren/sandboxes/sbx_doesnotexist', undefined, 404, /not found/],
      ['POST', '/v1/warren/sandboxes/sbx_doesnotexist/exec', { command: 'true' }, 404, /not found/],
      ['GET', '/v1/warren/sandboxes/sbx_doesnotexist/files?path=/', undefined, 404, /not found/],
      ['GET', '/v1/warren/snapshots/no-such', undefined, 404, /not found/],
      ['POST', '/v1/warren/snapshots', { name: 'x', recipe: 'FROM dir:/etc' }, 400, /host paths/],
      ['POST', '/v1/warren/snapshots', { name: 'x', recipe: 'FROM builtin:minimal\nCOPY a /a' }, 400, /COPY/],
      ['POST', '/v1/warren/snapshots', { name: 'x', recipe: 'RUN true' }, 400, /recipe/],
      ['POST', '/v1/warren/snapshots', { name: 'x' }, 400, /recipe/],
      ['GET', '/v1/warren/nothing-here', undefined, 404, /no route/],
    ];
    for (const [method, path, body, status, re] of cases) {
      const r = await call(method, path, typeof body === 'string' ? { raw: body, headers: { 'content-type': 'application/json' } } : { body });
      assert.equal(r.status, status, `${method} ${path} ${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 300)}`);
      assert.deepEqual(envelopeProblems(r), [], `${method} ${path}`);
      assert.match(r.json.error.message, re, `${method} ${path}: ${r.json.error.message}`);
    }
    assert.ok(fx.srv.alive, 'server alive after the bad-input table');
  });

  test('network: isolated with an allow list (when the host supports it)', async (t) => {
    const f = await ok('GET', '/v1/warren/features');
    if (!f.network_isolated) { t.skip(`isolated network unavailable: ${f.network_reason}`); return; }
    const s = await ok('POST', '/v1/warren/sandboxes', {
      body: { network: { type: 'isolated', block_all: true, allow_cidrs: ['192.0.2.0/24'] } },
    }, 201);
    made.add(s.id);
    assert.deepEqual(s.network, { type: 'isolated', allow_cidrs: ['192.0.2.0/24'], block_all: true, dns: [] });
    const ifs = await exec(s.id, { command: 'ls /sys/class/net | sort | tr "\\n" " "' });
    assert.equal(ifs.stdout, 'eth0 lo ');
    assertError(await call('POST', '/v1/warren/sandboxes', { body: { network: { type: 'isolated', allow_cidrs: ['10.0.0.0/33'] } } }), 400, 'invalid_request_error');
    assert.deepEqual(await ok('DELETE', `/v1/warren/sandboxes/${s.id}`), { id: s.id, type: 'sandbox_deleted' });
    made.delete(s.id);
  });

  test('network: changed on a running sandbox without a restart (when the host supports it)', async (t) => {
    const f = await ok('GET', '/v1/warren/features');
    if (!f.network_isolated) { t.skip(`isolated network unavailable: ${f.network_reason}`); return; }
    const s = await ok('POST', '/v1/warren/sandboxes', { body: { network: 'none' } }, 201);
    made.add(s.id);
    const ifs = async () => (await exec(s.id, { command: 'ls /sys/class/net | sort | tr "\\n" " "' })).stdout;
    assert.equal(await ifs(), 'lo ');
    // The init's start time (field 22 of /proc/1/stat) changes if the sandbox restarts.
    const initStart = async () => (await exec(s.id, { command: 'cut -d" " -f22 /proc/1/stat' })).stdout;
    const started = await initStart();
    assert.match(started, /^\d+\n$/);
    const iso = await ok('PUT', `/v1/warren/sandboxes/${s.id}/network`, {
      body: { network: { type: 'isolated', block_all: true, allow_cidrs: ['192.0.2.0/24'] } },
    });
    assert.equal(iso.state, 'started');
    assert.deepEqual(iso.network, { type: 'isolated', allow_cidrs: ['192.0.2.0/24'], block_all: true, dns: [] });
    assert.equal(await ifs(), 'eth0 lo ');
    assert.deepEqual((await ok('GET', `/v1/warren/sandboxes/${s.id}`)).network, iso.network, 'persisted');
    const none = await ok('PUT', `/v1/warren/sandboxes/${s.id}/network`, { body: { network: 'none' } });
    assert.deepEqual(none.network, { type: 'none', allow_cidrs: [], block_all: false, dns: [] });
    assert.equal(await ifs(), 'lo ');
    assert.equal(await initStart(), started, 'never restarted');
    assert.deepEqual(await ok('DELETE', `/v1/warren/sandboxes/${s.id}`), { id: s.id, type: 'sandbox_deleted' });
    made.delete(s.id);
  });

  test('labels are replaced as a whole', async () => {
    const r = await ok('PUT', `/v1/warren/sandboxes/${sb.id}/labels`, { body: { labels: { team: 'qa', stage: 'two' } } });
    assert.deepEqual(r.labels, { team: 'qa', stage: 'two' });
    const q = await ok('GET', '/v1/warren/sandboxes?label=stage=two');
    assert.deepEqual(q.data.map((s) => s.id), [sb.id]);
  });

  test('stats', async () => {
    const s = await ok('GET', `/v1/warren/sandboxes/${sb.id}/stats`);
    assert.equal(s.type, 'sandbox_stats');
    assert.ok(s.memory_bytes > 0, JSON.stringify(s));
    assert.ok(s.pids >= 1);
  });

  test('stop and start keep files; exec while stopped is 409; the file API works while stopped', async () => {
    await exec(sb.id, { command: 'echo kept > /work/kept.txt' });
    const st = await ok('POST', `/v1/warren/sandboxes/${sb.id}/stop`, { body: { force: false } });
    assert.equal(st.state, 'stopped');
    assertError(await call('POST', `/v1/warren/sandboxes/${sb.id}/exec`, { body: { command: 'true' } }), 409, 'invalid_request_error', /stopped/);
    assertError(await call('POST', `/v1/warren/sandboxes/${sb.id}/pause`), 409);
    const f = await call('GET', `/v1/warren/sandboxes/${sb.id}/files/content?path=/work/kept.txt`);
    assert.equal(f.text, 'kept\n');
    const started = await ok('POST', `/v1/warren/sandboxes/${sb.id}/start`);
    assert.equal(started.state, 'started');
    assert.equal((await exec(sb.id, { command: 'cat /work/kept.txt' })).stdout, 'kept\n');
  });

  test('pause and resume', async () => {
    const p = await ok('POST', `/v1/warren/sandboxes/${sb.id}/pause`);
    assert.equal(p.state, 'paused');
    assertError(await call('POST', `/v1/warren/sandboxes/${sb.id}/exec`, { body: { command: 'true' } }), 409, null, /paused/);
    assertError(await call('POST', `/v1/warren/sandboxes/${sb.id}/resume`, { body: { surprise: 1 } }), 400, null, /unknown field/);
    const r = await ok('POST', `/v1/warren/sandboxes/${sb.id}/resume`);
    assert.equal(r.state, 'started');
    // Resuming a started sandbox is idempotent in the runtime.
    assert.equal((await ok('POST', `/v1/warren/sandboxes/${sb.id}/resume`)).state, 'started');
    assert.equal((await exec(sb.id, { command: 'echo back' })).stdout, 'back\n');
  });

  test('shell sessions: state persists, separate streams, async + input, delete kills descendants', async () => {
    const base = `/v1/warren/sandboxes/${sb.id}/sessions`;
    const sess = await ok('POST', base, { body: { session_id: 'work', env: { GREETING: 'hi' } } }, 201);
    assert.equal(sess.session_id, 'work');
    assert.equal(sess.alive, true);
    assertError(await call('POST', base, { body: { session_id: 'work' } }), 409);
    assertError(await call('POST', base, { body: { session_id: '../x' } }), 400, 'invalid_request_error', /session_id/);
    assertError(await call('POST', base, { body: { session_id: 's', color: 1 } }), 400, null, /unknown field/);
    const x = (command, extra = {}) => ok('POST', `${base}/work/exec`, { body: { command, ...extra } });
    await x('cd /tmp && export SEEN=yes');
    const c = await x('pwd; echo $SEEN $GREETING; echo oops >&2; false');
    assert.equal(c.stdout, '/tmp\nyes hi\n');
    assert.equal(c.stderr, 'oops\n');
    assert.equal(c.exit_code, 1);
    assert.equal(c.running, false);
    const a = await x('read line; echo "got $line"', { async: true });
    assert.equal(a.running, true);
    await ok('POST', `${base}/work/commands/${a.id}/input`, { body: { data: 'ping\n' } });
    let done;
    for (let i = 0; i < 1200; i++) {
      done = await ok('GET', `${base}/work/commands/${a.id}`);
      if (!done.running) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(done.stdout, 'got ping\n');
    assert.equal(done.exit_code, 0);
    assert.equal((await ok('GET', base)).data.length, 1);
    assert.equal((await ok('GET', `${base}/work`)).commands.length >= 3, true);
    await x('(setsid sleep 1000 &) ; sleep 1000 & echo started');
    const del = await ok('DELETE', `${base}/work`);
    assert.equal(del.type, 'sandbox_session_deleted');
    assertError(await call('GET', `${base}/work`), 404);
    const ps = await exec(sb.id, { command: 'ps -o comm | grep -c "^sleep" || true' });
    assert.equal(ps.stdout.trim(), '0', 'no sleep survives the session');
    assertError(await call('GET', `${base}/nope/commands/cmd-1`), 404);
  });

  test('archive and restore keep files; exec while archived is refused', async () => {
    const box = await ok('POST', '/v1/warren/sandboxes', { body: { name: 'to-archive', auto_archive_minutes: 60, auto_delete_minutes: -1 } }, 201);
    made.add(box.id);
    assert.equal(box.auto_archive_minutes, 60);
    assert.equal(box.auto_delete_minutes, -1);
    await exec(box.id, { command: 'echo archived-data > /root/a.txt' });
    const ar = await ok('POST', `/v1/warren/sandboxes/${box.id}/archive`);
    assert.equal(ar.state, 'archived');
    assert.ok(ar.archive_bytes > 0);
    assert.notEqual((await call('POST', `/v1/warren/sandboxes/${box.id}/exec`, { body: { command: 'true' } })).status, 200);
    const rs = await ok('POST', `/v1/warren/sandboxes/${box.id}/restore`);
    assert.equal(rs.state, 'stopped');
    assert.equal((await ok('POST', `/v1/warren/sandboxes/${box.id}/start`)).state, 'started');
    assert.equal((await exec(box.id, { command: 'cat /root/a.txt' })).stdout, 'archived-data\n');
    assertError(await call('POST', '/v1/warren/sandboxes', { body: { auto_delete_minutes: -2 } }), 400, 'invalid_request_error', /auto_delete_minutes/);
  });

  test('fork and tree', async () => {
    const f = await ok('POST', `/v1/warren/sandboxes/${sb.id}/fork`, { body: { count: 2 } }, 201);
    assert.equal(f.data.length, 2);
    for (const c of f.data) {
      made.add(c.id);
      assert.equal(c.parent, sb.id);
      assert.equal(c.state, 'started');
      assert.equal((await exec(c.id, { command: 'cat /work/kept.txt' })).stdout, 'kept\n', 'the child has the parent files');
    }
    await exec(f.data[0].id, { command: 'echo child > /work/kept.txt' });
    assert.equal((await exec(sb.id, { command: 'cat /work/kept.txt' })).stdout, 'kept\n', 'children are copies');
    const tree = await ok('GET', `/v1/warren/sandboxes/${sb.id}/tree`);
    assert.equal(tree.type, 'sandbox_tree');
    assert.equal(tree.parent, null);
    assert.deepEqual([...tree.children].sort(), f.data.map((c) => c.id).sort());
    const ct = await ok('GET', `/v1/warren/sandboxes/${f.data[1].id}/tree`);
    assert.equal(ct.parent, sb.id);
    assert.deepEqual(ct.ancestors, [sb.id]);
  });

  test('volumes: create with a size, bad input, list/get, EDQUOT past the size, delete refused while used', async () => {
    const bad = [
      [{ name: 'a/b' }, 400, /volume name/],
      [{ name: 'v', size_bytes: 4096 }, 400, /size_bytes/],
      [{ name: 'v', size_bytes: -1 }, 400, /size_bytes/],
      [{ name: 'v', size_bytes: '1G' }, 400, /size_bytes/],
      [{ name: 'v', extra: 1 }, 400, /extra: unknown field/],
      [{}, 400, /name/],
    ];
    for (const [body, status, re] of bad) {
      const r = await call('POST', '/v1/warren/volumes', { body });
      assert.equal(r.status, status, `${JSON.stringify(body)} -> ${r.status} ${r.text.slice(0, 300)}`);
      assert.deepEqual(envelopeProblems(r), []);
      assert.match(r.json.error.message, re);
    }
    assertError(await call('GET', '/v1/warren/volumes/no-such'), 404, null, /not found/);
    const v = await ok('POST', '/v1/warren/volumes', { body: { name: 'capped', size_bytes: 8 * 2 ** 20 } }, 201);
    assert.equal(v.type, 'volume');
    assert.equal(v.size_bytes, 8 * 2 ** 20);
    assert.equal(v.subvolume, true);
    assertError(await call('POST', '/v1/warren/volumes', { body: { name: 'capped' } }), 409, null, /exists/);
    const s = await ok('POST', '/v1/warren/sandboxes', { body: { volumes: [{ volume: 'capped', path: '/cap' }] } }, 201);
    made.add(s.id);
    const fill = await exec(s.id, { command: 'dd if=/dev/zero of=/cap/f bs=1M count=32 conv=fsync 2>&1; echo rc=$?' });
    assert.match(fill.stdout, /Disk quota exceeded/, fill.stdout);
    const got = await ok('GET', '/v1/warren/volumes/capped');
    assert.ok(got.used_bytes <= 8 * 2 ** 20, `used ${got.used_bytes}`);
    assert.deepEqual(got.sandboxes, [s.id]);
    const list = await ok('GET', '/v1/warren/volumes');
    assert.ok(list.data.some((x) => x.name === 'capped'));
    assertError(await call('DELETE', '/v1/warren/volumes/capped'), 409, null, /used by sandbox/);
    await ok('DELETE', `/v1/warren/sandboxes/${s.id}`);
    made.delete(s.id);
    assert.deepEqual(await ok('DELETE', '/v1/warren/volumes/capped'), { name: 'capped', type: 'volume_deleted' });
    assertError(await call('GET', '/v1/warren/volumes/capped'), 404);
  });

  test('snapshot build with a streamed log; create from it; list, get, delete', async () => {
    const name = `snap-${tag}`;
    const recipe = 'FROM builtin:minimal\nRUN echo built-by-api > /built.txt && echo step-output\nENV ANSWER=42\nWORKDIR /srv\n';
    const frames = await sse('POST', '/v1/warren/snapshots', { body: { name, recipe, stream: true } });
    const logs = frames.filter((f) => f.event === 'log').map((f) => f.data.line);
    assert.ok(logs.length >= 2, `log lines: ${JSON.stringify(logs)}`);
    assert.ok(logs.some((l) => l.includes('step-output')), `RUN output is in the log: ${JSON.stringify(logs)}`);
    const last = frames.at(-1);
    assert.equal(last.event, 'snapshot', JSON.stringify(last));
    assert.equal(last.data.name, name);
    assert.match(last.data.hash, /^[0-9a-f]{64}$/);
    assertError(await call('POST', '/v1/warren/snapshots', { body: { name, recipe } }), 409, null, /exists/);

    const got = await ok('GET', `/v1/warren/snapshots/${name}`);
    assert.equal(got.hash, last.data.hash);
    const list = await ok('GET', '/v1/warren/snapshots');
    assert.ok(list.data.some((s) => s.name === name));

    const s2 = await ok('POST', '/v1/warren/sandboxes', { body: { snapshot: name } }, 201);
    made.add(s2.id);
    const r = await exec(s2.id, { command: 'cat /built.txt; echo $ANSWER; pwd' });
    assert.equal(r.stdout, 'built-by-api\n42\n/srv\n');

    const failing = await sse('POST', '/v1/warren/snapshots', { body: { name: `bad-${tag}`, recipe: 'FROM builtin:minimal\nRUN exit 3\n' }, headers: { accept: 'text/event-stream' } });
    assert.equal(failing.at(-1).event, 'error', JSON.stringify(failing));
    assertError(await call('GET', `/v1/warren/snapshots/bad-${tag}`), 404);

    assert.deepEqual(await ok('DELETE', `/v1/warren/snapshots/${name}`), { name, type: 'snapshot_deleted' });
    assertError(await call('GET', `/v1/warren/snapshots/${name}`), 404);
    assert.equal((await exec(s2.id, { command: 'cat /built.txt' })).stdout, 'built-by-api\n', 'sandboxes outlive their snapshot');
  });

  test('delete sandboxes; deleted ids are 404', async () => {
    for (const id of [...made]) {
      assert.deepEqual(await ok('DELETE', `/v1/warren/sandboxes/${id}`), { id, type: 'sandbox_deleted' });
      made.delete(id);
      assertError(await call('GET', `/v1/warren/sandboxes/${id}`), 404, 'not_found_error');
      assertError(await call('DELETE', `/v1/warren/sandboxes/${id}`), 404);
    }
    const left = await ok('GET', '/v1/warren/sandboxes');
    assert.deepEqual(left.data, []);
    assert.ok(fx.srv.alive);
  });
});

describe('sandbox REST API when the runtime is disabled', { skip: missingBinaryReason() }, () => {
  let srv;
  before(async () => { srv = await startServer({ env: { WARREN_SANDBOX_ENABLED: 'false' } }); });
  after(async () => { if (srv) await srv.cleanup(); });

  test('503 with the reason, in the envelope; the Managed Agents API still works', async () => {
    const r = await fetch(`${srv.url}/v1/warren/features`, { headers: { 'x-api-key': srv.apiKey } });
    const res = { status: r.status, headers: Object.fromEntries(r.headers), text: await r.text() };
    res.json = JSON.parse(res.text);
    assertError(res, 503, null, /disabled/);
    const agents = await fetch(`${srv.url}/v1/agents`, { headers: { 'x-api-key': srv.apiKey } });
    assert.equal(agents.status, 200);
  });
});
