// Console streams benchmark: what 200 open console pages cost the server.
//
// A console page (the session view) follows its session's events and the
// sessions list. With the multiplexed stream that is ONE connection per page:
//   GET /v1/warren/stream?session=<id>&sessions_list=1
// The peer, measured in the same run against the same server, is what the
// page would need without it: one GET /v1/sessions/{id}/events/stream per
// session it keeps live, i.e. its own session plus the PAGE_SESSIONS-1 others
// shown in the list (and browsers allow only about six connections per
// origin, so a real page could not even open them).
//
// For each variant: open all streams, wait until every stream has replayed
// its history (mux) or is open (peer), check they are live (one event per
// session reaches every stream that follows it), then read the server's RSS
// growth against the RSS just before the variant. Prints the ratio.
//
// Options (env): WARREN_BIN, BENCH_PAGES (200), BENCH_PAGE_SESSIONS (20),
// BENCH_HISTORY (5 user messages per session), BENCH_JSON (results path).
import http from 'node:http';
import os from 'node:os';
import { writeFileSync } from 'node:fs';
import { startServer } from '../../tests/conformance/lib/server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const PAGES = Number(process.env.BENCH_PAGES || 200);
const PAGE_SESSIONS = Number(process.env.BENCH_PAGE_SESSIONS || 20);
const HISTORY = Number(process.env.BENCH_HISTORY || 5);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : String(x));
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

function post(url, key, path, body) {
  const u = new URL(path, url);
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, method: 'POST', path: u.pathname, agent,
      headers: { 'x-api-key': key, 'content-type': 'application/json', 'content-length': data.length },
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        if (res.statusCode !== 200) reject(new Error(`POST ${path}: ${res.statusCode} ${text.slice(0, 200)}`));
        else resolve(JSON.parse(text));
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

async function until(pred, ms, what) {
  const t0 = Date.now();
  while (!pred()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

async function openAll(url, key, paths) {
  const out = [];
  for (let i = 0; i < paths.length; i += 200) {
    const batch = paths.slice(i, i + 200).map((p) => openSse(url, p, { 'x-api-key': key }, { timeoutMs: 60_000 }));
    out.push(...(await Promise.all(batch)));
  }
  const bad = out.filter((s) => s.status !== 200);
  if (bad.length) throw new Error(`${bad.length} streams refused: ${bad[0].status} ${bad[0].text}`);
  return out;
}

async function closeAll(streams) {
  for (const s of streams) s.close();
  await Promise.all(streams.map((s) => s.ended));
  await sleep(500);
}

/** A fresh server with PAGES sessions of HISTORY messages each. */
async function setup() {
  const srv = await startServer();
  const { url, apiKey: key } = srv;
  const ag = await post(url, key, '/v1/agents', { name: 'console bench', model: 'claude-sonnet-4-6' });
  const env = await post(url, key, '/v1/environments', { name: 'console-bench', config: { type: 'self_hosted' } });
  const sids = [];
  for (let i = 0; i < PAGES; i++) sids.push((await post(url, key, '/v1/sessions', { agent: ag.id, environment_id: env.id, title: `page ${i}` })).id);
  for (let h = 0; h < HISTORY; h++) await Promise.all(sids.map((sid) => post(url, key, `/v1/sessions/${sid}/events`, msg(`history ${h}`))));
  await sleep(2000);  // let the engine settle the sessions
  return { srv, url, key, sids, rssMib: () => (srv.rssKb('VmRSS') ?? NaN) / 1024 };
}
const msg = (t) => ({ events: [{ type: 'user.message', content: [{ type: 'text', text: t }] }] });

async function multiplexed() {
  const { srv, url, key, sids, rssMib } = await setup();
  try {
    const rss0 = rssMib();
    const mux = await openAll(url, key, sids.map((sid) => `/v1/warren/stream?session=${sid}&sessions_list=1`));
    const histOf = (s) => s.frames.filter((f) => f.event === 'session_event').length;
    await until(() => mux.every((s) => histOf(s) >= HISTORY), 60_000, 'mux history replayed');
    await sleep(1000);
    const rss1 = rssMib();
    // Live check: a title change reaches every page through sessions_list.
    const before = mux.map((s) => s.frames.filter((f) => f.event === 'session').length);
    await post(url, key, `/v1/sessions/${sids[0]}`, { title: 'renamed during the bench' });
    await until(() => mux.every((s, i) => s.frames.filter((f) => f.event === 'session').length > before[i]), 30_000,
      'sessions_list frame on every page');
    await closeAll(mux);
    return { streams: mux.length, rss_before_mib: rss0, rss_open_mib: rss1, growth_mib: rss1 - rss0, per_page_kib: ((rss1 - rss0) * 1024) / PAGES };
  } finally {
    await srv.cleanup();
  }
}

async function perSession() {
  const { srv, url, key, sids, rssMib } = await setup();
  try {
    const rss0 = rssMib();
    const paths = [];
    for (let p = 0; p < PAGES; p++)
      for (let k = 0; k < PAGE_SESSIONS; k++) paths.push(`/v1/sessions/${sids[(p + k) % PAGES]}/events/stream`);
    const peer = await openAll(url, key, paths);
    await sleep(1000);
    const rss1 = rssMib();
    // Live check: one event on session 0 reaches every stream that follows it.
    const sent = await post(url, key, `/v1/sessions/${sids[0]}/events`, msg('live check'));
    const followers = peer.filter((_, i) => paths[i].includes(sids[0]));
    await until(() => followers.every((s) => s.frames.some((f) => f.data.includes(sent.data[0].id))), 30_000, 'peer live');
    await closeAll(peer);
    return { streams: peer.length, rss_before_mib: rss0, rss_open_mib: rss1, growth_mib: rss1 - rss0, per_page_kib: ((rss1 - rss0) * 1024) / PAGES };
  } finally {
    await srv.cleanup();
  }
}

async function main() {
  const results = {
    date: new Date().toISOString(), config: { PAGES, PAGE_SESSIONS, HISTORY },
    machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, mem_gib: os.totalmem() / 2 ** 30, loadavg_1m_at_start: os.loadavg()[0] },
  };
  // Each variant on its own fresh server (same setup), so neither reuses
  // heap the other freed.
  results.mux = await multiplexed();
  const m = results.mux;
  console.log(`multiplexed: ${PAGES} pages = ${m.streams} streams; RSS ${f1(m.rss_before_mib)} -> ${f1(m.rss_open_mib)} MiB, growth ${f1(m.growth_mib)} MiB (${f1(m.per_page_kib)} KiB/page); target < 20 MiB: ${m.growth_mib < 20 ? 'met' : 'NOT MET'}`);
  results.peer = await perSession();
  const p = results.peer;
  console.log(`per-session peer: ${PAGES} pages x ${PAGE_SESSIONS} = ${p.streams} streams; RSS ${f1(p.rss_before_mib)} -> ${f1(p.rss_open_mib)} MiB, growth ${f1(p.growth_mib)} MiB (${f1(p.per_page_kib)} KiB/page)`);
  results.ratio_peer_over_mux = p.growth_mib / m.growth_mib;
  console.log(`ratio (per-session peer / multiplexed): ${f1(results.ratio_peer_over_mux)}x server RSS growth; connections ${p.streams} vs ${m.streams}`);
  results.loadavg_1m_at_end = os.loadavg()[0];
  console.log(`load average (1 min) at start ${results.machine.loadavg_1m_at_start.toFixed(2)}, at end ${results.loadavg_1m_at_end.toFixed(2)}`);
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(results, null, 2));
  agent.destroy();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
