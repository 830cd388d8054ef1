// Warren engine benchmark, slow model (issue 14, item 5): many sessions on a
// model with a long latency. Model calls must not pin engine threads, so the
// calls in flight and the turns per second follow the operator's bound on
// concurrent model calls (model.max_concurrent_calls), not the thread count.
//
// The model: a local fake Messages API (node:http, one event loop, no thread
// per request) that answers every POST /v1/messages with a streamed text
// message BENCH_LATENCY_MS (2000) after it arrives, driven through Warren's
// real `anthropic` provider (WARREN_MODEL_BASE_URL). The fake counts the
// requests it holds: max and time-averaged calls in flight.
//
// Load: BENCH_SESSIONS (1000) sessions, each a closed loop for BENCH_WINDOW_S
// (30) seconds: POST user.message -> session.status_idle{end_turn} on its
// stream -> next message. turns/s = turns that ended in the window / window.
//
// Measured in the same run, each on a fresh `warren serve`:
//   async   the default engine: model calls on the curl-multi event loop,
//           bounded by BENCH_BOUND (200) calls in flight, engine_threads 4
//   pinned  the peer: the mode before issue 14 (WARREN_ENGINE_PIN_MODEL_CALLS):
//           each call holds one of the 4 engine threads for its whole stream
// and the ratios async/pinned are printed.
//
// Run: bench/engine/run_slow_model.sh. Options (env): WARREN_BIN, BENCH_SESSIONS,
// BENCH_BOUND, BENCH_LATENCY_MS, BENCH_WINDOW_S, BENCH_ENGINE_THREADS (4),
// BENCH_JSON (write results), WARREN_SQLITE_SYNCHRONOUS (NORMAL here: the
// subject is model-call concurrency, not fsync; FULL is accepted).
import http from 'node:http';
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { startServer } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const NSESS = Number(process.env.BENCH_SESSIONS || 1000);
const BOUND = Number(process.env.BENCH_BOUND || 200);
const LATENCY = Number(process.env.BENCH_LATENCY_MS || 2000);
const WINDOW_S = Number(process.env.BENCH_WINDOW_S || 30);
const THREADS = Number(process.env.BENCH_ENGINE_THREADS || 4);
const SYNC = process.env.WARREN_SQLITE_SYNCHRONOUS || 'NORMAL';
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---- the fake Messages API
function sse(event, data) {
  return `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
function answer(text) {
  return sse('message_start', { type: 'message_start', message: { id: 'msg_bench', type: 'message', role: 'assistant', model: 'claude-sonnet-4-6', content: [], stop_reason: null, usage: { input_tokens: 10, output_tokens: 1 } } }) +
    sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }) +
    sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }) +
    sse('content_block_stop', { type: 'content_block_stop', index: 0 }) +
    sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 2 } }) +
    sse('message_stop', { type: 'message_stop' });
}

class FakeModel {
  constructor() {
    this.inflight = 0;
    this.reset();
    this.server = http.createServer((req, res) => {
      if (req.method !== 'POST' || !req.url.startsWith('/v1/messages')) {
        res.writeHead(404).end();
        return;
      }
      req.resume();
      req.on('end', () => {
        this.change(+1);
        this.requests++;
        let open = true;
        res.on('close', () => {
          if (open) {
            open = false;
            this.change(-1);
          }
        });
        setTimeout(() => {
          if (!open) return;
          res.writeHead(200, { 'content-type': 'text/event-stream', 'request-id': 'req_bench' });
          res.end(answer('ack'), () => {
            if (open) {
              open = false;
              this.change(-1);
            }
          });
        }, LATENCY);
      });
    });
    this.server.keepAliveTimeout = 60_000;
  }
  listen() {
    return new Promise((r) => this.server.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${this.server.address().port}`)));
  }
  reset() {
    this.max = this.inflight;
    this.requests = 0;
    this.area = 0; // integral of inflight over ms, within the window
    this.last = performance.now();
    this.measuring = false;
  }
  change(d) {
    const now = performance.now();
    if (this.measuring) this.area += this.inflight * (now - this.last);
    this.last = now;
    this.inflight += d;
    if (this.measuring) this.max = Math.max(this.max, this.inflight);
  }
  startWindow() {
    this.change(0);
    this.measuring = true;
    this.max = this.inflight;
    this.area = 0;
    this.t0 = performance.now();
  }
  endWindow() {
    this.change(0);
    this.measuring = false;
    return { max: this.max, avg: this.area / (performance.now() - this.t0) };
  }
}

// ---- Warren client bits
const agentOpts = new http.Agent({ keepAlive: true, maxSockets: 64 });
function post(url, key, p, body) {
  const u = new URL(p, url);
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, method: 'POST', path: u.pathname, agent: agentOpts,
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'content-length': data.length, 'anthropic-version': '2023-06-01' },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) reject(new Error(`POST ${p}: ${res.statusCode} ${text.slice(0, 300)}`));
        else resolve(JSON.parse(text));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function pool(n, limit, fn) {
  const out = new Array(n);
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, n) }, async () => {
    while (next < n) {
      const i = next++;
      out[i] = await fn(i);
    }
  }));
  return out;
}

