// `warren run` / `warren send --wait` on a real terminal (a tmux pane, a pty)
// against a real `warren serve` with a scripted model and warren-runner
// serving the tools of a self_hosted environment: the turn streams live,
// a gated call is approved and another denied with a reason at the prompt,
// a line typed while the agent works becomes a mid-session user.message, and
// Ctrl-C sends user.interrupt (a second Ctrl-C leaves with exit 130).
// The session's events are checked through the official SDK.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { startServer, runCli, missingBinaryReason, WARREN_BIN, REPO_ROOT } from './lib/server.mjs';

const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const haveTmux = (() => { try { execFileSync('tmux', ['-V']); return true; } catch { return false; } })();
const skip = missingBinaryReason() || (!existsSync(RUNNER) && `no runner at ${RUNNER}`) || (!haveTmux && 'tmux is not installed');

const SCRIPT = {
  rules: [
    { name: 'streamed', when: { user: 'stream please' },
      reply: { text: 'This answer is streamed to you in several small pieces.', chunk: 5 } },
    { name: 'run', when: { user: { regex: '^run: (.+)$' } },
      reply: { text: 'Running it.', tool_calls: [{ name: 'bash', input: { command: '{{1}}' } }] } },
    { name: 'bash output', when: { tool_name: 'bash' }, reply: 'The command printed: {{tool_result}}' },
    { name: 'read', when: { user: { regex: '^read: (.+)$' } },
      reply: { tool_calls: [{ name: 'read', input: { file_path: '{{1}}' } }] } },
    { name: 'read output', when: { tool_name: 'read', is_error: false }, reply: 'The file says: {{tool_result}}' },
    { name: 'read refused', when: { tool_name: 'read', is_error: true }, reply: 'No read: {{tool_result}}' },
  ],
  default: { text: 'Heard: {{user}}' },
};

