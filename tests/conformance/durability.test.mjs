// Durability: SIGKILL the server between and during writes, restart it on the same
// data dir, and check that every write that got a 2xx answer is there, that
// rejected-by-crash batches are all-or-nothing, and that the store is not corrupt.
// (DESIGN 2.2: every event is durable before it is acknowledged.)
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, existsSync, rmSync } from 'node:fs';
import path from 'node:path';
import { missingBinaryReason, startServer, makeDataDir, sleep } from './lib/server.mjs';
import { api } from './lib/http.mjs';

const skip = missingBinaryReason();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });

describe('durability under SIGKILL', { skip }, () => {
  let dataDir, srv, apiKey, envId, agentId;
  // Everything acknowledged so far.
  const ackedAgents = new Map(); // id -> name
  const ackedSessions = new Set();
  const ackedEvents = new Map(); // session id -> [{id, text}] in ack order
  const attemptedAgentNames = new Set(['durable agent']);
  const batches = new Map(); // batch tag -> {sid, n}

  const call = (method, p, body) => api(srv.url, apiKey, method, p, body);

  async function restart() {
    srv = await startServer({ dataDir });
    assert.equal(srv.apiKey, null, 'no new API key is printed for an existing data dir');
    srv.apiKey = apiKey;
  }

  async function listAll(p) {
    const out = [];
    let page = null;
    for (let i = 0; i < 10_000; i++) {
      const sep = p.includes('?') ? '&' : '?';
      const r = await call('GET', page ? `${p}${sep}page=${encodeURIComponent(page)}` : p);
      assert.equal(r.status, 200, `GET ${p}: ${r.status} ${r.text}`);
      out.push(...r.json.data);
      if (!r.json.next_page) return out;
      page = r.json.next_page;
    }
    throw new Error('pagination did not terminate');
  }

  async function verifyAll(label) {
    // Agents: every acked one is retrievable and intact; every listed one is complete.
    for (const [id, name] of ackedAgents) {
      const r = await call('GET', `/v1/agents/${id}`);
      assert.equal(r.status, 200, `${label}: acked agent ${id} missing after restart: ${r.text}`);
      assert.equal(r.json.name, name);
      assert.equal(r.json.version, 1);
    }
    const agents = await listAll('/v1/agents?limit=100&include_archived=true');
    assert.equal(new Set(agents.map((a) => a.id)).size, agents.length, `${label}: duplicate agents in list`);
    for (const a of agents) {
      assert.ok(attemptedAgentNames.has(a.name), `${label}: agent ${a.id} has a name nobody wrote: ${a.name}`);
      assert.equal(typeof a.model?.id, 'string', `${label}: agent ${a.id} is complete`);
    }
    for (const id of ackedAgents.keys()) assert.ok(agents.some((a) => a.id === id), `${label}: acked agent ${id} listed`);
    // Sessions.
    for (const id of ackedSessions) {
      const r = await call('GET', `/v1/sessions/${id}`);
      assert.equal(r.status, 200, `${label}: acked session ${id} missing: ${r.text}`);
      assert.equal(r.json.environment_id, envId);
    }
    const sessions = await listAll('/v1/sessions?limit=100&include_archived=true');
    for (const id of ackedSessions) assert.ok(sessions.some((s) => s.id === id), `${label}: acked session ${id} listed`);
    // Events: acked ones present, in ack order; batches all-or-nothing; ids unique.
    const seenTags = new Map();
    for (const s of sessions) {
      const evs = await listAll(`/v1/sessions/${s.id}/events?limit=1000&order=asc`);
      const ids = evs.map((e) => e.id);
      assert.equal(new Set(ids).size, ids.length, `${label}: duplicate event ids in ${s.id}`);
      for (const e of evs) {
        assert.equal(typeof e.type, 'string', `${label}: event ${e.id} intact`);
        if (e.type !== 'user.message') continue;
        const text = e.content?.[0]?.text;
        assert.equal(typeof text, 'string', `${label}: event ${e.id} has its content`);
        const tag = text.split('#')[0];
        if (batches.has(tag)) seenTags.set(tag, (seenTags.get(tag) ?? 0) + 1);
      }
      const acked = ackedEvents.get(s.id) ?? [];
      const pos = acked.map((a) => ids.indexOf(a.id));
      for (let i = 0; i < acked.length; i++) {
        assert.ok(pos[i] >= 0, `${label}: acked event ${acked[i].id} (${acked[i].text}) missing from ${s.id}`);
        const e = evs[pos[i]];
        assert.equal(e.content[0].text, acked[i].text, `${label}: acked event content`);
        if (i > 0) assert.ok(pos[i] > pos[i - 1], `${label}: acked events out of order in ${s.id}`);
      }
    }
    for (const [tag, b] of batches) {
      const n = seenTags.get(tag) ?? 0;
      assert.ok(n === 0 || n === b.n, `${label}: batch ${tag} half-written: ${n} of ${b.n} events`);
    }
    for (const sid of ackedEvents.keys()) assert.ok(sessions.some((s) => s.id === sid), `${label}: session ${sid} listed`);
  }

  before(async () => {
    dataDir = await makeDataDir('durability');
    srv = await startServer({ dataDir });
    apiKey = srv.apiKey;
    const env = await call('POST', '/v1/environments', { name: 'durable-env', config: { type: 'self_hosted' } });
    assert.equal(env.status, 200, env.text);
    envId = env.json.id;
    const ag = await call('POST', '/v1/agents', { name: 'durable agent', model: 'claude-sonnet-4-6' });
    assert.equal(ag.status, 200, ag.text);
    agentId = ag.json.id;
    ackedAgents.set(agentId, 'durable agent');
  });

  after(async () => {
    if (srv) await srv.kill9();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  test('writes acknowledged before a SIGKILL between requests survive', async () => {
    const s = await call('POST', '/v1/sessions', { agent: agentId, environment_id: envId });
    assert.equal(s.status, 200, s.text);
    ackedSessions.add(s.json.id);
    for (let i = 0; i < 20; i++) {
      const name = `seq-agent-${i}`;
      attemptedAgentNames.add(name);
      const r = await call('POST', '/v1/agents', { name, model: 'm' });
      assert.equal(r.status, 200, r.text);
      ackedAgents.set(r.json.id, name);
      const e = await call('POST', `/v1/sessions/${s.json.id}/events`, { events: [msg(`seq-${i}`)] });
      assert.equal(e.status, 200, e.text);
      if (!ackedEvents.has(s.json.id)) ackedEvents.set(s.json.id, []);
      ackedEvents.get(s.json.id).push({ id: e.json.data[0].id, text: `seq-${i}` });
    }
    const exit = await srv.kill9();
    assert.equal(exit.signal, 'SIGKILL');
    await restart();
    await verifyAll('after kill between requests');
  });

  for (let round = 0; round < 3; round++) {
    test(`writes acknowledged while a SIGKILL lands mid-load survive (round ${round + 1})`, { timeout: 120_000 }, async () => {
      // One session per worker so each worker's acked sends have a defined order.
      const workers = 16;
      const sids = [];
      for (let w = 0; w < workers; w++) {
        const r = await call('POST', '/v1/sessions', { agent: agentId, environment_id: envId });
        assert.equal(r.status, 200, r.text);
        ackedSessions.add(r.json.id);
        sids.push(r.json.id);
      }
      const killAfterAcks = 150 + round * 100;
      let acks = 0;
      let stop = false;
      let failures = 0;
      let inflight = 0;
      const victim = srv;
      const worker = async (w) => {
        for (let i = 0; !stop && i < 100_000; i++) {
          const kind = i % 3;
          inflight++;
          try {
            if (kind === 0) {
              const name = `r${round}-w${w}-agent-${i}`;
              attemptedAgentNames.add(name);
              const r = await api(victim.url, apiKey, 'POST', '/v1/agents', { name, model: 'm', metadata: { w: String(w) } });
              if (r.status === 200) {
                ackedAgents.set(r.json.id, name);
                acks++;
              } else failures++;
            } else if (kind === 1) {
              const tag = `r${round}-w${w}-b${i}`;
              const n = 1 + (i % 4);
              batches.set(tag, { sid: sids[w], n });
              const texts = Array.from({ length: n }, (_, j) => `${tag}#${j}`);
              const r = await api(victim.url, apiKey, 'POST', `/v1/sessions/${sids[w]}/events`, { events: texts.map(msg) });
              if (r.status === 200) {
                assert.equal(r.json.data.length, n);
                if (!ackedEvents.has(sids[w])) ackedEvents.set(sids[w], []);
                r.json.data.forEach((e, j) => ackedEvents.get(sids[w]).push({ id: e.id, text: texts[j] }));
                acks++;
              } else failures++;
            } else {
              const r = await api(victim.url, apiKey, 'POST', '/v1/sessions', { agent: agentId, environment_id: envId, title: `r${round}-w${w}-${i}` });
              if (r.status === 200) {
                ackedSessions.add(r.json.id);
                acks++;
              } else failures++;
            }
          } catch {
            // Connection refused/reset: the server is gone. Not acknowledged.
            if (!victim.alive) return;
            failures++;
          } finally {
            inflight--;
          }
        }
      };
      const running = Array.from({ length: workers }, (_, w) => worker(w));
      const t0 = Date.now();
      while (acks < killAfterAcks && Date.now() - t0 < 60_000) await sleep(1);
      assert.ok(acks >= killAfterAcks, `only ${acks} writes acknowledged in 60 s`);
      const inflightAtKill = inflight;
      await victim.kill9();
      stop = true;
      await Promise.all(running);
      assert.equal(failures, 0, 'no request failed with a non-2xx answer before the kill');
      assert.ok(inflightAtKill > 0, 'the kill landed while requests were in flight');
      await restart();
      await verifyAll(`after kill mid-load, round ${round + 1}`);
      // The restarted server keeps appending after the recovered log.
      const sid = sids[0];
      const recovered = (await listAll(`/v1/sessions/${sid}/events?order=asc`)).map((e) => e.id);
      const r = await call('POST', `/v1/sessions/${sid}/events`, { events: [msg(`after-restart-${round}`)] });
      assert.equal(r.status, 200, r.text);
      ackedEvents.get(sid)?.push({ id: r.json.data[0].id, text: `after-restart-${round}` }) ??
        ackedEvents.set(sid, [{ id: r.json.data[0].id, text: `after-restart-${round}` }]);
      const evs = (await listAll(`/v1/sessions/${sid}/events?order=asc`)).map((e) => e.id);
      const at = evs.indexOf(r.json.data[0].id);
      assert.ok(at >= 0, 'new event listed');
      for (const id of recovered) assert.ok(evs.indexOf(id) < at, 'a new event is ordered after every recovered one');
    });
  }

  test('the SQLite file passes PRAGMA integrity_check after the kills', { skip: existsSync('/usr/bin/sqlite3') ? false : 'sqlite3 CLI absent' }, async () => {
    await srv.kill9();
    const dbs = [];
    const walk = (d, depth) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory() && depth < 3) walk(p, depth + 1);
        else if (e.isFile() && /\.(db|sqlite3?)$/.test(e.name)) dbs.push(p);
      }
    };
    walk(dataDir, 0);
    assert.ok(dbs.length > 0, `no SQLite file found under ${dataDir}`);
    for (const db of dbs) {
      const out = execFileSync('/usr/bin/sqlite3', [db, 'PRAGMA integrity_check;'], { encoding: 'utf8' }).trim();
      assert.equal(out, 'ok', `${db}: ${out}`);
    }
    await restart();
    await verifyAll('after integrity check');
  });
});
