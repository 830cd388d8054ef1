// Differential test of the six agent tools: every call in
// tests/golden/tools/*.json runs through `warren-runner tool` and through the
// TypeScript SDK 1.10.0 node toolset (betaAgentToolset20260401), each in a
// freshly built copy of the same fixture directory (same absolute path), and
// the results (is_error + session content) are compared.
//
// A call may declare an intended difference ("diff": "D<n>", documented in
// docs/TOOLS.md): then both sides must produce exactly the recorded results
// and those must differ, so a difference can neither go unnoticed nor go
// stale. "compare": "sorted_lines" compares the result lines as a multiset
// (ripgrep prints files in a nondeterministic order).
//
// The SDK side runs in a child Node process (this file in driver mode) so that
// PATH and the environment can differ per suite, as they do for the runner.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CORPUS = path.resolve(HERE, '../golden/tools');
const RUNNER = path.resolve(HERE, process.env.WARREN_RUNNER_BIN ?? '../../build/src/runner/warren-runner');

// Maps a tool's return value to session content, as SessionToolRunner's
// toSessionContent does before posting a user.tool_result.
function toSessionContent(content) {
  if (typeof content === 'string') return [{ type: 'text', text: content || '(no output)' }];
  const out = content.map((b) => {
    if (b.type === 'text') return { type: 'text', text: b.text || '(no output)' };
    if (b.type === 'image' || b.type === 'document') return b;
    return { type: 'text', text: JSON.stringify(b) };
  });
  return out.length ? out : [{ type: 'text', text: '(no output)' }];
}

async function driver() {
  const { betaAgentToolset20260401 } = await import('@anthropic-ai/sdk/tools/agent-toolset/node');
  const { ToolError } = await import('@anthropic-ai/sdk/lib/tools/ToolError');
  const workdir = process.argv[2];
  const tools = new Map(betaAgentToolset20260401({ workdir }).map((t) => [t.name, t]));
  let input = '';
  for await (const chunk of process.stdin) input += chunk;
  for (const line of input.split('\n')) {
    if (!line.trim()) continue;
    const call = JSON.parse(line);
    let r;
    try {
      const tool = tools.get(call.name);
      if (!tool) throw new Error(`unknown tool '${call.name}'`);
      r = { is_error: false, content: toSessionContent(await tool.run(call.input ?? {}, {})) };
    } catch (e) {
      const c = e instanceof ToolError ? e.content : `Error: ${e?.message ?? String(e)}`;
      r = { is_error: true, content: toSessionContent(c) };
    }
    process.stdout.write(JSON.stringify(r) + '\n');
  }
  for (const t of tools.values()) await t.close?.();
  process.exit(0);
}

if (process.env.WARREN_TOOLDIFF_DRIVER === '1') {
  await driver();
} else {
  defineTests();
}

function subst(v, W) {
  if (typeof v === 'string') return v.split('${W}').join(W);
  if (Array.isArray(v)) return v.map((x) => subst(x, W));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, subst(x, W)]));
  return v;
}

// {is_error, text} for a single text block, else {is_error, content}.
function simplify(r) {
  if (r.content.length === 1 && r.content[0].type === 'text') return { is_error: r.is_error, text: r.content[0].text };
  return { is_error: r.is_error, content: r.content };
}

function run(cmd, args, { cwd, env, stdin }) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { cwd, env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('error', reject);
    p.on('close', (code) => resolve({ code, out, err }));
    p.stdin.end(stdin);
  });
}

function noRgPath(base) {
  const dir = path.join(base, 'bin-without-rg');
  fs.mkdirSync(dir, { recursive: true });
  for (const src of ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin']) {
    let names = [];
    try {
      names = fs.readdirSync(src);
    } catch {
      continue;
    }
    for (const n of names) {
      if (n === 'rg') continue;
      const dst = path.join(dir, n);
      if (!fs.existsSync(dst)) fs.symlinkSync(path.join(src, n), dst);
    }
  }
  return dir;
}

function freshFixture(W, setup) {
  fs.rmSync(W, { recursive: true, force: true });
  fs.mkdirSync(W, { recursive: true });
  if (setup) {
    const r = spawnSync('/bin/bash', ['-euc', setup], { cwd: W, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`fixture setup failed: ${r.stderr}`);
  }
}

function defineTests() {
  const suites = fs
    .readdirSync(CORPUS)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => ({ file: f, ...JSON.parse(fs.readFileSync(path.join(CORPUS, f), 'utf8')) }));
  const total = suites.reduce((n, s) => n + s.calls.length, 0);
  test(`the corpus holds at least 100 tool calls (${total})`, () => {
    assert.ok(total >= 100, `only ${total} calls`);
  });

  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'warren-tooldiff-'));
  const binNoRg = noRgPath(base);
  const node = process.execPath;

  for (const suite of suites) {
    test(`${suite.file}: ${suite.description ?? ''}`, { skip: !fs.existsSync(RUNNER) && `no runner at ${RUNNER}` }, async () => {
      const W = path.join(base, 'w');
      const env = { ...process.env, ANTHROPIC_TOOLDIFF_SECRET: 'must-not-leak', ...(suite.env ?? {}) };
      delete env.NODE_TEST_CONTEXT;
      if (suite.rg === false) env.PATH = binNoRg;
      if (suite.rg === true) assert.ok(spawnSync('rg', ['--version']).status === 0, 'rg must be on PATH');
      const calls = suite.calls.map((c) => subst(c, W));
      const lines = calls.map((c) => JSON.stringify({ name: c.name, input: c.input ?? {} }) + '\n').join('');

      freshFixture(W, suite.setup);
      const ours = await run(RUNNER, ['tool', '--workdir', W], { cwd: base, env, stdin: lines });
      assert.equal(ours.code, 0, `warren-runner failed: ${ours.err}`);

      freshFixture(W, suite.setup);
      const sdk = await run(node, [fileURLToPath(import.meta.url), W], {
        cwd: HERE,
        env: { ...env, WARREN_TOOLDIFF_DRIVER: '1' },
        stdin: lines,
      });
      assert.equal(sdk.code, 0, `SDK driver failed: ${sdk.err}`);

      const a = ours.out.trim().split('\n').map((l) => simplify(JSON.parse(l)));
      const b = sdk.out.trim().split('\n').map((l) => simplify(JSON.parse(l)));
      assert.equal(a.length, calls.length, 'one warren result per call');
      assert.equal(b.length, calls.length, 'one SDK result per call');
      const failures = [];
      calls.forEach((c, i) => {
        const label = `#${i} ${c.name} ${JSON.stringify(c.input).slice(0, 120)}`;
        try {
          if (c.diff) {
            assert.ok(c.warren, `${label}: a documented difference records the runner's result`);
            assert.deepEqual(a[i], c.warren, `${label} [${c.diff}] runner result`);
            if (c.sdk) assert.deepEqual(b[i], c.sdk, `${label} [${c.diff}] SDK result`);
            assert.notDeepEqual(a[i], b[i], `${label} [${c.diff}] no longer differs: update the corpus and docs`);
          } else if (c.compare === 'sorted_lines') {
            assert.equal(a[i].is_error, b[i].is_error, `${label} is_error`);
            assert.deepEqual(a[i].text.split('\n').sort(), b[i].text.split('\n').sort(), `${label} lines`);
          } else {
            assert.deepEqual(a[i], b[i], `${label}`);
          }
          if (c.expect) assert.deepEqual(a[i], c.expect, `${label} expected result`);
        } catch (e) {
          failures.push(e.message);
        }
      });
      assert.deepEqual(failures, [], failures.join('\n\n'));
    });
  }
}
