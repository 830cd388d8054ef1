// The `warren` client commands (docs/CLI.md) against a real `warren serve`:
// agents, environments, sessions, `run` streaming a turn, approvals of gated
// tool calls through the CLI with warren-runner serving the tools, `watch`,
// `interrupt`, and errors in the service's envelope with exit code 1.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, runCli, missingBinaryReason, WARREN_BIN, REPO_ROOT } from './lib/server.mjs';
import { settle } from './lib/util.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const SCRIPT = path.resolve(here, '../golden/engine_e2e/sdk_session.json');
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

describe('warren client commands', { skip: missingBinaryReason(), timeout: 120_000 }, () => {
  let srv;
  let org;
  let tmp;
  let env;

  // Runs `warren ARGS` against the server; resolves {code, stdout, stderr}.
  function cli(args, { timeoutMs = 30_000, apiKey } = {}) {
    return new Promise((resolve) => {
      execFile(WARREN_BIN, args, {
        timeout: timeoutMs,
        env: { ...process.env, WARREN_BASE_URL: srv.url, WARREN_API_KEY: apiKey ?? srv.apiKey },
      }, (err, stdout, stderr) => resolve({ code: err ? (err.code ?? -1) : 0, stdout, stderr }));
    });
  }

  async function events(sid) {
    const out = [];
    for await (const e of org.beta.sessions.events.list(sid)) out.push(e);
    return out;
  }

  before(async () => {
    srv = await startServer({ env: { WARREN_MODEL_SCRIPT: SCRIPT } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
    tmp = await mkdtemp(path.join(tmpdir(), 'warren-cli-'));
    env = { ...process.env, WARREN_BASE_URL: srv.url, WARREN_API_KEY: srv.apiKey };
  });

  after(async () => {
    if (srv) await srv.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('agent/env/session create and list print ids; --json prints the object', async () => {
    const a = await cli(['agent', 'create', '--name', 'cli-agent']);
    assert.equal(a.code, 0, a.stderr);
    const agentId = a.stdout.trim();
    assert.match(agentId, /^agent_/);
    assert.equal((await org.beta.agents.retrieve(agentId)).name, 'cli-agent');
    const j = await cli(['agent', 'create', '--name', 'cli-json', '--ask', '--json']);
    const obj = JSON.parse(j.stdout);
    assert.equal(obj.tools[0].default_config.permission_policy.type, 'always_ask');
    const list = await cli(['agent', 'list']);
    assert.match(list.stdout, new RegExp(`${agentId}\\s+cli-agent`));
    const e = await cli(['env', 'create', '--name', 'cli-env', '--self-hosted']);
    assert.equal(e.code, 0, e.stderr);
    assert.equal((await org.beta.environments.retrieve(e.stdout.trim())).config.type, 'self_hosted');
    const s = await cli(['session', 'create', '--agent', agentId, '--env', e.stdout.trim(), '--title', 't1']);
    assert.equal(s.code, 0, s.stderr);
    const sid = s.stdout.trim();
    assert.match((await cli(['session', 'list'])).stdout, new RegExp(`${sid}\\s+idle\\s+t1`));
    assert.equal(JSON.parse((await cli(['session', 'get', sid])).stdout).id, sid);
    assert.equal((await cli(['session', 'archive', sid])).code, 0);
    assert.ok((await org.beta.sessions.retrieve(sid)).archived_at);
    assert.equal((await cli(['session', 'rm', sid])).code, 0);
    await assert.rejects(org.beta.sessions.retrieve(sid), (err) => err.status === 404);
  });

  test('run: a new session, one message, the turn streamed until end_turn (exit 0)', async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'runner'])).stdout.trim();
    const r = await cli(['run', '--agent', agentId, 'stream please']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^user: stream please$/m);
    assert.match(r.stdout, /^agent: This answer is streamed to you in several small pieces\.$/m);
    assert.match(r.stdout, /\[idle: end_turn\]/);
    assert.equal(r.stdout.match(/^user: /mg).length, 1, 'the processed echo is not printed twice');
    const sid = r.stderr.match(/session (sesn_\w+)/)[1];
    const evs = await events(sid);
    assert.equal(evs.filter((x) => x.type === 'agent.message').length, 1);
    // The default environment is made once and reused.
    const again = await cli(['run', '--agent', agentId, 'stream please']);
    assert.equal(again.code, 0);
    const envs = [];
    for await (const x of org.beta.environments.list()) if (x.name === 'warren-cli') envs.push(x);
    assert.equal(envs.length, 1);
  });

  test('a gated call: run exits 3 naming it; approve lets warren-runner run it; --deny reaches the model', {
    skip: existsSync(RUNNER) ? false : `no runner at ${RUNNER}`,
  }, async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'asker', '--ask'])).stdout.trim();
    const envId = (await cli(['env', 'create', '--name', 'gated', '--self-hosted'])).stdout.trim();
    const envKey = await runCli(['keys', 'create', 'environment', envId, '--data-dir', srv.dataDir]);
    const file = path.join(tmp, 'note.txt');
    writeFileSync(file, 'cli-approved-content\n');
    const runner = spawn(RUNNER, ['poll', '--environment-id', envId, '--environment-key', envKey,
      '--base-url', srv.url, '--workdir', tmp, '--max-idle', '60s'], { stdio: 'ignore' });
    try {
      const r = await cli(['run', '--agent', agentId, '--env', envId, `read: ${file}`]);
      assert.equal(r.code, 3, `exit 3 while waiting for an answer\n${r.stdout}\n${r.stderr}`);
      const useId = r.stdout.match(/\[(sevt_\w+)\]/)[1];
      assert.match(r.stdout, new RegExp(`needs approval: warren approve sesn_\\w+ ${useId}`));
      assert.match(r.stderr, /warren approve/);
      const sid = r.stderr.match(/session (sesn_\w+)/)[1];
      const ok = await cli(['approve', sid, useId]);
      assert.equal(ok.code, 0, ok.stderr);
      let evs;
      for (let i = 0; i < 600; i++) {
        evs = await events(sid);
        if (evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('cli-approved-content'))) break;
        await sleep(100);
      }
      assert.ok(evs.some((x) => x.type === 'user.tool_confirmation' && x.result === 'allow' && x.tool_use_id === useId));
      assert.ok(evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('The file says: cli-approved-content')),
        evs.map((x) => x.type).join(','));

      // Deny with a message: the model sees the refusal.
      const r2 = await cli(['send', sid, `read: ${file}`, '--wait']);
      assert.equal(r2.code, 3, r2.stderr);
      const use2 = [...r2.stdout.matchAll(/\[(sevt_\w+)\]/g)].at(-1)[1];
      const no = await cli(['approve', sid, use2, '--deny', '--message', 'not today']);
      assert.equal(no.code, 0, no.stderr);
      for (let i = 0; i < 600; i++) {
        evs = await events(sid);
        if (evs.filter((x) => x.type === 'agent.message').some((x) => JSON.stringify(x.content).includes('No read'))) break;
        await sleep(100);
      }
      assert.ok(evs.some((x) => x.type === 'user.tool_confirmation' && x.result === 'deny' && x.deny_message === 'not today'));
      assert.ok(evs.some((x) => x.type === 'agent.message' && JSON.stringify(x.content).includes('No read')));
    } finally {
      runner.kill('SIGTERM');
    }
  });

  test('watch --until-idle follows a turn started elsewhere; interrupt is accepted', async () => {
    const agentId = (await cli(['agent', 'create', '--name', 'watched'])).stdout.trim();
    const envId = (await cli(['env', 'create', '--name', 'watched-env'])).stdout.trim();
    const sid = (await cli(['session', 'create', '--agent', agentId, '--env', envId])).stdout.trim();
    const child = spawn(WARREN_BIN, ['watch', sid, '--until-idle'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const exited = new Promise((res) => child.on('exit', (code) => res(code)));
    for (let i = 0; i < 600 && !err.includes('watching'); i++) await sleep(50);
    assert.match(err, /watching sesn_/);
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'stream please' }] }],
    });
    assert.equal(await exited, 0, err);
    assert.match(out, /agent: This answer is streamed/);
    assert.equal((await cli(['interrupt', sid])).code, 0);
    assert.ok((await events(sid)).some((x) => x.type === 'user.interrupt'));
  });

  // Every output of --json must be one JSON document (streams: one per line).
  function parseOne(r, what) {
    assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
    try {
      return JSON.parse(r.stdout);
    } catch {
      assert.fail(`${what}: stdout is not one JSON document:\n${r.stdout}`);
    }
  }
  function parseLines(r, what) {
    const lines = r.stdout.split('\n').filter(Boolean);
    assert.ok(lines.length > 0, `${what}: no output`);
    return lines.map((l) => {
      try {
        return JSON.parse(l);
      } catch {
        return assert.fail(`${what}: a line that is not JSON: ${l}`);
      }
    });
  }

  test('--json on every client command group: the resource as one JSON document, lists as {"data":[...]}', async () => {
    // agent
    const a = parseOne(await cli(['agent', 'create', '--name', 'json-agent', '--ask', '--json']), 'agent create');
    assert.equal(a.type, 'agent');
    assert.deepEqual(await org.beta.agents.retrieve(a.id), a);
    const agents = parseOne(await cli(['agent', 'list', '--json']), 'agent list');
    assert.deepEqual(Object.keys(agents), ['data']);
    assert.deepEqual(agents.data.find((x) => x.id === a.id), a);
    // env
    const e = parseOne(await cli(['env', 'create', '--name', 'json-env', '--self-hosted', '--json']), 'env create');
    assert.equal(e.type, 'environment');
    assert.equal(e.config.type, 'self_hosted');
    assert.ok(parseOne(await cli(['env', 'list', '--json']), 'env list').data.some((x) => x.id === e.id));
    // session
    const s = parseOne(await cli(['session', 'create', '--agent', a.id, '--env', e.id, '--title', 'js', '--json']), 'session create');
    assert.equal(s.type, 'session');
    assert.equal(s.title, 'js');
    assert.equal(parseOne(await cli(['session', 'get', s.id, '--json']), 'session get').id, s.id);
    const sessions = parseOne(await cli(['session', 'list', '--json']), 'session list');
    assert.equal(sessions.data.find((x) => x.id === s.id).status, 'idle', 'the resource itself, unchanged');
    // events: send, then a gated call streamed as JSON lines (exit 3), approve --deny, interrupt
    const sent = parseOne(await cli(['send', s.id, 'hello', '--json']), 'send');
    assert.equal(sent.data[0].type, 'user.message');
    assert.match(sent.data[0].id, /^sevt_/);
    await settle(org, s.id);
    const waited = await cli(['send', s.id, 'read: /nowhere', '--wait', '--json']);
    assert.equal(waited.code, 3, waited.stderr);
    const streamed = parseLines(waited, 'send --wait');
    const use = streamed.find((x) => x.type === 'agent.tool_use');
    assert.ok(use && use.evaluated_permission === 'ask', JSON.stringify(streamed.map((x) => x.type)));
    assert.ok(streamed.some((x) => x.type === 'session.status_idle' && x.stop_reason.type === 'requires_action'));
    const denied = parseOne(await cli(['approve', s.id, use.id, '--deny', '--message', 'no', '--json']), 'approve');
    assert.equal(denied.data[0].type, 'user.tool_confirmation');
    assert.equal(denied.data[0].deny_message, 'no');
    await settle(org, s.id);
    const intr = parseOne(await cli(['interrupt', s.id, '--json']), 'interrupt');
    assert.equal(intr.data[0].type, 'user.interrupt');
    await settle(org, s.id);
    // run --json: the stream as JSON lines
    const plain = parseOne(await cli(['agent', 'create', '--name', 'json-plain', '--json']), 'agent create');
    const ran = await cli(['run', '--agent', plain.id, '--json', 'stream please']);
    assert.equal(ran.code, 0, ran.stderr);
    const evs = parseLines(ran, 'run');
    assert.ok(evs.some((x) => x.type === 'agent.message'));
    assert.equal(evs.at(-1).type, 'session.status_idle');
    // watch --json: the same JSON lines for a turn started elsewhere
    const runSid = ran.stderr.match(/session (sesn_\w+)/)[1];
    const child = spawn(WARREN_BIN, ['watch', runSid, '--until-idle', '--json'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let wout = '';
    let werr = '';
    child.stdout.on('data', (d) => { wout += d; });
    child.stderr.on('data', (d) => { werr += d; });
    const wexit = new Promise((res) => child.on('exit', (code) => res(code)));
    for (let i = 0; i < 600 && !werr.includes('watching'); i++) await sleep(50);
    await org.beta.sessions.events.send(runSid, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'stream please' }] }] });
    assert.equal(await wexit, 0, werr);
    const wevs = parseLines({ stdout: wout }, 'watch');
    assert.ok(wevs.some((x) => x.type === 'agent.message'));
    assert.equal(wevs.at(-1).stop_reason.type, 'end_turn');
    // archive / rm
    const archived = parseOne(await cli(['session', 'archive', s.id, '--json']), 'session archive');
    assert.ok(archived.archived_at);
    assert.deepEqual(parseOne(await cli(['session', 'rm', s.id, '--json']), 'session rm'), { id: s.id, type: 'session_deleted' });
    // keys
    const k = parseOne(await cli(['keys', 'create', 'api', '--data-dir', srv.dataDir, '--json']), 'keys create api');
    assert.equal(k.type, 'api_key');
    assert.equal((await cli(['agent', 'list'], { apiKey: k.key })).code, 0, 'the new key works');
    const ek = parseOne(await cli(['keys', 'create', 'environment', e.id, '--data-dir', srv.dataDir, '--json']), 'keys create environment');
    assert.equal(ek.type, 'environment_key');
    assert.equal(ek.environment_id, e.id);
    assert.ok(ek.key.length > 20);
  });

  test('session list: requires_action when a call waits for a person, running while a worker runs an allowed one', async () => {
    const asker = (await cli(['agent', 'create', '--name', 'list-asker', '--ask'])).stdout.trim();
    const doer = (await cli(['agent', 'create', '--name', 'list-doer'])).stdout.trim();
    // Self-hosted and no worker polls it: an allowed call stays pending.
    const envId = (await cli(['env', 'create', '--name', 'list-env', '--self-hosted'])).stdout.trim();
    const mk = async (agentId, title) => (await cli(['session', 'create', '--agent', agentId, '--env', envId, '--title', title])).stdout.trim();
    const gated = await mk(asker, 'gated');
    const working = await mk(doer, 'working');
    const done = await mk(doer, 'done');
    const fresh = await mk(doer, 'fresh');
    assert.equal((await cli(['send', gated, 'read: /etc/hostname', '--wait'])).code, 3);
    // (--wait would wait for the worker: send, then wait for the idle.)
    assert.equal((await cli(['send', working, 'read: /etc/hostname'])).code, 0);
    for (let i = 0; i < 1200 && !(await events(working)).some((x) => x.stop_reason?.type === 'requires_action'); i++) await sleep(50);
    assert.equal((await cli(['send', done, 'stream please', '--wait'])).code, 0);
    for (const sid of [gated, working, done]) await settle(org, sid);
    const row = (out, sid) => out.split('\n').find((l) => l.startsWith(sid + ' '));
    let out = (await cli(['session', 'list'])).stdout;
    assert.match(row(out, gated), /^sesn_\w+\s+requires_action\s+gated$/);
    assert.match(row(out, working), /^sesn_\w+\s+running\s+working$/);
    assert.match(row(out, done), /^sesn_\w+\s+idle\s+done$/);
    assert.match(row(out, fresh), /^sesn_\w+\s+idle\s+fresh$/);
    // Answered (allowed): a worker's to run now, no longer the person's.
    const use = (await events(gated)).find((x) => x.type === 'agent.tool_use');
    assert.equal((await cli(['approve', gated, use.id])).code, 0);
    out = (await cli(['session', 'list'])).stdout;
    assert.match(row(out, gated), /^sesn_\w+\s+running\s+gated$/);
    // The API's own objects are untouched: status idle for all of them.
    for (const sid of [gated, working]) assert.equal((await org.beta.sessions.retrieve(sid)).status, 'idle');
  });

  test('errors: the service envelope on stderr, exit 1; usage errors exit non-zero', async () => {
    const nf = await cli(['session', 'get', 'sesn_doesnotexist']);
    assert.equal(nf.code, 1);
    assert.match(nf.stderr, /HTTP 404 not_found_error: .*\(request req_/);
    const auth = await cli(['agent', 'list'], { apiKey: 'wrn-api-not-a-key-at-all-000000' });
    assert.equal(auth.code, 1);
    assert.match(auth.stderr, /HTTP 401 authentication_error/);
    const bad = await cli(['agent', 'create', '--name', 'x', '--model', '']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /invalid_request_error/);
    const usage = await cli(['approve', 'sesn_x']);
    assert.notEqual(usage.code, 0);
    const down = await new Promise((resolve) => execFile(WARREN_BIN, ['agent', 'list'], {
      env: { ...process.env, WARREN_BASE_URL: 'http://127.0.0.1:1', WARREN_API_KEY: 'k' },
    }, (e, so, se) => resolve({ code: e ? e.code : 0, stderr: se })));
    assert.equal(down.code, 1);
    assert.match(down.stderr, /Unavailable|connect/i);
  });
});