async function runMode(name, model, modelUrl, env) {
  const srv = await startServer({
    env: {
      WARREN_MODEL_PROVIDER: 'anthropic', WARREN_MODEL_BASE_URL: modelUrl, ANTHROPIC_API_KEY: 'sk-bench',
      WARREN_MODEL_MAX_CONCURRENT: String(BOUND), WARREN_ENGINE_THREADS: String(THREADS),
      WARREN_SQLITE_SYNCHRONOUS: SYNC, WARREN_LOG_LEVEL: 'warn', ...env,
    },
  });
  const streams = [];
  try {
    const { url, apiKey: key } = srv;
    const agent = (await post(url, key, '/v1/agents', { name: 'slow bench', model: 'claude-sonnet-4-6' })).id;
    const envId = (await post(url, key, '/v1/environments', { name: 'slow-bench', config: { type: 'self_hosted' } })).id;
    const sids = await pool(NSESS, 16, async () => (await post(url, key, '/v1/sessions', { agent, environment_id: envId })).id);
    const sess = await pool(NSESS, 32, async (i) => {
      const s = await openSse(url, `/v1/sessions/${sids[i]}/events/stream`, { 'x-api-key': key });
      if (s.status !== 200) throw new Error(`stream ${sids[i]}: ${s.status}`);
      streams.push(s);
      const st = { sid: sids[i], waiter: null };
      s.onFrame = (f) => {
        s.frames.length = 0; // keep memory flat
        if (!f.data || !st.waiter) return;
        try {
          const ev = JSON.parse(f.data);
          if (ev.type === 'session.status_idle' && ev.stop_reason?.type === 'end_turn') {
            const w = st.waiter;
            st.waiter = null;
            w();
          } else if (ev.type === 'session.error') {
            st.errors = (st.errors || 0) + 1;
          }
        } catch {}
      };
      return st;
    });
    model.reset();
    let stop = false;
    let turns = 0;
    let windowStart = 0;
    const loops = sess.map(async (st, i) => {
      await sleep((i * 1000) / NSESS); // spread the first wave over one second
      for (let n = 0; !stop; n++) {
        const ended = new Promise((r) => (st.waiter = r));
        await post(url, key, `/v1/sessions/${st.sid}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: `turn ${n}` }] }] });
        await Promise.race([ended, new Promise((r) => { st.stopWait = r; })]);
        if (windowStart && !stop) turns++;
      }
    });
    // The window starts once the first wave is out (ramp: one latency).
    await sleep(1000 + LATENCY);
    windowStart = performance.now();
    model.startWindow();
    const turnsAtStart = turns;
    await sleep(WINDOW_S * 1000);
    const inflight = model.endWindow();
    const wall = (performance.now() - windowStart) / 1000;
    const done = turns - turnsAtStart;
    stop = true;
    for (const st of sess) st.stopWait?.();
    const errors = sess.reduce((a, s) => a + (s.errors || 0), 0);
    await Promise.race([Promise.allSettled(loops), sleep(2000)]);
    const r = {
      mode: name, sessions: NSESS, bound: BOUND, engine_threads: THREADS, latency_ms: LATENCY, window_s: wall,
      max_in_flight: inflight.max, avg_in_flight: inflight.avg, turns, turns_in_window: done,
      turns_per_s: done / wall, ideal_turns_per_s: Math.min(NSESS, name === 'pinned' ? THREADS : BOUND) / (LATENCY / 1000),
      session_errors: errors, server_rss_mib: (srv.rssKb('VmRSS') ?? NaN) / 1024,
    };
    console.log(`${name.padEnd(7)} max in flight ${r.max_in_flight} (bound ${name === 'pinned' ? `${THREADS} threads` : BOUND}), ` +
      `avg in flight ${f2(r.avg_in_flight)}, ${f2(r.turns_per_s)} turns/s (ideal ${f2(r.ideal_turns_per_s)}), ` +
      `${r.turns_in_window} turns in ${f2(wall)} s, session.error ${errors}, server RSS ${f2(r.server_rss_mib)} MiB`);
    return r;
  } finally {
    for (const s of streams) s.close();
    await srv.cleanup();
  }
}

async function main() {
  const cpus = os.cpus();
  const results = {
    machine: { nproc: cpus.length, cpu_model: cpus[0]?.model ?? 'unknown', kernel: `${os.type()} ${os.release()}`, node: process.version, loadavg_1m_at_start: Number(os.loadavg()[0].toFixed(2)) },
    date: new Date().toISOString(),
    config: { NSESS, BOUND, LATENCY, WINDOW_S, THREADS, sqlite_synchronous: SYNC },
  };
  console.log(`machine: ${JSON.stringify(results.machine)}`);
  console.log(`config:  ${JSON.stringify(results.config)}`);
  const model = new FakeModel();
  const modelUrl = await model.listen();
  try {
    results.async = await runMode('async', model, modelUrl, {});
    results.pinned = await runMode('pinned', model, modelUrl, { WARREN_ENGINE_PIN_MODEL_CALLS: 'true' });
  } finally {
    model.server.closeAllConnections?.();
    model.server.close();
    agentOpts.destroy();
  }
  const a = results.async, p = results.pinned;
  results.ratio_turns_per_s = a.turns_per_s / p.turns_per_s;
  results.ratio_avg_in_flight = a.avg_in_flight / p.avg_in_flight;
  results.async_reaches_bound = a.max_in_flight >= BOUND;
  console.log(`ratio async/pinned: turns/s x${f2(results.ratio_turns_per_s)}, avg calls in flight x${f2(results.ratio_avg_in_flight)} | ` +
    `async max in flight reaches the bound (${BOUND}): ${results.async_reaches_bound ? 'yes' : 'NO'} | ` +
    `async turns/s vs bound/latency: ${f2(a.turns_per_s / a.ideal_turns_per_s * 100)}%`);
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
