// Work delivery under crashes (issue 13, "Must show"): SIGKILL the service and
// the runners (`warren-runner poll`) at random points and at two chosen ones,
// over many sessions, and check the delivery guarantees of docs/QUEUE.md from
// the event history.
//
// `warren serve` runs the scripted model tests/golden/engine_e2e/delivery_crash.json
// (each "job <name> <n> <dir>" makes three model calls and three bash calls,
// one then two in parallel, each appending one line to <dir>/<name>.log) with
// a 2 s lease TTL. RUNNERS `warren-runner poll` processes serve the one
// self-hosted environment. They and this test's drivers reach the service
// through a small proxy in this file: it gives them one stable address across
// restarts (the service listens on port 0), records every answered event (the
// acknowledged ids), and injects the two chosen faults on a user.tool_result
// post:
//   handed   - the request has been handed to the service: SIGKILL the
//              service and every runner before any answer exists;
//   withheld - the service committed and answered 200: the answer is withheld
//              from the runner (its connection is cut), and the service is
//              SIGKILLed (withheld) or left running (withheld_alive).
// Other kills: the service at random moments, one runner at random moments,
// the service and all runners together. The drivers (one per session) send
// each user.message, deciding only from the persisted log, so a message lost
// with a crash is never sent twice.
//
// Invariants, per session, after everything settled:
//   - every agent.tool_use has exactly one user.tool_result;
//   - the session reached end_turn for its last job and is not waiting
//     (no requires_action, no unprocessed client event);
//   - every acknowledged event id is present exactly once; event ids are unique;
//   - no model turn recorded twice: the agent.message texts are exactly the
//     script's, in order;
//   - every call ran at least once (its line is in the side-effect file);
//     re-executions (at least once after a runner crash) are counted and printed.
//
// Env: DELIVERY_SEED (default random, printed), DELIVERY_KILLS (default 30),
// DELIVERY_SESSIONS (default 12), DELIVERY_TURNS (minimum jobs per session,
// default 2; sessions keep getting jobs while the killer runs, up to 12),
// DELIVERY_RUNNERS (default 6), DELIVERY_DEADLINE_MS (default 150000).
// bench/delivery_soak.sh runs a longer variant.
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, mkdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import Anthropic from '@anthropic-ai/sdk';
import { missingBinaryReason, startServer, makeDataDir, runCli, REPO_ROOT, sleep } from './lib/server.mjs';

const SCRIPT = path.join(REPO_ROOT, 'tests/golden/engine_e2e/delivery_crash.json');
const RUNNER = process.env.WARREN_RUNNER_BIN || path.join(REPO_ROOT, 'build/src/runner/warren-runner');
const SERVER_ENV = {
  WARREN_MODEL_PROVIDER: 'scripted',
  WARREN_MODEL_SCRIPT: SCRIPT,
  WARREN_WORK_LEASE_TTL_SECONDS: '2',
};
const SEED = Number(process.env.DELIVERY_SEED || Math.floor(Math.random() * 2 ** 31));
const KILLS = Number(process.env.DELIVERY_KILLS || 30);
const SESSIONS = Number(process.env.DELIVERY_SESSIONS || 12);
const MIN_TURNS = Number(process.env.DELIVERY_TURNS || 2); // every session has at least this many jobs
const MAX_TURNS = Math.max(12, MIN_TURNS); // and keeps getting jobs while the killer runs, up to this many
const RUNNERS = Number(process.env.DELIVERY_RUNNERS || 6);
const DEADLINE_MS = Number(process.env.DELIVERY_DEADLINE_MS || 150_000);
const STUCK_MS = 40_000; // no progress this long after the last kill = stuck
const skip = missingBinaryReason() || (existsSync(RUNNER) ? false : `no runner at ${RUNNER}`);

// mulberry32: small seeded PRNG so a failing run can be replayed.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const textOf = (ev) => (ev.content || []).filter((b) => b.type === 'text').map((b) => b.text).join('');
const expectedTexts = (name, n) => [`Start ${name}/${n}.`, `Next ${name}/${n}.`, `Finished ${name}/${n}.`];
const isClient = (e) => e.type.startsWith('user.') || e.type === 'system.message';
const STATUS = new Set(['session.status_running', 'session.status_idle', 'session.status_rescheduled', 'session.status_terminated']);

