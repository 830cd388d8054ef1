// Warren engine benchmark: the agent loop's overhead per turn and per tool
// round trip, on loopback, with an instant scripted model
// (bench/engine/script.json), p50/p99 over a bounded number of iterations.
//
//   turn:        POST user.message -> session.status_idle{end_turn} seen on the stream
//                (consume step, model call, model step: 3 store commits + 1 for the POST)
//   tool round:  after agent.tool_use: POST user.tool_result -> session.status_idle{end_turn}
//   long turn:   the same as "turn" with 250-character messages, in one session
//                that grows to BENCH_LONG (1000) turns; server CPU per turn is printed
//                over 50-turn windows starting at turns 1, 300 and 1,000 (the last
//                50), with their ratios: the transcript is an append-only table and
//                the engine reads only new rows, so these should agree within 20%
//
// Peer, measured in the same run, interleaved with the engine's iterations on
// the same sessions and streams: a raw Warren round trip without the engine,
// POST /v1/sessions/{id} (metadata change) -> session.updated on the stream
// (one store transaction rewriting the session row, one publish; the engine is
// not an observer of session updates). The engine's figures are printed as
// ratios to it. Also printed: the POST ack and the queued echo of the sent
// event (processed_at null), which can wait behind the engine's transactions.
//
//   throughput:  BENCH_CONCURRENCY sessions each run BENCH_CONC_TURNS turns back to
//                back, all at once: turns/s and server CPU per turn
//
// Run through bench/engine/run.sh. Options (env): WARREN_BIN, BENCH_TURNS (300),
// BENCH_TOOLS (300), BENCH_LONG (1000), BENCH_SESSIONS (10), BENCH_WARMUP (20),
// BENCH_CONCURRENCY (16), BENCH_CONC_TURNS (20),
// BENCH_JSON (write results), WARREN_SQLITE_SYNCHRONOUS (FULL | NORMAL, server default FULL).
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { startServer } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const TURNS = Number(process.env.BENCH_TURNS || 300);
const TOOLS = Number(process.env.BENCH_TOOLS || 300);
const LONG = Number(process.env.BENCH_LONG || 1000);
const NSESS = Number(process.env.BENCH_SESSIONS || 10);
const WARMUP = Number(process.env.BENCH_WARMUP || 20);
const CONC = Number(process.env.BENCH_CONCURRENCY || 16); // sessions turning at once in the throughput phase
const CONC_TURNS = Number(process.env.BENCH_CONC_TURNS || 20); // turns per session in that phase
const DEADLINE = Date.now() + Number(process.env.BENCH_MAX_SECONDS || 600) * 1000;

const hrms = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));
/** CPU time (user+system, ms) of a process from /proc/PID/stat (100 Hz clock ticks). */
function procCpuMs(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // utime, stime
  } catch {
    return NaN;
  }
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: 4 });

function post(url, key, p, body) {
  const u = new URL(p, url);
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, method: 'POST', path: u.pathname, agent: keepAlive,
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

/** One session with an open stream; `next(pred)` resolves with the arrival time of the next matching event. */
async function openSession(url, key, agent, env) {
  const sid = (await post(url, key, '/v1/sessions', { agent, environment_id: env })).id;
  const sess = { sid, stream: null, waiters: [], ended: false, openedAt: 0 };
  sess.reopen = async () => {
    if (sess.stream) sess.stream.close();
    const s = await openSse(url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': key });
    if (s.status !== 200) throw new Error(`stream ${sid}: ${s.status}`);
    sess.stream = s;
    sess.ended = false;
    sess.openedAt = Date.now();
    s.ended.then(() => {
      if (sess.stream === s) sess.ended = true;
    });
    s.onFrame = (f) => {
      const t = hrms();
      if (!f.data) return;
      let ev;
      try {
        ev = JSON.parse(f.data);
      } catch {
        return;
      }
      sess.waiters = sess.waiters.filter((w) => {
        if (!w.pred(ev)) return true;
        w.resolve({ t, ev });
        return false;
      });
    };
  };
  // Outside the timed part: streams older than 20 s are reopened between
  // iterations (servers before 77ce3df cut every SSE stream 30 s after it
  // opened), so the benchmark also runs against older builds.
  sess.fresh = async () => {
    if (sess.ended || Date.now() - sess.openedAt > 20_000) await sess.reopen();
  };
  await sess.reopen();
  sess.next = (pred, what, timeoutMs = 30_000) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const tail = sess.stream.frames.slice(-4).map((f) => f.event).join(' ');
        reject(new Error(`timeout waiting for ${what} on ${sid} (stream ${sess.ended ? 'ended' : 'open'}, ` +
          `${sess.stream.frames.length} frames, last: ${tail})`));
      }, timeoutMs);
      sess.waiters.push({ pred, resolve: (v) => { clearTimeout(timer); resolve(v); } });
    });
  return sess;
}

