// Warren worker benchmark (issue 4): tool round trip and claim latency on
// loopback, for warren-runner and for the official SDK's EnvironmentWorker
// (@anthropic-ai/sdk 1.10.0), measured in the same run against the same
// server, printed as p50/p99 and as the ratio warren-runner / SDK worker.
//
//   tool round trip: from the agent.tool_use frame on the session's stream to
//     the user.tool_result echo on the same stream (the worker received the
//     call, ran `true` in bash and posted the result, which was persisted);
//   claim latency: a poll is parked (block_ms=999) on an empty queue; a
//     session is created (which enqueues its item); time from the create's
//     answer to the poll's answer.
//
// Bounded: BENCH_ROUNDS tool calls per worker (default 100) and BENCH_CLAIMS
// claims (default 100); loopback only; stops by itself (BENCH_MAX_SECONDS).
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
// The SDK is installed (locked) under tests/conformance.
import Anthropic from '../../tests/conformance/node_modules/@anthropic-ai/sdk/index.mjs';
import { startServer, runCli, REPO_ROOT } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROUNDS = Number(process.env.BENCH_ROUNDS || 100);
const CLAIMS = Number(process.env.BENCH_CLAIMS || 100);
const WARMUP = 5;
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const deadline = Date.now() + Number(process.env.BENCH_MAX_SECONDS || 600) * 1000;
const now = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => { const s = [...xs].sort((a, b) => a - b); return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]; };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const srv = await startServer({ env: { WARREN_MODEL_SCRIPT: path.join(here, 'script.json') } });
const org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0 });
const agent = await org.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
const workdir = await mkdtemp(path.join(tmpdir(), 'warren-bench-worker-'));
const results = {};

// Runs ROUNDS tool calls in one session served by the worker `start` launches.
async function toolRoundTrips(label, start) {
  const env = await org.beta.environments.create({ name: `bench-${label}`, config: { type: 'self_hosted' } });
  const key = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', srv.dataDir]);
  const session = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
  const stream = await openSse(srv.url, `/v1/sessions/${session.id}/events/stream`, { 'x-api-key': srv.apiKey });
  const seen = new Map();  // tool_use id -> arrival ms
  const rtt = [];
  let idles = 0;
  stream.onFrame = (f) => {
    if (f.event === 'agent.tool_use') seen.set(f.id, now());
    else if (f.event === 'user.tool_result') {
      const d = JSON.parse(f.data);
      if (d.processed_at === null && seen.has(d.tool_use_id)) rtt.push(now() - seen.get(d.tool_use_id));
    } else if (f.event === 'session.status_idle' && JSON.parse(f.data).stop_reason?.type === 'end_turn') idles++;
  };
  const stop = await start(env.id, key);
  try {
    for (let i = 0; i < ROUNDS + WARMUP && Date.now() < deadline; i++) {
      const want = idles + 1;
      await org.beta.sessions.events.send(session.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'go' }] }] });
      while (idles < want) {
        if (Date.now() > deadline) throw new Error(`${label}: deadline`);
        await sleep(1);
      }
    }
  } finally {
    await stop();
    stream.close();
  }
  const xs = rtt.slice(WARMUP);
  results[label] = { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) };
}

await toolRoundTrips('sdk-worker', async (envId, key) => {
  const client = new Anthropic({ apiKey: 'unused', baseURL: srv.url, maxRetries: 2 });
  const ctl = new AbortController();
  const running = client.beta.environments.work.worker({ environmentId: envId, environmentKey: key, workdir, maxIdleMs: 600_000 })
    .run(ctl.signal).catch(() => {});
  return async () => { ctl.abort(); await running; };
});

await toolRoundTrips('warren-runner', async (envId, key) => {
  const child = spawn(RUNNER, ['poll', '--environment-id', envId, '--environment-key', key, '--base-url', srv.url,
    '--workdir', workdir, '--max-idle', '600s'], { stdio: ['ignore', 'ignore', 'ignore'] });
  const exited = new Promise((r) => child.on('exit', r));
  return async () => { child.kill('SIGTERM'); await exited; };
});

// Claim latency: enqueue (session create) -> parked poll returns.
{
  const env = await org.beta.environments.create({ name: 'bench-claims', config: { type: 'self_hosted' } });
  const key = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', srv.dataDir]);
  const worker = new Anthropic({ authToken: key, apiKey: null, baseURL: srv.url, maxRetries: 0 });
  const xs = [];
  for (let i = 0; i < CLAIMS + WARMUP && Date.now() < deadline; i++) {
    const polled = worker.beta.environments.work.poll(env.id, { block_ms: 999, 'Anthropic-Worker-ID': 'bench' }).then(() => now());
    await sleep(20);  // let the poll park
    await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const created = now();
    const got = await polled;
    if (i >= WARMUP) xs.push(got - created);
    const page = await worker.beta.environments.work.list(env.id);
    for (const w of page.data) if (w.state !== 'stopped') await worker.beta.environments.work.stop(w.id, { environment_id: env.id, force: true }).catch(() => {});
  }
  results['claim'] = { n: xs.length, p50: pct(xs, 50), p99: pct(xs, 99) };
}

await srv.cleanup();
await rm(workdir, { recursive: true, force: true });

const f = (x) => x.toFixed(2);
console.log(`\nWarren worker benchmark (loopback; load ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')})`);
console.log('| measurement | n | p50 ms | p99 ms |');
console.log('|---|---|---|---|');
for (const [k, v] of Object.entries(results)) console.log(`| ${k === 'claim' ? 'claim latency (enqueue -> parked poll returns)' : `tool round trip, ${k}`} | ${v.n} | ${f(v.p50)} | ${f(v.p99)} |`);
const a = results['warren-runner'], b = results['sdk-worker'];
if (a && b) console.log(`\nwarren-runner / SDK worker: p50 x${f(a.p50 / b.p50)}, p99 x${f(a.p99 / b.p99)}`);
