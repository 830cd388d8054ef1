// Warren API benchmark: session-creation throughput, event-send throughput and
// SSE fan-out (N open streams, one event, time until all N received) for
// N = 100, 1,000, 5,000. Loopback only, bounded loops, stops by itself.
// Prints p50/p99 latencies and the server's RSS (VmRSS/VmHWM from /proc).
//
// Run through bench/api/run.sh (raises the fd limit, picks Node 22).
// Options (env): WARREN_BIN, BENCH_SESSIONS (2000), BENCH_EVENTS (5000),
// BENCH_CONCURRENCY (32), BENCH_FANOUT ("100,1000,5000"), BENCH_ROUNDS (5),
// BENCH_JSON (path to write the results as JSON).
import http from 'node:http';
import os from 'node:os';
import { writeFileSync, readFileSync } from 'node:fs';
import { startServer } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const SESSIONS = Number(process.env.BENCH_SESSIONS || 2000);
const EVENTS = Number(process.env.BENCH_EVENTS || 5000);
const CONC = Number(process.env.BENCH_CONCURRENCY || 32);
const FANOUT = (process.env.BENCH_FANOUT || '100,1000,5000').split(',').map(Number);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 5);
const DEADLINE = Date.now() + Number(process.env.BENCH_MAX_SECONDS || 900) * 1000;

const hrms = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));
const checkDeadline = () => {
  if (Date.now() > DEADLINE) throw new Error('benchmark deadline exceeded');
};

/** CPU time (user+system, ms) of a process from /proc/PID/stat; clock ticks are 100 Hz on Linux. */
function procCpuMs(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10; // utime, stime (fields 14, 15)
  } catch {
    return NaN;
  }
}

const keepAlive = new http.Agent({ keepAlive: true, maxSockets: CONC });

