// A cloud environment's `networking`, enforced, end to end: the official SDK
// against a real `warren serve` with its built-in orchestrator; the agent
// (scripted model, `run: <command>`) works in a real sandbox.
//
// The test makes its own "internet": a network namespace joined to the host
// by a veth, holding allowed.test (TEST-NET-2) and denied.test (TEST-NET-3),
// each served by an HTTP server inside the namespace that says which
// address and Host it saw. The names exist only in the service's
// `sandbox.egress_hosts` (a test-only override of the egress proxy's
// resolver). Everything is removed afterwards and checked: the namespace,
// its veth, the runtime's veths and its nft table.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { Fixture, orchestratorSkipReason, waitIdle, lastText, say } from './lib/orchestrator.mjs';

const sh = (cmd) => execFileSync('/bin/sh', ['-c', cmd], { stdio: 'pipe' }).toString();

function skipReason() {
  const r = orchestratorSkipReason();
  if (r) return r;
  try { sh('command -v ip && command -v nft'); } catch { return 'iproute2 or nftables missing'; }
  return false;
}

/** The test's internet: one netns, one veth, two HTTP hosts. */
class TestHosts {
  constructor() {
    this.ns = `wn${randomBytes(3).toString('hex')}`;
    const k = 1 + (randomBytes(1)[0] % 60);
    this.hostIp = `198.51.100.${4 * k + 1}`;
    this.allowedIp = `198.51.100.${4 * k + 2}`;
    this.deniedIp = `203.0.113.${4 * k + 2}`;
    this.server = null;
  }
  async up() {
    const { ns } = this; const h = `${ns}h`; const p = `${ns}p`; const x = `ip netns exec ${ns}`;
    for (const c of [
      `ip netns add ${ns}`, `ip link add ${h} type veth peer name ${p}`, `ip link set ${p} netns ${ns}`,
      `ip addr add ${this.hostIp}/30 dev ${h}`, `ip link set ${h} up`,
      // an uplink like any other: NATed replies to the unrestricted sandbox pass
      `echo 1 > /proc/sys/net/ipv4/conf/${h}/forwarding`,
      `${x} ip addr add ${this.allowedIp}/30 dev ${p}`, `${x} ip addr add ${this.deniedIp}/32 dev ${p}`,
      `${x} ip link set lo up`, `${x} ip link set ${p} up`, `${x} ip route add default via ${this.hostIp}`,
      `ip route add ${this.deniedIp}/32 dev ${h}`,
    ]) sh(c);
    const code = `require('http').createServer((q, r) => r.end('hello from ' + q.socket.localAddress + ' host=' + q.headers.host + '\\n'))
      .listen(80, '0.0.0.0', () => console.log('ready'));`;
    // nsenter --net, not `ip netns exec`: the latter also makes a mount
    // namespace, a copy of every mount of the host at that moment (the
    // sandbox pools of the other suites running beside this one included),
    // and that copy, alive as long as this server, keeps their loop devices
    // attached after they unmount (their leak checks fail, their graceful
    // stop waits 20 s for the loop device).
    this.server = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, '-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise((resolve, reject) => {
      this.server.stdout.on('data', (d) => { if (String(d).includes('ready')) resolve(); });
      this.server.on('exit', (c) => reject(new Error(`test host server exited ${c}`)));
    });
  }
  down() {
    if (this.server && this.server.exitCode === null) this.server.kill('SIGKILL');
    try { sh(`ip link del ${this.ns}h 2>/dev/null`); } catch { /* gone */ }
    try { sh(`ip netns del ${this.ns} 2>/dev/null`); } catch { /* gone */ }
  }
}

