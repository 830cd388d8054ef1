// Outgoing webhook delivery throughput (issue 12 part 4), on loopback.
//
// A receiver verifies every delivery with the npm `standardwebhooks` package
// (as a real receiver would) and answers 204. The benchmark:
//   1. starts `warren serve` with one endpoint (concurrency BENCH_CONCURRENCY),
//      the receiver answering 503 ("closed");
//   2. runs BENCH_SESSIONS sessions one turn each (3 messages per session:
//      session.created, session.status_run_started, session.status_idled), so
//      the outbox holds a backlog of 3 x BENCH_SESSIONS rows;
//   3. opens the receiver and times the drain: every backlog row delivered
//      (each webhook-id accepted once) -> deliveries/s through the whole path
//      (claim in SQLite, sign, POST, record the outcome in SQLite).
// Peer, measured in the same run against the same receiver: a Node client
// sending the same number of bodies with the same concurrency, signed by
// `standardwebhooks` (no store). Printed: both rates and Warren / peer.
//   4. wake-up latency: BENCH_LATENCY_N agents created one at a time; for each,
//      the time from sending POST /v1/agents to the receiver getting its
//      agent.created delivery. The fallback poll is the default (5 s), so the
//      figure shows the store's outbox listener waking the dispatcher. Peer:
//      the POST's own round trip, same run. Printed: p50/p95 and latency / RTT.
// The endpoint's auto-disable is off (the backlog phase fails on purpose).
//
// Run through bench/webhooks_out/run.sh. Env: WARREN_BIN, BENCH_SESSIONS (300),
// BENCH_CONCURRENCY (4), BENCH_LATENCY_N (50), BENCH_JSON (write results).
import http from 'node:http';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { startServer } from '../../tests/conformance/lib/server.mjs';

// standardwebhooks is installed with the conformance suite's packages.
const { Webhook } = createRequire(new URL('../../tests/conformance/package.json', import.meta.url))('standardwebhooks');

const SESSIONS = Number(process.env.BENCH_SESSIONS || 300);
const CONC = Number(process.env.BENCH_CONCURRENCY || 4);
const LAT_N = Number(process.env.BENCH_LATENCY_N || 50);
const SECRET = 'whsec_' + randomBytes(32).toString('base64');
const wh = new Webhook(SECRET);
const hrms = () => Number(process.hrtime.bigint()) / 1e6;

let open = false;
const accepted = new Map();
const arrivals = new Map();  // data.id of agent.created -> arrival (ms)
let bad = 0;
const agent = new http.Agent({ keepAlive: true, maxSockets: CONC });
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (!open) return res.writeHead(503).end();
    try {
      const body = wh.verify(Buffer.concat(chunks).toString('utf8'), req.headers);
      if (body.data?.type === 'agent.created') arrivals.set(body.data.id, hrms());
      const id = req.headers['webhook-id'];
      accepted.set(id, (accepted.get(id) || 0) + 1);
      res.writeHead(204).end();
    } catch {
      bad++;
      res.writeHead(400).end();
    }
  });
});
await new Promise((r) => receiver.listen(0, '127.0.0.1', r));
const port = receiver.address().port;