describe(`work delivery under crashes (seed ${SEED}, ${KILLS} kills, ${SESSIONS} sessions, ${RUNNERS} runners)`,
  { skip, timeout: DEADLINE_MS + 60_000 }, () => {
    const t0 = Date.now();
    const random = rng(SEED);
    let dataDir;
    let sideDir;
    let srv = null;
    let apiKey = null;
    let envId = null;
    let envKey = null;
    let gen = 0;
    let up = null;
    let upResolve = null;
    let proxy = null;
    let proxyUrl = null;
    let proxyFault = null; // {mode, fire}: armed by the killer, fired on the next tool result post
    const acked = new Map(); // event id -> session id: every event the service answered (or committed) for
    const killLog = [];
    const faultLog = { handed: 0, withheld: 0, withheld_alive: 0 };
    const runners = []; // {name, proc, log, exited}
    const sessions = [];
    const problems = [];
    let killsDone = false;
    let runnerSeq = 0;
    let handedVictims = []; // runners killed by the last `handed` fault

    const client = () => new Anthropic({ apiKey, baseURL: proxyUrl, maxRetries: 0, timeout: 10_000 });
    const ctx = () => `seed ${SEED}; kills ${killLog.length} (${killLog.map((k) => k.mode).join(',')})`;

    function markDown() {
      up = new Promise((r) => (upResolve = r));
    }
    async function boot() {
      srv = await startServer({ dataDir, env: SERVER_ENV });
      if (apiKey === null) apiKey = srv.apiKey;
      srv.apiKey = apiKey;
      gen++;
      upResolve?.();
    }
    function sigkillServer() {
      if (!srv?.alive || srv.killed) return false;
      srv.killed = true;
      markDown();
      process.kill(srv.pid, 'SIGKILL');
      return true;
    }
    async function restartServer(mode) {
      const killed = sigkillServer();
      killLog.push({ mode, at: Date.now() - t0 });
      await srv.exited;
      if (killed) assert.equal(srv.exit.signal, 'SIGKILL', `server exited by itself before the kill: ${srv.tail()}`);
      await boot();
    }

    // ------------------------------------------------------------- runners
    function spawnRunner() {
      const name = `r${runnerSeq++}`;
      const workdir = path.join(sideDir, 'work', name);
      mkdirSync(workdir, { recursive: true });
      const proc = spawn(RUNNER, ['poll', '--worker-id', name, '--environment-id', envId, '--environment-key', envKey,
        '--base-url', proxyUrl, '--workdir', workdir, '--max-idle', '2s'], { stdio: ['ignore', 'pipe', 'pipe'] });
      const r = { name, proc, log: '' };
      const keep = (d) => { r.log = (r.log + d).slice(-20000); };
      proc.stdout.on('data', keep);
      proc.stderr.on('data', keep);
      r.exited = new Promise((res) => proc.on('exit', (code, signal) => res({ code, signal })));
      runners.push(r);
      return r;
    }
    const liveRunners = () => runners.filter((r) => r.proc.exitCode === null && r.proc.signalCode === null);
    function sigkillRunners(which) {
      for (const r of which) r.proc.kill('SIGKILL');
    }
    async function replaceRunners(which) {
      sigkillRunners(which);
      await Promise.all(which.map((r) => r.exited));
      await sleep(100 + Math.floor(random() * 300));
      for (let i = 0; i < which.length; i++) spawnRunner();
    }

    // --------------------------------------------------------------- proxy
    function startProxy() {
      proxy = http.createServer((req, res) => {
        const target = srv && srv.alive && !srv.killed ? new URL(srv.url) : null;
        if (!target) {
          req.socket.destroy(); // the service is down: connection cut, as a dead host would
          return;
        }
        const isPost = req.method === 'POST' && /^\/v1\/sessions\/[^/?]+\/events(\?|$)/.test(req.url);
        const sid = isPost ? req.url.split('/')[3] : null;
        const chunks = [];
        req.on('data', (d) => chunks.push(d));
        req.on('error', () => {});
        req.on('end', () => {
          const body = Buffer.concat(chunks);
          let fault = null;
          if (isPost && proxyFault && body.includes('"user.tool_result"')) {
            fault = proxyFault;
            proxyFault = null;
          }
          const headers = { ...req.headers };
          delete headers['transfer-encoding'];
          headers['content-length'] = String(body.length);
          const upReq = http.request({
            host: target.hostname, port: target.port, method: req.method, path: req.url, headers, agent: false,
          }, (ur) => {
            if (isPost) {
              const rc = [];
              ur.on('data', (d) => rc.push(d));
              ur.on('error', () => req.socket.destroy());
              ur.on('aborted', () => req.socket.destroy());
              ur.on('end', () => {
                const rb = Buffer.concat(rc);
                if (ur.statusCode === 200) {
                  try {
                    for (const e of JSON.parse(rb).data) acked.set(e.id, sid);
                  } catch { /* not json */ }
                }
                if (fault && fault.mode.startsWith('withheld') && ur.statusCode === 200) {
                  req.socket.destroy(); // committed; the answer never reaches the runner
                  fault.fire();
                  return;
                }
                if (fault) fault.fire(); // not a 200: nothing was committed; count it as handed
                const h = { ...ur.headers };
                delete h['transfer-encoding'];
                h['content-length'] = String(rb.length);
                res.writeHead(ur.statusCode, h);
                res.end(rb);
              });
              return;
            }
            res.writeHead(ur.statusCode, ur.headers);
            res.flushHeaders(); // an event stream's head must not wait for its first event
            ur.pipe(res);
            ur.on('error', () => req.socket.destroy());
            ur.on('aborted', () => req.socket.destroy());
            ur.on('close', () => { if (!res.writableEnded) req.socket.destroy(); });
          });
          upReq.on('error', () => req.socket.destroy());
          upReq.end(body, () => {
            // Handed over: every byte of the post is on the service's socket.
            if (fault && fault.mode === 'handed') {
              fault.fire();
              fault = null;
            }
          });
        });
      });
      proxy.requestTimeout = 0;
      proxy.headersTimeout = 0;
      proxy.keepAliveTimeout = 1000;
      return new Promise((resolve) => proxy.listen(0, '127.0.0.1', () => {
        proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
        resolve();
      }));
    }

    after(async () => {
      sigkillRunners(runners);
      if (srv) await srv.kill9();
      if (proxy) {
        proxy.closeAllConnections?.();
        proxy.close();
      }
      if (!process.env.DELIVERY_KEEP) {
        if (dataDir) await rm(dataDir, { recursive: true, force: true });
        if (sideDir) await rm(sideDir, { recursive: true, force: true });
      } else {
        console.log(`kept: ${dataDir} ${sideDir}`);
      }
    });

    // -------------------------------------------------------------- drivers
    async function readLog(c, sid) {
      const out = [];
      for await (const e of c.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
      return out;
    }

    function decide(log) {
      if (log.some((e) => isClient(e) && e.processed_at === null)) return { kind: 'wait', why: 'unprocessed client event' };
      const status = log.filter((e) => STATUS.has(e.type)).at(-1);
      const turns = log.filter((e) => e.type === 'user.message').length;
      if (!status) return turns === 0 ? { kind: 'message', n: 1 } : { kind: 'wait', why: 'no status yet' };
      if (status.type !== 'session.status_idle') return { kind: 'wait', why: status.type };
      const reason = status.stop_reason?.type;
      if (reason === 'requires_action') return { kind: 'wait', why: 'requires_action' };
      if (reason === 'end_turn') {
        if (turns < MIN_TURNS || (!killsDone && turns < MAX_TURNS)) return { kind: 'message', n: turns + 1 };
        return { kind: 'done' };
      }
      return { kind: 'wait', why: `idle ${reason}` };
    }

    async function drive(s) {
      let waitedSince = null;
      let lastLen = -1;
      while (!s.finished) {
        if (Date.now() - t0 > DEADLINE_MS) {
          s.finished = true;
          s.stuck = `deadline reached (${ctx()})`;
          return;
        }
        await up;
        const c = client();
        try {
          const log = await readLog(c, s.sid);
          const act = decide(log);
          if (act.kind === 'wait') {
            if (log.length !== lastLen) {
              lastLen = log.length;
              waitedSince = Date.now();
            }
            if (killsDone && Date.now() - waitedSince > STUCK_MS) {
              s.finished = true;
              s.stuck = `no progress for ${STUCK_MS / 1000} s after the last kill (${act.why}); last events: ` +
                log.slice(-6).map((e) => e.type + (e.stop_reason ? `(${e.stop_reason.type})` : '')).join(' ');
              return;
            }
            await sleep(250);
            continue;
          }
          waitedSince = Date.now();
          if (act.kind === 'done') {
            s.finished = true;
            return;
          }
          const r = await c.beta.sessions.events.send(s.sid, {
            events: [{ type: 'user.message', content: [{ type: 'text', text: `job ${s.name} ${act.n} ${sideDir}` }] }],
          });
          for (const e of r.data) acked.set(e.id, s.sid);
        } catch (e) {
          if (e?.status && e.status < 500 && e.status !== 409) problems.push(`${s.name}: ${e.status} ${e.message}`);
          await sleep(200);
        }
      }
    }

    // --------------------------------------------------------------- killer
    async function armFault(mode) {
      let fired = false;
      await new Promise((resolve) => {
        const t = setTimeout(() => {
          if (proxyFault?.mode === mode) proxyFault = null;
          resolve();
        }, 4000);
        proxyFault = {
          mode,
          fire: () => {
            fired = true;
            clearTimeout(t);
            faultLog[mode]++;
            if (mode === 'handed') {
              sigkillServer();
              handedVictims = liveRunners();
              sigkillRunners(handedVictims);
            } else if (mode === 'withheld') {
              sigkillServer();
            }
            resolve();
          },
        };
      });
      return fired;
    }

    async function killer() {
      const modes = ['handed', 'server', 'withheld', 'runner', 'withheld_alive', 'server_and_runners', 'server', 'runner'];
      const offset = Math.floor(random() * modes.length);
      for (let k = 0; k < KILLS; k++) {
        const mode = modes[(k + offset) % modes.length];
        await sleep(300 + Math.floor(random() * 1500));
        if (mode === 'server') {
          await restartServer('server');
        } else if (mode === 'runner') {
          const live = liveRunners();
          killLog.push({ mode, at: Date.now() - t0 });
          if (live.length) await replaceRunners([live[Math.floor(random() * live.length)]]);
        } else if (mode === 'server_and_runners') {
          const live = liveRunners();
          sigkillRunners(live);
          await restartServer(mode);
          await replaceRunners(live);
        } else {
          const fired = await armFault(mode);
          if (!fired) {
            await restartServer(`${mode}(unfired: server)`);
            continue;
          }
          if (mode === 'handed') {
            const dead = handedVictims;
            handedVictims = [];
            await Promise.all(dead.map((r) => r.exited));
            await restartServer(mode);
            await sleep(100 + Math.floor(random() * 300));
            for (let i = 0; i < dead.length; i++) spawnRunner();
          } else if (mode === 'withheld') {
            await restartServer(mode);
          } else {
            killLog.push({ mode, at: Date.now() - t0 });
          }
        }
      }
      killsDone = true;
    }

    test('every call answered once, every session finished, every ack present once', async () => {
      console.log(`delivery_crash: seed ${SEED} (replay with DELIVERY_SEED=${SEED})`);
      dataDir = await makeDataDir('delivery');
      sideDir = await mkdtemp(path.join(tmpdir(), 'warren-delivery-side-'));
      markDown();
      await boot();
      await startProxy();
      const c0 = client();
      const env = await c0.beta.environments.create({ name: 'delivery-env', config: { type: 'self_hosted' } });
      envId = env.id;
      envKey = await runCli(['keys', 'create', 'environment', env.id, '--data-dir', dataDir]);
      const agent = await c0.beta.agents.create({
        name: 'delivery agent', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }],
      });
      for (let i = 0; i < SESSIONS; i++) {
        const sess = await c0.beta.sessions.create({ agent: agent.id, environment_id: env.id });
        sessions.push({ name: `s${i}`, sid: sess.id, finished: false });
      }
      for (let i = 0; i < RUNNERS; i++) spawnRunner();

      const drivers = Promise.all(sessions.map((s) => drive(s)));
      await killer();
      // A dead runner must never be what is missing at the end.
      while (liveRunners().length < RUNNERS) spawnRunner();
      await drivers;

      const c = client();
      const stuck = sessions.filter((s) => s.stuck);
      assert.deepEqual(stuck.map((s) => `${s.name} ${s.sid}: ${s.stuck}`), [],
        `${ctx()}\nrunner log tail:\n${liveRunners()[0]?.log.slice(-3000)}`);

      let calls = 0;
      let totalTurns = 0;
      let executions = 0;
      let reexecuted = 0;
      const seenIds = new Set();
      for (const s of sessions) {
        const log = await readLog(c, s.sid);
        const where = `${s.name} (${s.sid}), ${ctx()}`;
        // Event ids are unique, and every acknowledged event is present once.
        const count = new Map();
        for (const e of log) count.set(e.id, (count.get(e.id) || 0) + 1);
        for (const [id, n] of count) {
          assert.equal(n, 1, `event ${id} listed ${n} times in ${where}`);
          assert.ok(!seenIds.has(id), `event id ${id} in two sessions`);
          seenIds.add(id);
        }
        for (const [id, sid] of acked) {
          if (sid === s.sid) assert.equal(count.get(id), 1, `acknowledged event ${id} present once in ${where}`);
        }
        // Every agent tool call has exactly one result.
        const turns = log.filter((e) => e.type === 'user.message').length;
        assert.ok(turns >= MIN_TURNS && turns <= MAX_TURNS, `${turns} jobs in ${where}`);
        totalTurns += turns;
        const uses = log.filter((e) => e.type === 'agent.tool_use');
        assert.equal(uses.length, 3 * turns, `${3 * turns} tool calls in ${where}`);
        for (const u of uses) {
          const results = log.filter((e) => e.type === 'user.tool_result' && e.tool_use_id === u.id);
          assert.equal(results.length, 1, `call ${u.id} (${u.input.command}) has ${results.length} results in ${where}`);
        }
        const stray = log.filter((e) => e.type === 'user.tool_result' && !uses.some((u) => u.id === e.tool_use_id));
        assert.deepEqual(stray.map((e) => e.id), [], `results answer only this session's calls: ${where}`);
        // Every session reached end_turn for its last job, and none is waiting.
        const status = log.filter((e) => STATUS.has(e.type)).at(-1);
        assert.equal(status?.type, 'session.status_idle', where);
        assert.equal(status.stop_reason?.type, 'end_turn', where);
        assert.ok(log.filter(isClient).every((e) => e.processed_at !== null), `all client events processed: ${where}`);
        // No model turn recorded twice (and none lost).
        const texts = log.filter((e) => e.type === 'agent.message').map(textOf);
        const want = [];
        for (let n = 1; n <= turns; n++) want.push(...expectedTexts(s.name, n));
        assert.deepEqual(texts, want, `agent messages of ${where}`);
        // At least once: every call's side effect happened; count re-runs.
        const lines = readFileSync(path.join(sideDir, `${s.name}.log`), 'utf8').split('\n').filter(Boolean);
        for (const u of uses) {
          const line = u.input.command.split(' ')[1];
          const runs = lines.filter((l) => l === line).length;
          assert.ok(runs >= 1, `call ${u.id} (${line}) ran at least once in ${where}`);
          calls++;
          executions += runs;
          if (runs > 1) reexecuted++;
        }
      }
      assert.deepEqual(problems, [], `unexpected client errors; ${ctx()}`);
      assert.ok(killLog.length >= KILLS, `${KILLS} kills happened (${killLog.length})`);
      console.log(`delivery_crash: seed ${SEED}; ${killLog.length} kills (${killLog.map((k) => k.mode).join(',')}); ` +
        `faults fired ${JSON.stringify(faultLog)}; ${totalTurns} jobs, ${calls} calls, ${executions} executions, ` +
        `${reexecuted} calls ran more than once (at least once after a crash); ${acked.size} acknowledged events; ` +
        `${runnerSeq} runner processes; ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    });
  });