describe('cloud environment networking: limited and unrestricted, enforced', { skip: skipReason(), timeout: 180_000 }, () => {
  const net = new TestHosts();
  let fx; let agent;
  before(async () => {
    await net.up();
    fx = new Fixture('egress', { env: { WARREN_SANDBOX_EGRESS_HOSTS: `allowed.test=${net.allowedIp},denied.test=${net.deniedIp}` } });
    await fx.start();
    agent = await fx.client.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
  });
  after(async () => {
    try {
      if (fx) await fx.stopAndCheckLeaks();
    } finally {
      net.down();
    }
    assert.ok(!existsSync(`/run/netns/${net.ns}`), 'test netns removed');
    assert.ok(!existsSync(`/sys/class/net/${net.ns}h`), 'test veth removed');
    const ifPrefix = `w${createHash('sha256').update(fx.prefix).digest('hex').slice(0, 6)}n`;
    assert.deepEqual(readdirSync('/sys/class/net').filter((n) => n.startsWith(ifPrefix)), [], 'no sandbox veth left');
    const table = `warren_${fx.prefix.replace(/[^A-Za-z0-9_]/g, '_')}`;
    assert.ok(!sh('nft list tables').includes(table), 'no nft table left');
  });

  test('limited: an allowed host is reachable and another is not, with the reason', async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({
      name: 'limited',
      config: {
        type: 'cloud',
        networking: { type: 'limited', allowed_hosts: ['allowed.test'], allow_package_managers: true, allow_mcp_servers: false },
        packages: { type: 'packages', apt: [], pip: [] },
      },
    });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(c, s.id, 'run: wget -q -O - http://allowed.test/');
    let r = await waitIdle(c, s.id, 1);
    assert.match(lastText(r.msgs), new RegExp(`printed: hello from ${net.allowedIp.replace(/\./g, '\\.')} host=allowed\\.test`));

    const from = fx.log.length;
    await say(c, s.id, "run: wget -q -O - http://denied.test/ 2>&1; printf 'GET / HTTP/1.0\\r\\nHost: denied.test\\r\\n\\r\\n' | nc -w 5 denied.test 80");
    r = await waitIdle(c, s.id, 2);
    const text = lastText(r.msgs);
    assert.doesNotMatch(text, /hello from/);
    assert.match(text, /403 Forbidden/);
    assert.match(text, /warren egress: host denied\.test is not in this sandbox's allowed hosts/);
    // ... and by address: the dialed address does not count.
    await say(c, s.id, `run: printf 'GET / HTTP/1.0\\r\\nHost: denied.test\\r\\n\\r\\n' | nc -w 5 ${net.deniedIp} 80`);
    r = await waitIdle(c, s.id, 3);
    assert.match(lastText(r.msgs), /host denied\.test is not in this sandbox's allowed hosts/);
    const denials = fx.log.slice(from).filter((l) => l.msg === 'sandbox.egress.denied' && l.host === 'denied.test');
    assert.ok(denials.length >= 2, 'each refusal is logged');

    const [sb] = await fx.sandboxes(s.id);
    assert.equal(sb.network.type, 'limited');
    assert.ok(sb.network.allow_hosts.includes('allowed.test'));
    assert.ok(sb.network.allow_hosts.includes('pypi.org'), 'allow_package_managers adds the package hosts');
    assert.equal(denials[0].sandbox, sb.id);

    // The environment's networking changes: the session's sandbox gets the
    // new policy at its next claim (live if it still runs, else before it
    // starts again), and the hosts swap. The runner that served the turns
    // above keeps serving the session until it exits after its idle window,
    // so the next claim comes once the sandbox has been stopped for idleness.
    await fx.waitSandbox(s.id, 'stopped');
    await c.beta.environments.update(env.id, {
      config: {
        type: 'cloud',
        networking: { type: 'limited', allowed_hosts: ['denied.test'], allow_package_managers: false, allow_mcp_servers: false },
        packages: { type: 'packages', apt: [], pip: [] },
      },
    });
    await say(c, s.id, "run: wget -q -O - http://denied.test/; printf 'GET / HTTP/1.0\\r\\nHost: allowed.test\\r\\n\\r\\n' | nc -w 5 allowed.test 80");
    r = await waitIdle(c, s.id, 4);
    const swapped = lastText(r.msgs);
    assert.match(swapped, new RegExp(`hello from ${net.deniedIp.replace(/\./g, '\\.')} host=denied\\.test`));
    assert.match(swapped, /warren egress: host allowed\.test is not in this sandbox's allowed hosts/);
    const [after] = await fx.sandboxes(s.id);
    assert.equal(after.id, sb.id, 'the same sandbox');
    assert.deepEqual(after.network.allow_hosts, ['denied.test']);
    assert.ok(fx.log.some((l) => l.msg === 'orchestrator.sandbox_network_updated' && l.sandbox === sb.id));
  });

  test('unrestricted: the sandbox reaches the internet directly', async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({ name: 'open', config: { type: 'cloud', networking: { type: 'unrestricted' } } });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(c, s.id, `run: wget -q -O - http://${net.deniedIp}/`);
    const r = await waitIdle(c, s.id, 1);
    assert.match(lastText(r.msgs), new RegExp(`printed: hello from ${net.deniedIp.replace(/\./g, '\\.')}`));
    const [sb] = await fx.sandboxes(s.id);
    assert.equal(sb.network.type, 'isolated');
  });
});
