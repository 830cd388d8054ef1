// Prepared sandboxes over REST (POST /v1/warren/prepare, PUT .../dataset;
// docs/SANDBOX_API.md, docs/ORCHESTRATOR.md) against a real `warren serve`
// and the real runtime, plus `warren sandbox prepare` on the CLI. A git
// repository is served over http by a small dumb-protocol server in this
// process that answers 401 unless the request carries the token; the token
// must then appear nowhere in the sandbox's rootfs. Needs root; skips with
// the reason otherwise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, missingBinaryReason, WARREN_BIN } from './lib/server.mjs';
import { envelopeProblems } from './lib/http.mjs';
import { CONTROLLERS, mountsUnder, cgroupsUnder } from './lib/host.mjs';

function skipReason() {
  const missing = missingBinaryReason();
  if (missing) return missing;
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return 'needs root (the sandbox runtime)';
  if (!existsSync('/sys/fs/cgroup/freezer') && !existsSync('/sys/fs/cgroup/cgroup.controllers')) return 'no cgroup freezer';
  if (!existsSync('/bin/busybox') && !existsSync('/usr/bin/busybox')) return 'busybox-static missing';
  if (!existsSync('/usr/bin/git')) return 'git is not installed';
  return false;
}

const tag = `${process.pid}-${randomBytes(3).toString('hex')}`;
const SB_DIR = `/var/tmp/warren-prep-conf-${tag}`;
const PREFIX = `warren-prep-${tag}`;
const TOKEN = `ghp_${randomBytes(18).toString('hex')}`;

function sh(cmd, opts = {}) { return execFileSync('/bin/sh', ['-c', cmd], { encoding: 'utf8', ...opts }); }
/** True if grep finds `needle` in any file under `dir` (not following symlinks). */
function treeContains(dir, needle) {
  try { execFileSync('grep', ['-r', '-F', '-q', '--', needle, dir]); return true; } catch (e) {
    if (e.status === 1) return false;
    throw e;
  }
}

const fx = { srv: null, key: null, git: null, gitUrl: null, work: null, authorized: [] };

async function call(method, p, { body, raw, headers = {} } = {}) {
  const h = { 'x-api-key': fx.key, ...headers };
  let payload = raw;
  if (body !== undefined) { payload = JSON.stringify(body); h['content-type'] = 'application/json'; }
  const res = await fetch(fx.srv.url + p, { method, headers: h, body: payload });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: Object.fromEntries(res.headers), text, json };
}
function assertError(res, status, msgRe) {
  assert.equal(res.status, status, `want ${status}, got ${res.status}: ${res.text.slice(0, 300)}`);
  assert.deepEqual(envelopeProblems(res), []);
  if (msgRe) assert.match(res.json.error.message, msgRe);
}
async function execIn(id, command) {
  const r = await call('POST', `/v1/warren/sandboxes/${id}/exec`, { body: { command } });
  assert.equal(r.status, 200, r.text);
  return r.json;
}