describe('warren run in a terminal', { skip, timeout: 120_000 }, () => {
  let srv;
  let org;
  let tmp;
  const runners = [];
  const sock = `warren-cli-live-${process.pid}`;
  const tmux = (...a) => execFileSync('tmux', ['-L', sock, '-f', '/dev/null', ...a], { encoding: 'utf8' });
  const pane = (name) => tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', name);

  async function until(what, fn, ms = 20_000) {
    let last;
    for (let t = 0; t < ms; t += 100) {
      last = await fn();
      if (last) return last;
      await sleep(100);
    }
    throw new Error(`timed out waiting for ${what}; panes:\n${tmux("list-panes", "-a", "-F", "#{session_name}").split("\n").filter(Boolean).map((n) => `--- ${n}\n${pane(n)}`).join("\n")}`);
  }
  const paneShows = (name, re) => until(`${re} in the pane`, () => re.test(pane(name)) && pane(name));
  async function events(sid) {
    const out = [];
    for await (const e of org.beta.sessions.events.list(sid)) out.push(e);
    return out;
  }
  // Starts `warren ARGS` in a 120x40 tmux pane; the pane stays after exit.
  function term(name, args, extraEnv = '') {
    const q = (s) => `'${s.replace(/'/g, `'\\''`)}'`;
    const cmd = `env ${extraEnv} WARREN_BASE_URL=${q(srv.url)} WARREN_API_KEY=${q(srv.apiKey)} ${[WARREN_BIN, ...args].map(q).join(' ')}; echo EXIT=$?`;
    tmux('new-session', '-d', '-x', '120', '-y', '40', '-s', name, cmd);
  }
  // A self_hosted environment of its own with a warren-runner serving it
  // (a runner stays with a session a while, so tests do not share one).
  async function freshEnv(name) {
    const envId = (await org.beta.environments.create({ name, config: { type: 'self_hosted' } })).id;
    const envKey = await runCli(['keys', 'create', 'environment', envId, '--data-dir', srv.dataDir]);
    runners.push(spawn(RUNNER, ['poll', '--environment-id', envId, '--environment-key', envKey,
      '--base-url', srv.url, '--workdir', tmp, '--max-idle', '60s'], { stdio: 'ignore' }));
    return envId;
  }
  const sessionOf = (text) => text.match(/session (sesn_\w+)/)[1];

  before(async () => {
    tmp = await mkdtemp(path.join(tmpdir(), 'warren-cli-live-'));
    const script = path.join(tmp, 'model.json');
    writeFileSync(script, JSON.stringify(SCRIPT));
    srv = await startServer({ env: { WARREN_MODEL_SCRIPT: script } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
    // A keeper session holds the tmux server and the global option that keeps
    // a pane (and its text) after its command exits.
    tmux('new-session', '-d', '-s', 'keeper', 'sleep 600');
    tmux('set-option', '-g', 'remain-on-exit', 'on');
  });

  after(async () => {
    try { tmux('kill-server'); } catch {}
    for (const r of runners) r.kill('SIGTERM');
    if (srv) await srv.cleanup();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  test('the turn streams live and ends with exit 0; NO_COLOR-free tty output is coloured', async () => {
    const agent = await org.beta.agents.create({ name: 'plain', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401' }] });
    const envId = await freshEnv('live-' + Math.random().toString(36).slice(2));
    term('stream', ['run', '--agent', agent.id, '--env', envId, 'stream please']);
    const text = await paneShows('stream', /EXIT=\d+/);
    assert.match(text, /EXIT=0/, text);
    assert.match(text, /^agent: This answer is streamed to you in several small pieces\.$/m, text);
    assert.match(text, /^user: stream please$/m);
    assert.equal(text.match(/^agent: /mg).length, 1, 'the streamed text is not printed again');
    const colored = tmux('capture-pane', '-p', '-e', '-t', 'stream');
    assert.match(colored, /\x1b\[[0-9;]*m/, 'a terminal gets colours');

    // watch draws the same live view for a turn started elsewhere.
    const sid = sessionOf(text);
    term('watch', ['watch', sid, '--until-idle']);
    await until('watch attached', () => /watching sesn_/.test(pane('watch')));
    await org.beta.sessions.events.send(sid, {
      events: [{ type: 'user.message', content: [{ type: 'text', text: 'stream please' }] }],
    });
    const watched = await paneShows('watch', /EXIT=\d+/);
    assert.match(watched, /EXIT=0/, watched);
    assert.match(watched, /^agent: This answer is streamed to you in several small pieces\.$/m, watched);

    term('nocolor', ['run', '--agent', agent.id, '--env', envId, 'stream please'], 'NO_COLOR=1');
    await paneShows('nocolor', /EXIT=0/);
    const plain = tmux('capture-pane', '-p', '-e', '-t', 'nocolor');
    assert.match(plain, /^agent: This answer is streamed/m);
    assert.doesNotMatch(plain, /\x1b\[[0-9;]*m/, 'NO_COLOR turns colours off');
  });

  test('gated calls are asked about: y allows; n denies with the typed reason; Ctrl-C twice leaves (130)', async () => {
    const agent = await org.beta.agents.create({ name: 'asker', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', default_config: { permission_policy: { type: 'always_ask' } } }] });
    const file = path.join(tmp, 'note.txt');
    writeFileSync(file, 'live-approved-content\n');
    const envId = await freshEnv('live-ask');
    term('ask', ['run', '--agent', agent.id, '--env', envId, `read: ${file}`]);
    let text = await paneShows('ask', /allow read .*\? \[y\/N\]/);
    const sid = sessionOf(text);
    tmux('send-keys', '-t', 'ask', 'y', 'Enter');
    text = await paneShows('ask', /EXIT=\d+/);
    assert.match(text, /EXIT=0/, text);
    assert.match(text, /The file says: live-approved-content/);
    assert.ok((await events(sid)).some((e) => e.type === 'user.tool_confirmation' && e.result === 'allow'));

    term('deny', ['send', sid, `read: ${file}`, '--wait']);
    await paneShows('deny', /allow read .*\? \[y\/N\]/);
    tmux('send-keys', '-t', 'deny', 'n', 'Enter');
    await paneShows('deny', /why \(shown to the agent/);
    tmux('send-keys', '-t', 'deny', 'not today', 'Enter');
    text = await paneShows('deny', /EXIT=\d+/);
    assert.match(text, /EXIT=0/, text);
    assert.match(text, /No read:/);
    const evs = await events(sid);
    assert.ok(evs.some((e) => e.type === 'user.tool_confirmation' && e.result === 'deny' && e.deny_message === 'not today'));

    // Ctrl-C at a prompt interrupts; a second Ctrl-C leaves with exit 130.
    term('leave', ['send', sid, `read: ${file}`, '--wait']);
    await paneShows('leave', /allow read .*\? \[y\/N\]/);
    tmux('send-keys', '-t', 'leave', 'C-c');
    await until('user.interrupt', async () => (await events(sid)).some((e) => e.type === 'user.interrupt'));
    await paneShows('leave', /interrupting/);
    tmux('send-keys', '-t', 'leave', 'C-c');
    text = await paneShows('leave', /EXIT=\d+/);
    assert.match(text, /EXIT=130/, text);
    assert.match(text, /left; the session goes on: warren watch sesn_/);
  });

  test('completion scripts for bash and zsh; --help has examples; --json on interrupt', async () => {
    const script = execFileSync(WARREN_BIN, ['completion', 'bash'], { encoding: 'utf8' });
    const complete = (words, cword) => execFileSync('bash', ['-c',
      `${script}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${cword}; _warren; echo "\${COMPREPLY[*]}"`],
    { encoding: 'utf8' }).trim().split(/\s+/);
    assert.deepEqual(complete(['warren', 'ses'], 1), ['session']);
    const sub = complete(['warren', 'session', ''], 2);
    for (const w of ['create', 'list', 'get', 'archive', 'rm']) assert.ok(sub.includes(w), sub.join(' '));
    assert.ok(complete(['warren', 'run', '--'], 2).includes('--no-input'));
    assert.ok(complete(['warren', '--base-url', 'x', 'session', 'list', '--'], 5).includes('--json'));
    const zsh = execFileSync(WARREN_BIN, ['completion', 'zsh'], { encoding: 'utf8' });
    assert.match(zsh, /^#compdef warren\n/);
    assert.match(zsh, /bashcompinit/);
    const help = execFileSync(WARREN_BIN, ['run', '--help'], { encoding: 'utf8' });
    assert.match(help, /Examples:\n  warren run /);
    assert.match(help, /Ctrl-C/);
    assert.match(execFileSync(WARREN_BIN, ['--help'], { encoding: 'utf8' }), /Examples:/);

    const agent = await org.beta.agents.create({ name: 'j', model: 'claude-sonnet-4-6' });
    const envId = (await org.beta.environments.create({ name: 'json-env', config: { type: 'cloud' } })).id;
    const sid = (await org.beta.sessions.create({ agent: agent.id, environment_id: envId })).id;
    const out = execFileSync(WARREN_BIN, ['interrupt', sid, '--json'], {
      encoding: 'utf8', env: { ...process.env, WARREN_BASE_URL: srv.url, WARREN_API_KEY: srv.apiKey } });
    assert.equal(JSON.parse(out).data[0].type, 'user.interrupt');
  });

  // Runs last: warren-runner may still be busy with the interrupted `sleep`.
  test('a line typed while the agent works is a mid-session message; Ctrl-C interrupts', async () => {
    const agent = await org.beta.agents.create({ name: 'worker', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401' }] });
    const envId = await freshEnv('live-' + Math.random().toString(36).slice(2));
    term('work', ['run', '--agent', agent.id, '--env', envId, 'run: sleep 30; echo slept']);
    let text = await paneShows('work', /→ bash/);
    assert.match(text, /"command":"sleep 30; echo slept"/);
    await paneShows('work', /running bash…/);  // the spinner while the worker runs it
    const sid = sessionOf(text);
    tmux('send-keys', '-t', 'work', 'typed while working', 'Enter');
    await until('the typed user.message', async () => (await events(sid)).some((e) => e.type === 'user.message' &&
      JSON.stringify(e.content).includes('typed while working')));
    tmux('send-keys', '-t', 'work', 'C-c');
    await until('user.interrupt', async () => (await events(sid)).some((e) => e.type === 'user.interrupt'));
    text = await paneShows('work', /interrupting/);
    if (!/EXIT=\d+/.test(pane('work'))) {
      tmux('send-keys', '-t', 'work', 'C-c');
      text = await paneShows('work', /EXIT=\d+/);
      assert.match(text, /EXIT=(130|4|0)/, text);
    }
    assert.match(pane('work'), /EXIT=\d+/);
    if (process.env.CLI_LIVE_SHOW) console.log(pane('stream') + pane('ask') + pane('deny') + pane('work'));
  });
});