function post(url, key, path, body) {
  const u = new URL(path, url);
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
        if (res.statusCode !== 200) reject(new Error(`POST ${path}: ${res.statusCode} ${text.slice(0, 200)}`));
        else resolve(JSON.parse(text));
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** Runs `total` calls of fn(i) with `conc` in flight; returns per-call latencies and wall time. */
async function closedLoop(total, conc, fn) {
  const lat = [];
  let next = 0;
  const t0 = hrms();
  await Promise.all(Array.from({ length: conc }, async (_, w) => {
    while (next < total) {
      const i = next++;
      const s = hrms();
      await fn(i, w);
      lat.push(hrms() - s);
      if ((i & 255) === 0) checkDeadline();
    }
  }));
  const wall = hrms() - t0;
  return { lat, wall, rps: (total / wall) * 1000 };
}

function machine() {
  const cpus = os.cpus();
  return {
    nproc: cpus.length,
    cpu_model: cpus[0]?.model ?? 'unknown',
    mem_total_mib: Math.round(os.totalmem() / 1048576),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    loadavg_1m_at_start: os.loadavg()[0],
  };
}

async function main() {
  const results = { machine: machine(), config: { SESSIONS, EVENTS, CONC, FANOUT, ROUNDS }, date: new Date().toISOString() };
  console.log(`machine: ${JSON.stringify(results.machine)}`);
  const srv = await startServer();
  try {
    const { url, apiKey: key } = srv;
    const rss = () => ({ rss_mib: (srv.rssKb('VmRSS') ?? NaN) / 1024, hwm_mib: (srv.rssKb('VmHWM') ?? NaN) / 1024 });
    results.rss_idle = rss();
    const agent = await post(url, key, '/v1/agents', { name: 'bench agent', model: 'claude-sonnet-4-6' });
    const env = await post(url, key, '/v1/environments', { name: 'bench-env', config: { type: 'self_hosted' } });

    // 1. Session creation.
    let cpu0 = procCpuMs(srv.pid);
    const sc = await closedLoop(SESSIONS, CONC, () => post(url, key, '/v1/sessions', { agent: agent.id, environment_id: env.id }));
    results.session_create = { n: SESSIONS, concurrency: CONC, rps: sc.rps, p50_ms: pct(sc.lat, 50), p99_ms: pct(sc.lat, 99), server_cpu_ms_per_req: (procCpuMs(srv.pid) - cpu0) / SESSIONS, ...rss() };
    console.log(`session create: ${SESSIONS} @${CONC}: ${f1(sc.rps)} req/s, p50 ${f1(pct(sc.lat, 50))} ms, p99 ${f1(pct(sc.lat, 99))} ms, server CPU ${f1(results.session_create.server_cpu_ms_per_req)} ms/req, RSS ${f1(rss().rss_mib)} MiB`);

    // 2. Event send: one session per worker, one user.message per request.
    const sids = [];
    for (let w = 0; w < CONC; w++) sids.push((await post(url, key, '/v1/sessions', { agent: agent.id, environment_id: env.id })).id);
    const body = { events: [{ type: 'user.message', content: [{ type: 'text', text: 'benchmark message' }] }] };
    cpu0 = procCpuMs(srv.pid);
    const es = await closedLoop(EVENTS, CONC, (i, w) => post(url, key, `/v1/sessions/${sids[w]}/events`, body));
    results.event_send = { n: EVENTS, concurrency: CONC, rps: es.rps, p50_ms: pct(es.lat, 50), p99_ms: pct(es.lat, 99), server_cpu_ms_per_req: (procCpuMs(srv.pid) - cpu0) / EVENTS, ...rss() };
    console.log(`event send:     ${EVENTS} @${CONC}: ${f1(es.rps)} req/s, p50 ${f1(pct(es.lat, 50))} ms, p99 ${f1(pct(es.lat, 99))} ms, server CPU ${f1(results.event_send.server_cpu_ms_per_req)} ms/req, RSS ${f1(rss().rss_mib)} MiB`);

    // 3. SSE fan-out.
    results.fanout = [];
    for (const n of FANOUT) {
      checkDeadline();
      const sid = (await post(url, key, '/v1/sessions', { agent: agent.id, environment_id: env.id })).id;
      const streams = [];
      const tOpen = hrms();
      for (let i = 0; i < n; i += 250) {
        const batch = Array.from({ length: Math.min(250, n - i) }, () =>
          openSse(url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': key }, { timeoutMs: 60_000 }));
        streams.push(...(await Promise.all(batch)));
      }
      const openMs = hrms() - tOpen;
      const bad = streams.filter((s) => s.status !== 200).length;
      if (bad) throw new Error(`${bad} of ${n} streams were refused`);
      const rssOpen = rss();
      const allMs = [];
      const perStream = [];
      const srvCpu0 = procCpuMs(srv.pid);
      const cliCpu0 = process.cpuUsage();
      for (let r = 0; r < ROUNDS; r++) {
        checkDeadline();
        let pendingId = null;
        let got = 0;
        const arrivals = new Array(n).fill(NaN);
        let t0 = 0;
        let resolveAll;
        const all = new Promise((res) => (resolveAll = res));
        const early = [];
        streams.forEach((s, i) => {
          s.onFrame = (f) => {
            if (f.event !== 'user.message') return;
            const id = JSON.parse(f.data).id;
            if (pendingId === null) {
              early.push({ i, id, t: hrms() });
              return;
            }
            if (id !== pendingId || !Number.isNaN(arrivals[i])) return;
            arrivals[i] = hrms() - t0;
            if (++got === n) resolveAll();
          };
        });
        t0 = hrms();
        const sent = await post(url, key, `/v1/sessions/${sid}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: `fan-out ${r}` }] }] });
        pendingId = sent.data[0].id;
        for (const e of early) {
          if (e.id === pendingId && Number.isNaN(arrivals[e.i])) {
            arrivals[e.i] = e.t - t0;
            if (++got === n) resolveAll();
          }
        }
        const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error(`fan-out ${n}: only ${got} of ${n} streams got the event in 60 s`)), 60_000));
        await Promise.race([all, timeout]);
        allMs.push(Math.max(...arrivals));
        perStream.push(...arrivals);
        await new Promise((r2) => setTimeout(r2, 100));
      }
      const cliCpu = process.cpuUsage(cliCpu0);
      const row = {
        n, rounds: ROUNDS, open_ms: openMs,
        server_cpu_ms_per_event: (procCpuMs(srv.pid) - srvCpu0) / ROUNDS,
        client_cpu_ms_per_event: (cliCpu.user + cliCpu.system) / 1000 / ROUNDS,
        all_received_p50_ms: pct(allMs, 50), all_received_max_ms: Math.max(...allMs),
        per_stream_p50_ms: pct(perStream, 50), per_stream_p99_ms: pct(perStream, 99),
        rss_mib: rssOpen.rss_mib, rss_per_stream_kib: ((rssOpen.rss_mib - results.event_send.rss_mib) * 1024) / n, hwm_mib: rss().hwm_mib,
      };
      results.fanout.push(row);
      console.log(`fan-out N=${n}: opened in ${f1(openMs)} ms; all received p50 ${f1(row.all_received_p50_ms)} ms (max ${f1(row.all_received_max_ms)}); per-stream p50 ${f1(row.per_stream_p50_ms)} ms, p99 ${f1(row.per_stream_p99_ms)} ms; RSS ${f1(row.rss_mib)} MiB; CPU per event: server ${f1(row.server_cpu_ms_per_event)} ms, client ${f1(row.client_cpu_ms_per_event)} ms`);
      for (const s of streams) s.close();
      await Promise.all(streams.map((s) => s.ended));
      await new Promise((r2) => setTimeout(r2, 500));
    }
    results.rss_end = rss();
    results.loadavg_1m_at_end = os.loadavg()[0];
    console.log(`load average (1 min) at start ${results.machine.loadavg_1m_at_start.toFixed(2)}, at end ${results.loadavg_1m_at_end.toFixed(2)}`);
    console.log(`server RSS at end ${f1(results.rss_end.rss_mib)} MiB, peak (VmHWM) ${f1(results.rss_end.hwm_mib)} MiB`);
    if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
  } finally {
    keepAlive.destroy();
    const alive = srv.alive;
    await srv.stop();
    await srv.cleanup();
    if (!alive) console.error(`server died during the benchmark:\n${srv.tail()}`);
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