const dir = await mkdtemp(path.join(tmpdir(), 'warren-bench-webhooks-'));
const cfgPath = path.join(dir, 'config.json');
await writeFile(cfgPath, JSON.stringify({
  webhooks: {
    endpoints: [{ name: 'bench', url: `http://127.0.0.1:${port}/hook`, secret: SECRET }],
    concurrency: CONC, initial_backoff_ms: 10, max_backoff_ms: 50, max_attempts: 1000, disable_after_failures: 0,
  },
}));
const srv = await startServer({ extraArgs: ['--config', cfgPath], env: { WARREN_MODEL_PROVIDER: 'scripted' } });
const client = srv.client();
try {
  const ag = await client.beta.agents.create({ name: 'bench', model: 'claude-sonnet-4-6' });
  const env = await client.beta.environments.create({ name: 'bench', config: { type: 'cloud' } });
  const sids = [];
  for (let i = 0; i < SESSIONS; i++) {
    const s = await client.beta.sessions.create({ agent: ag.id, environment_id: env.id });
    await client.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: `hi ${i}` }] }] });
    sids.push(s.id);
  }
  // Plus the agent.created and environment.created rows made above.
  const expected = 3 * SESSIONS + 2;
  const pendingCount = async () => {
    let n = 0;
    let page = null;
    for (;;) {
      const q = new URLSearchParams({ state: 'pending', limit: '100' });
      if (page) q.set('page', page);
      const j = await (await fetch(`${srv.url}/v1/warren/webhooks/deliveries?${q}`, { headers: { 'x-api-key': srv.apiKey } })).json();
      n += j.data.length;
      if (!j.next_page) return n;
      page = j.next_page;
    }
  };
  // Wait for the backlog: every session idle, all rows pending.
  for (let t0 = Date.now(); (await pendingCount()) < expected; ) {
    if (Date.now() - t0 > 120000) throw new Error('the backlog did not build up');
    await new Promise((r) => setTimeout(r, 200));
  }
  const t0 = hrms();
  open = true;
  while (accepted.size < expected) await new Promise((r) => setTimeout(r, 2));
  const warrenMs = hrms() - t0;
  const dup = [...accepted.values()].filter((n) => n > 1).length;

  // Peer: the same number of signed deliveries from Node, same concurrency.
  const bodies = [...accepted.keys()].map((id) => ({ id, body: JSON.stringify({ type: 'event', id: `peer_${id}`,
    created_at: new Date().toISOString(), data: { type: 'session.status_run_started', id: 'sesn_x', organization_id: 'o', workspace_id: 'w' } }) }));
  const p0 = hrms();
  let next = 0;
  const send = ({ id, body }) => new Promise((resolve, reject) => {
    const msgId = `peer_${id}`;
    const ts = new Date();
    const req = http.request({ host: '127.0.0.1', port, path: '/hook', method: 'POST', agent,
      headers: { 'content-type': 'application/json', 'webhook-id': msgId,
        'webhook-timestamp': String(Math.floor(ts.getTime() / 1000)), 'webhook-signature': wh.sign(msgId, ts, body) } },
    (res) => { res.resume(); res.on('end', () => (res.statusCode === 204 ? resolve() : reject(new Error(`peer ${res.statusCode}`)))); });
    req.on('error', reject);
    req.end(body);
  });
  await Promise.all(Array.from({ length: CONC }, async () => {
    while (next < bodies.length) await send(bodies[next++]);
  }));
  const peerMs = hrms() - p0;
  // Wake-up latency: one agent at a time, the receiver open.
  const lat = [];
  const rtt = [];
  for (let i = 0; i < LAT_N; i++) {
    const t = hrms();
    const a = await client.beta.agents.create({ name: `lat-${i}`, model: 'm' });
    rtt.push(hrms() - t);
    for (const t1 = hrms(); !arrivals.has(a.id); ) {
      if (hrms() - t1 > 30000) throw new Error(`no agent.created delivery for ${a.id}`);
      await new Promise((r) => setImmediate(r));
    }
    lat.push(arrivals.get(a.id) - t);
  }
  const pct = (xs, p) => { const v = [...xs].sort((x, y) => x - y); return v[Math.min(v.length - 1, Math.floor(p * v.length))]; };
  const wRate = expected / (warrenMs / 1000);
  const pRate = bodies.length / (peerMs / 1000);
  const out = {
    deliveries: expected, concurrency: CONC, warren_ms: Math.round(warrenMs), warren_per_s: Math.round(wRate),
    peer: 'node http + standardwebhooks.sign, same receiver and concurrency', peer_ms: Math.round(peerMs),
    peer_per_s: Math.round(pRate), ratio_warren_to_peer: Number((wRate / pRate).toFixed(3)), duplicates: dup, bad_signatures: bad,
    latency_n: LAT_N, latency_p50_ms: Number(pct(lat, 0.5).toFixed(2)), latency_p95_ms: Number(pct(lat, 0.95).toFixed(2)),
    create_rtt_p50_ms: Number(pct(rtt, 0.5).toFixed(2)), latency_to_rtt_p50: Number((pct(lat, 0.5) / pct(rtt, 0.5)).toFixed(2)),
    fallback_poll_ms: 5000,
  };
  console.log(`webhook delivery: ${expected} backlog deliveries, concurrency ${CONC}`);
  console.log(`  warren (outbox claim + sign + POST + record): ${out.warren_per_s}/s (${out.warren_ms} ms)`);
  console.log(`  peer   (${out.peer}): ${out.peer_per_s}/s (${out.peer_ms} ms)`);
  console.log(`  warren / peer: ${out.ratio_warren_to_peer}; duplicates ${dup}; bad signatures ${bad}`);
  console.log(`wake-up latency (POST /v1/agents sent -> agent.created received; fallback poll 5000 ms), n=${LAT_N}:`);
  console.log(`  p50 ${out.latency_p50_ms} ms, p95 ${out.latency_p95_ms} ms; POST round trip p50 ${out.create_rtt_p50_ms} ms;` +
    ` latency / RTT ${out.latency_to_rtt_p50}`);
  if (process.env.BENCH_JSON) writeFileSync(process.env.BENCH_JSON, JSON.stringify(out, null, 2));
} finally {
  await srv.cleanup();
  receiver.close();
  agent.destroy();
  await rm(dir, { recursive: true, force: true });
}