const isEndTurn = (e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn';
const isRequiresAction = (e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'requires_action';
const text = (t) => [{ type: 'text', text: t }];

let peerSeq = 0;
/**
 * The peer: a raw Warren round trip without the engine. POST /v1/sessions/{id}
 * (a metadata change) -> session.updated on the stream: one store transaction
 * that rewrites the session row (transcript included, like an engine step)
 * and one bus publish, with no engine observer involved.
 */
async function peerRoundTrip(url, key, sess) {
  await sess.fresh();
  const v = `p${++peerSeq}`;
  const got = sess.next((e) => e.type === 'session.updated' && e.metadata?.bench === v, 'session.updated');
  const t0 = hrms();
  await post(url, key, `/v1/sessions/${sess.sid}`, { metadata: { bench: v } });
  return (await got).t - t0;
}

/** One turn: returns {peer, echo, ack, total} in ms. */
async function turn(url, key, sess, label) {
  await sess.fresh();
  const echo = sess.next((e) => e.type === 'user.message' && e.processed_at === null && e.content?.[0]?.text === label, 'queued echo');
  const idle = sess.next(isEndTurn, 'end_turn');
  const t0 = hrms();
  await post(url, key, `/v1/sessions/${sess.sid}/events`, { events: [{ type: 'user.message', content: text(label) }] });
  const tAck = hrms();
  const [e, i] = await Promise.all([echo, idle]);
  return { peer: await peerRoundTrip(url, key, sess), echo: e.t - t0, ack: tAck - t0, total: i.t - t0 };
}

/** One tool round trip: user.message -> agent.tool_use (not timed), then the timed result -> end_turn. */
async function toolRound(url, key, sess, n) {
  await sess.fresh();
  const ra = sess.next(isRequiresAction, 'requires_action');
  await post(url, key, `/v1/sessions/${sess.sid}/events`, { events: [{ type: 'user.message', content: text(`tool ${n}`) }] });
  const { ev } = await ra;
  const useId = ev.stop_reason.event_ids[0];
  const out = `result ${n}`;
  const echo = sess.next((e) => e.type === 'user.tool_result' && e.processed_at === null && e.tool_use_id === useId, 'queued echo');
  const idle = sess.next(isEndTurn, 'end_turn');
  const t0 = hrms();
  await post(url, key, `/v1/sessions/${sess.sid}/events`, {
    events: [{ type: 'user.tool_result', tool_use_id: useId, content: text(out) }],
  });
  const tAck = hrms();
  const [e, i] = await Promise.all([echo, idle]);
  return { peer: await peerRoundTrip(url, key, sess), echo: e.t - t0, ack: tAck - t0, total: i.t - t0 };
}

function machine() {
  const cpus = os.cpus();
  return {
    nproc: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    mem_total_mib: Math.round(os.totalmem() / 1048576),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadavg_1m_at_start: Number(os.loadavg()[0].toFixed(2)),
  };
}

function summarize(name, rows, cpuMs) {
  const col = (k) => rows.map((r) => r[k]);
  const s = {
    n: rows.length,
    p50_ms: pct(col('total'), 50), p99_ms: pct(col('total'), 99),
    peer_p50_ms: pct(col('peer'), 50), peer_p99_ms: pct(col('peer'), 99),
    ack_p50_ms: pct(col('ack'), 50), ack_p99_ms: pct(col('ack'), 99),
    echo_p50_ms: pct(col('echo'), 50), echo_p99_ms: pct(col('echo'), 99),
  };
  s.ratio_p50 = s.p50_ms / s.peer_p50_ms;
  s.ratio_p99 = s.p99_ms / s.peer_p99_ms;
  // CPU covers the engine iterations and their peer round trips.
  s.server_cpu_ms_per_iter = cpuMs / rows.length;
  console.log(`${name.padEnd(12)} n=${s.n}: p50 ${f2(s.p50_ms)} ms, p99 ${f2(s.p99_ms)} ms | ` +
    `peer (POST session -> session.updated) p50 ${f2(s.peer_p50_ms)} ms, p99 ${f2(s.peer_p99_ms)} ms | ` +
    `ratio x${f2(s.ratio_p50)} (p50), x${f2(s.ratio_p99)} (p99) | POST ack p50 ${f2(s.ack_p50_ms)} ms, ` +
    `queued echo p50 ${f2(s.echo_p50_ms)} ms | server CPU ${f2(s.server_cpu_ms_per_iter)} ms/iteration`);
  return s;
}

async function main() {
  const sync = process.env.WARREN_SQLITE_SYNCHRONOUS || 'FULL';
  const results = {
    machine: machine(), date: new Date().toISOString(),
    config: { TURNS, TOOLS, LONG, NSESS, WARMUP, sqlite_synchronous: sync, model: 'scripted (instant)' },
  };
  console.log(`machine: ${JSON.stringify(results.machine)}`);
  console.log(`config:  ${JSON.stringify(results.config)}`);
  const srv = await startServer({
    env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: path.join(here, 'script.json'), WARREN_SQLITE_SYNCHRONOUS: sync },
  });
  const open = [];
  try {
    const { url, apiKey: key } = srv;
    const agent = (await post(url, key, '/v1/agents', {
      name: 'bench agent', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }],
    })).id;
    const env = (await post(url, key, '/v1/environments', { name: 'bench-env', config: { type: 'self_hosted' } })).id;
    const sessions = [];
    for (let i = 0; i < NSESS; i++) sessions.push(await openSession(url, key, agent, env));
    open.push(...sessions);
    const check = () => {
      if (Date.now() > DEADLINE) throw new Error('benchmark deadline exceeded');
    };

    // Warm-up (not recorded).
    for (let i = 0; i < WARMUP; i++) await turn(url, key, sessions[i % NSESS], `turn w${i}`);
    for (let i = 0; i < WARMUP; i++) await toolRound(url, key, sessions[i % NSESS], i);

    // 1. Turns, round-robin over NSESS sessions (each ends with TURNS/NSESS turns).
    let cpu0 = procCpuMs(srv.pid);
    const turns = [];
    for (let i = 0; i < TURNS; i++) {
      if ((i & 31) === 0) check();
      turns.push(await turn(url, key, sessions[i % NSESS], `turn ${i}`));
    }
    results.turn = summarize('turn', turns, procCpuMs(srv.pid) - cpu0);

    // 2. Tool round trips.
    cpu0 = procCpuMs(srv.pid);
    const tools = [];
    for (let i = 0; i < TOOLS; i++) {
      if ((i & 31) === 0) check();
      tools.push(await toolRound(url, key, sessions[i % NSESS], i));
    }
    // (CPU here also covers each round's untimed user.message -> agent.tool_use half.)
    results.tool_round_trip = summarize('tool round', tools, procCpuMs(srv.pid) - cpu0);

    // 3. One long session: how a turn's cost grows with the transcript.
    // Server CPU per turn over 50-turn windows at turn 1, 300 and 1,000.
    const long = await openSession(url, key, agent, env);
    open.push(long);
    const longRows = [];
    const k = Math.max(1, Math.min(50, Math.floor(LONG / 4)));
    const mid = Math.min(299, Math.max(k, LONG - 2 * k));  // 0-based start of the "turn 300" window
    const windows = [
      { name: `long 1-${k}`, from: 0 },
      { name: `long ${mid + 1}-${mid + k}`, from: mid },
      { name: `long ${LONG - k + 1}-${LONG}`, from: LONG - k },
    ];
    const cpuAt = new Map();
    const pad = 'x'.repeat(250);
    for (let i = 0; i <= LONG; i++) {
      for (const w of windows) {
        if (i === w.from) cpuAt.set(`${w.from}s`, procCpuMs(srv.pid));
        if (i === w.from + k) cpuAt.set(`${w.from}e`, procCpuMs(srv.pid));
      }
      if (i === LONG) break;
      if ((i & 31) === 0) check();
      const msg = `turn L${i} ${pad}`.slice(0, 250);
      longRows.push(await turn(url, key, long, msg));
    }
    const longStats = windows.map((w) => summarize(w.name, longRows.slice(w.from, w.from + k),
      cpuAt.get(`${w.from}e`) - cpuAt.get(`${w.from}s`)));
    [results.long_first, results.long_mid, results.long_last] = longStats;
    const c1 = longStats[0].server_cpu_ms_per_iter;
    results.long_cpu_ratio_mid = longStats[1].server_cpu_ms_per_iter / c1;
    results.long_cpu_ratio_last = longStats[2].server_cpu_ms_per_iter / c1;
    const within = Math.abs(results.long_cpu_ratio_mid - 1) <= 0.2 && Math.abs(results.long_cpu_ratio_last - 1) <= 0.2;
    console.log(`long session server CPU per turn: ${f2(c1)} ms (turn 1) | ` +
      `${f2(longStats[1].server_cpu_ms_per_iter)} ms (turn ${mid + 1}), x${f2(results.long_cpu_ratio_mid)} | ` +
      `${f2(longStats[2].server_cpu_ms_per_iter)} ms (turn ${LONG}), x${f2(results.long_cpu_ratio_last)} | ` +
      `within 20%: ${within ? 'yes' : 'NO'}`);
    // 4. Throughput: CONC sessions each run CONC_TURNS turns back to back, all at once.
    const conc = [];
    for (let i = 0; i < CONC; i++) conc.push(await openSession(url, key, agent, env));
    open.push(...conc);
    cpu0 = procCpuMs(srv.pid);
    const tc0 = hrms();
    const lat = [];
    await Promise.all(conc.map(async (sess, w) => {
      for (let i = 0; i < CONC_TURNS; i++) {
        const r = await turn(url, key, sess, `turn C${w}-${i}`);
        lat.push(r.total);
      }
    }));
    const wall = hrms() - tc0;
    results.throughput = {
      sessions: CONC, turns: CONC * CONC_TURNS, turns_per_s: (CONC * CONC_TURNS * 1000) / wall,
      p50_ms: pct(lat, 50), p99_ms: pct(lat, 99),
      server_cpu_ms_per_turn: (procCpuMs(srv.pid) - cpu0) / (CONC * CONC_TURNS),
    };
    console.log(`throughput   ${CONC} sessions x ${CONC_TURNS} turns at once: ${f2(results.throughput.turns_per_s)} turns/s, ` +
      `turn p50 ${f2(results.throughput.p50_ms)} ms, p99 ${f2(results.throughput.p99_ms)} ms, ` +
      `server CPU ${f2(results.throughput.server_cpu_ms_per_turn)} ms/turn (incl. one peer round trip each)`);
    results.server_rss_mib = (srv.rssKb('VmRSS') ?? NaN) / 1024;
    console.log(`server RSS ${f2(results.server_rss_mib)} MiB`);
  } finally {
    for (const s of open) s.stream?.close();
    keepAlive.destroy();
    await srv.cleanup();
  }
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