describe('prepared sandboxes', { skip: skipReason() }, () => {
  before(async () => {
    fx.work = mkdtempSync(path.join(tmpdir(), 'warren-prep-'));
    sh(`cd ${fx.work} && git init -q -b main src && cd src && echo 'prepared content' > README && ` +
       `git add . && git -c user.name=t -c user.email=t@e commit -q -m init && cd .. && ` +
       `git clone -q --bare src repo.git && git -C repo.git update-server-info`);
    const expected = 'Basic ' + Buffer.from(`x-access-token:${TOKEN}`).toString('base64');
    fx.git = http.createServer((req, res) => {
      if (req.headers.authorization !== expected) {
        res.writeHead(401, { 'www-authenticate': 'Basic realm="git"' }).end();
        return;
      }
      fx.authorized.push(req.url);
      const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      const file = path.join(fx.work, path.normalize(rel));
      if (!file.startsWith(fx.work + '/') || !existsSync(file) || !statSync(file).isFile()) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200).end(readFileSync(file));
    });
    await new Promise((r) => fx.git.listen(0, '127.0.0.1', r));
    fx.gitUrl = `http://127.0.0.1:${fx.git.address().port}/repo.git`;
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
    if (fx.git) fx.git.close();
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
    const cgs = cgroupsUnder(PREFIX);
    for (const c of CONTROLLERS) { try { rmdirSync(`/sys/fs/cgroup/${c}/${PREFIX}`); } catch { /* absent */ } }
    if (mounts.length === 0) rmSync(SB_DIR, { recursive: true, force: true });
    rmSync(fx.work, { recursive: true, force: true });
    assert.ok(alive, `warren serve died during the suite:\n${tail}`);
    assert.deepEqual(mounts, [], 'no mount left under the sandbox data dir');
    assert.deepEqual(cgs, [], 'no cgroup left under the prefix');
  });

  test('bad prepare requests are 400 in the envelope and leave no sandbox', async () => {
    const cases = [
      [{}, /environment_id/],
      [{ environment_id: 'env_1', repositories: [{ url: fx.work + '/repo.git' }] }, /local paths/],
      [{ environment_id: 'env_1', repositories: [{ url: 'https://u:p@example.com/r.git' }] }, /user info/],
      [{ environment_id: 'env_1', repositories: [{ url: 'http://example.com/r.git', authorization_token: 't' }] }, /plain http/],
      [{ environment_id: 'env_1', repositories: [{ url: 'ssh://example.com/r.git' }] }, /https/],
      [{ environment_id: 'env_1', labels: { 'warren.mode': 'x' } }, /reserved/],
      [{ environment_id: 'env_1', credentials: [{ name: 'A', value: 'v', type: 'disk' }] }, /type/],
      [{ environment_id: 'env_1', credentials: [{ name: '../x', value: 'v' }] }, /credential name/],
      [{ environment_id: 'env_1', credentials: [{ name: 'A', value: 'v', ttl_seconds: 0 }] }, /ttl_seconds/],
      [{ environment_id: 'env_1', colour: 'blue' }, /unknown field/],
      [{ environment_id: 'env_1', repositories: [{ url: fx.gitUrl, authorization_token: 'wrong' }] }, /git clone/],
    ];
    for (const [body, re] of cases) {
      const r = await call('POST', '/v1/warren/prepare', { body });
      assertError(r, 400, re);
      assert.ok(!r.text.includes(TOKEN));
    }
    const list = await call('GET', '/v1/warren/sandboxes');
    assert.deepEqual(list.json.data, [], 'a failed prepare deletes its sandbox');
  });

  test('prepare over REST: token clone leaves no trace, credentials, dataset upload', async () => {
    fx.authorized.length = 0;
    const r = await call('POST', '/v1/warren/prepare', { body: {
      environment_id: 'env_rest',
      labels: { team: 'a' },
      repositories: [{ url: fx.gitUrl, authorization_token: TOKEN, mount_path: '/workspace/repo' }],
      credentials: [{ name: 'db.txt', value: 'file-secret', ttl_seconds: 600 }, { name: 'API_KEY', value: 'env-secret', type: 'env' }],
    } });
    assert.equal(r.status, 201, r.text);
    assert.equal(r.json.type, 'prepared_sandbox');
    const sb = r.json.sandbox;
    assert.equal(sb.labels['warren.mode'], 'prepared');
    assert.equal(sb.labels['warren.environment_id'], 'env_rest');
    assert.ok(sb.labels['warren.credentials_expire_at']);
    assert.equal(r.json.repositories[0].head.length, 40);
    assert.deepEqual(r.json.credentials.map((c) => [c.name, c.type]), [['db.txt', 'file'], ['API_KEY', 'env']]);
    assert.ok(!r.text.includes(TOKEN) && !r.text.includes('secret'), 'no secret in the answer');
    assert.ok(fx.authorized.some((u) => u.includes('/info/refs')), 'the server saw the token');
    assert.equal((await execIn(sb.id, 'cat /workspace/repo/README')).stdout, 'prepared content\n');
    assert.equal((await execIn(sb.id, 'cat /run/warren/credentials/db.txt')).stdout, 'file-secret');
    const rootfs = `${SB_DIR}/pool/sandboxes/${sb.id}`;
    assert.ok(existsSync(rootfs), rootfs);
    assert.ok(treeContains(rootfs, 'prepared content'), 'the grep probe sees the clone');
    assert.ok(!treeContains(rootfs, TOKEN), 'the token is nowhere in the sandbox');
    assert.ok(!treeContains(rootfs, 'env-secret'), 'env credentials stay out of the sandbox');
    assert.ok(!treeContains(SB_DIR + '/sandboxes', TOKEN), 'nor in the runtime state');
    assert.ok(!treeContains(SB_DIR + '/prepared', TOKEN), 'nor in the preparer state');
    // Dataset upload: a tar.gz body.
    sh(`mkdir -p ${fx.work}/ds/d && echo rows > ${fx.work}/ds/d/t.csv && tar -C ${fx.work}/ds -czf ${fx.work}/ds.tgz d`);
    const up = await call('PUT', `/v1/warren/sandboxes/${sb.id}/dataset?path=/data`, { raw: readFileSync(`${fx.work}/ds.tgz`) });
    assert.equal(up.status, 200, up.text);
    assert.equal(up.json.type, 'dataset_loaded');
    assert.equal((await execIn(sb.id, 'cat /data/d/t.csv')).stdout, 'rows\n');
    assertError(await call('PUT', `/v1/warren/sandboxes/${sb.id}/dataset?path=/data`, { raw: Buffer.from('not a tarball') }), 400);
    assertError(await call('PUT', `/v1/warren/sandboxes/${sb.id}/dataset?path=relative`, { raw: readFileSync(`${fx.work}/ds.tgz`) }), 400);
  });

  test('warren sandbox prepare on the CLI: local repo, dataset dir, credentials from a file and the environment', () => {
    sh(`mkdir -p ${fx.work}/cli && echo one > ${fx.work}/cli/1.txt && printf s3 > ${fx.work}/secret`);
    const out = execFileSync(WARREN_BIN, ['sandbox', 'prepare', '--data-dir', SB_DIR, '--environment', 'env_cli', '--json',
      '--repo', fx.work + '/repo.git', '--repo-path', '/src', '--dataset', `${fx.work}/cli:/in`,
      '--credential-file', `key=${fx.work}/secret`, '--credential-env', 'MY_VAR', '--credential-ttl', '10m'],
    { encoding: 'utf8', env: { ...process.env, MY_VAR: 'from-env', WARREN_SANDBOX_CGROUP_PREFIX: PREFIX } });
    const j = JSON.parse(out);
    assert.equal(j.sandbox.labels['warren.mode'], 'prepared');
    assert.equal(j.sandbox.labels['warren.environment_id'], 'env_cli');
    assert.deepEqual(j.credentials.map((c) => c.name), ['key', 'MY_VAR']);
    const rootfs = `${SB_DIR}/pool/sandboxes/${j.sandbox.id}`;
    assert.equal(readFileSync(`${rootfs}/src/README`, 'utf8'), 'prepared content\n');
    assert.equal(readFileSync(`${rootfs}/in/1.txt`, 'utf8'), 'one\n');
    assert.equal(readFileSync(`${rootfs}/run/warren/credentials/key`, 'utf8'), 's3');
    assert.ok(!treeContains(rootfs, 'from-env'));
  });
});
