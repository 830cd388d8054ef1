// MCP tool-call overhead: engine -> MCP server -> engine, on loopback, against
// a direct client call measured in the same run.
//
//   engine call:  the time between agent.mcp_tool_use and agent.mcp_tool_result
//                 arriving on the session's event stream: the engine reads the
//                 pending call, sends tools/call over Streamable HTTP (the
//                 connection and tool list are cached per session after the
//                 first turn), and commits the result (one store transaction).
//   engine turn:  POST user.message -> session.status_idle{end_turn} for a turn
//                 with one MCP call (two scripted model calls around it).
//   peer:         the official MCP SDK client (@modelcontextprotocol/sdk,
//                 StreamableHTTPClientTransport, connected once) calling the
//                 same tool on the same server, interleaved with the engine's
//                 iterations.
// The figures are printed as p50/p99 and as ratios to the peer.
// Options (env): WARREN_BIN, BENCH_CALLS (200), BENCH_WARMUP (10), BENCH_MAX_SECONDS (300).
import http from 'node:http';
import path from 'node:path';
import { writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { startServer } from '../../tests/conformance/lib/server.mjs';
import { startMcpServer, Client, StreamableHTTPClientTransport } from '../../tests/conformance/lib/mcp_server.mjs';
import { openSse } from '../../tests/conformance/lib/sse.mjs';

const CALLS = Number(process.env.BENCH_CALLS || 200);
const WARMUP = Number(process.env.BENCH_WARMUP || 10);
const DEADLINE = Date.now() + Number(process.env.BENCH_MAX_SECONDS || 300) * 1000;
const hrms = () => Number(process.hrtime.bigint()) / 1e6;
const pct = (xs, p) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)] : NaN;
};
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : String(x));

function post(url, key, p, body) {
  return new Promise((resolve, reject) => {
    const data = JSON.stringify(body);
    const req = http.request(new URL(p, url), { method: 'POST', headers: { 'x-api-key': key, 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => (res.statusCode >= 300 ? reject(new Error(`${p}: ${res.statusCode} ${text}`)) : resolve(JSON.parse(text))));
    });
    req.on('error', reject);
    req.end(data);
  });
}

const mcp = await startMcpServer();
const dir = await mkdtemp(path.join(tmpdir(), 'warren-mcp-bench-'));
const script = path.join(dir, 'script.json');
await writeFile(script, JSON.stringify({ rules: [
  { when: { user: 'call' }, reply: { tool_calls: [{ name: 'mcp__str__echo', input: { text: 'bench' } }] } },
  { when: { tool_name: 'mcp__str__echo' }, reply: 'done' },
] }));
const srv = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script } });
try {
  const { url, apiKey: key } = srv;
  const env = await post(url, key, '/v1/environments', { name: 'mcp-bench', config: { type: 'self_hosted' } });
  const agent = await post(url, key, '/v1/agents', {
    name: 'mcp bench', model: 'claude-sonnet-4-6',
    mcp_servers: [{ type: 'url', name: 'str', url: `${mcp.base}/mcp` }],
    tools: [{ type: 'mcp_toolset', mcp_server_name: 'str' }],
  });
  const sid = (await post(url, key, '/v1/sessions', { agent: agent.id, environment_id: env.id })).id;
  const stream = await openSse(url, `/v1/sessions/${sid}/events/stream`, { 'x-api-key': key }, { timeoutMs: 600_000 });
  let waiters = [];
  stream.onFrame = (f) => {
    const t = hrms();
    let ev;
    try { ev = JSON.parse(f.data); } catch { return; }
    waiters = waiters.filter((w) => (w.pred(ev) ? (w.resolve({ t, ev }), false) : true));
  };
  const next = (pred) => new Promise((resolve) => waiters.push({ pred, resolve }));

  const client = new Client({ name: 'bench-peer', version: '1.0.0' });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${mcp.base}/mcp`)));

  const engine = [], turns = [], peer = [];
  for (let i = 0; i < WARMUP + CALLS && Date.now() < DEADLINE; i++) {
    const use = next((e) => e.type === 'agent.mcp_tool_use');
    const res = next((e) => e.type === 'agent.mcp_tool_result');
    const idle = next((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn');
    const t0 = hrms();
    await post(url, key, `/v1/sessions/${sid}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: `call ${i}` }] }] });
    const [u, r, d] = await Promise.all([use, res, idle]);
    const p0 = hrms();
    const out = await client.callTool({ name: 'echo', arguments: { text: 'bench' } });
    const p1 = hrms();
    if (out.content?.[0]?.text !== 'str-echo:bench') throw new Error(`peer answer: ${JSON.stringify(out)}`);
    if (i < WARMUP) continue;
    engine.push(r.t - u.t);
    turns.push(d.t - t0);
    peer.push(p1 - p0);
  }
  await client.close();
  stream.close();
  const row = (name, xs) => console.log(`${name.padEnd(44)} p50 ${f2(pct(xs, 50)).padStart(8)} ms  p99 ${f2(pct(xs, 99)).padStart(8)} ms`);
  console.log(`MCP tool-call overhead, ${engine.length} calls after ${WARMUP} warm-up (Streamable HTTP, loopback)`);
  row('engine: mcp_tool_use -> mcp_tool_result', engine);
  row('engine: whole turn with one MCP call', turns);
  row('peer: official MCP SDK client callTool', peer);
  console.log(`ratio engine call / peer call (p50): ${f2(pct(engine, 50) / pct(peer, 50))}x`);
  console.log(`engine overhead over the peer (p50): ${f2(pct(engine, 50) - pct(peer, 50))} ms`);
} finally {
  await srv.cleanup();
  await mcp.close();
  await rm(dir, { recursive: true, force: true });
}
