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
//
// The `limited` environment also has `packages` (apt: jq), so one test shows
// both together: the snapshot is really built (the data dir's one
// debootstrap of debian:bookworm, then apt-get from the Debian mirror, which
// CI reaches), the agent uses jq in its sandbox, and the same sandbox
// reaches the allowed host only. One environment, so one build for the file.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { Fixture, orchestratorSkipReason, waitIdle, lastText, say } from './lib/orchestrator.mjs';

const sh = (cmd) => execFileSync('/bin/sh', ['-c', cmd], { stdio: 'pipe' }).toString();
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
// The texts of the session's tool results (the bash tool's output), in order.
const toolTexts = (evs) => evs.filter((e) => e.type === 'user.tool_result')
  .map((e) => (e.content || []).map((c) => c.text ?? '').join(''));
// The first turn waits for the packages snapshot: a debootstrap of
// debian:bookworm and an apt-get (from 30 s to a few minutes, with the
// mirror's speed and the host's load). A deadline, not an expectation: a
// failed build ends the turn at once with an error result.
const BUILD_DEADLINE_MS = 20 * 60_000;
// The packages snapshot is Debian minbase + jq: no wget or nc. The agent's
// HTTP client is bash's own /dev/tcp (`get ADDRESS HOST`: GET / over HTTP/1.0
// to ADDRESS:80 with that Host; the reply is read for up to 30 s, a bound
// for a hang, not an expectation), so that no package is added to the build
// for the test's sake.
const GET = "get() { exec 3<>/dev/tcp/$1/80 || return; printf 'GET / HTTP/1.0\\r\\nHost: %s\\r\\n\\r\\n' \"$2\" >&3; timeout 30 cat <&3; exec 3<&-; };";

function skipReason() {
  const r = orchestratorSkipReason();
  if (r) return r;
  try { sh('command -v ip && command -v nft'); } catch { return 'iproute2 or nftables missing'; }
  try { sh('PATH=$PATH:/usr/sbin command -v debootstrap'); } catch { return 'debootstrap missing (the packages snapshot)'; }
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

describe('cloud environment networking: limited (with packages) and unrestricted, enforced', { skip: skipReason(), timeout: BUILD_DEADLINE_MS + 5 * 60_000 }, () => {
  const net = new TestHosts();
  let fx; let agent;
  before(async () => {
    await net.up();
    // A short work lease (10 s, not 90 s): the packages build outlasts it,
    // so the session's item is redelivered while the build runs, as on a
    // slow host with the default lease (the redelivery joins the build).
    fx = new Fixture('egress', { top: { work_lease_ttl_seconds: 10 }, env: { WARREN_SANDBOX_EGRESS_HOSTS: `allowed.test=${net.allowedIp},denied.test=${net.deniedIp},pypi.org=${net.allowedIp}` } });
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

  // One environment with a real apt package and `limited` networking: its
  // snapshot is built at the first turn (the data dir's one debootstrap of
  // debian:bookworm, then apt-get), which outlasts the fixture's 10 s work
  // lease: the item is redelivered while the build runs, the redeliveries
  // wait for the session's preparation, and the call runs once, right after
  // the build: only the newest delivery launches a runner (the others are
  // logged orchestrator.delivery_superseded; docs/ORCHESTRATOR.md "Packages
  // in the loop").
  test('limited + packages: jq works, an allowed host is reachable and another is not, with the reason', async (t) => {
    const c = fx.client;
    const env = await c.beta.environments.create({
      name: 'limited-jq',
      config: {
        type: 'cloud',
        networking: { type: 'limited', allowed_hosts: ['allowed.test'], allow_package_managers: false, allow_mcp_servers: false },
        packages: { type: 'packages', apt: ['jq'] },
      },
    });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    // jq computes something from a file the agent wrote (not just a version
    // string), then the allowed host answers by name.
    await say(c, s.id, `run: ${GET} echo '{"a":{"b":[3,4]}}' > /tmp/in.json && echo "sum=$(jq '.a.b | add' /tmp/in.json) $(jq --version)" && get allowed.test allowed.test`);
    let r = await waitIdle(c, s.id, 1, BUILD_DEADLINE_MS);
    let out = toolTexts(r.evs);
    if (out.length === 1 && /mirror unreachable\?/.test(out[0])) {
      t.skip(`the Debian mirror is not reachable from this host: ${out[0].slice(0, 300)}`);
      return;
    }
    assert.equal(out.length, 1, `one tool result for one call, even across the build's redelivery: ${JSON.stringify(out)}`);
    assert.ok(!r.evs.some((e) => e.type === 'session.error'), JSON.stringify(r.evs.filter((e) => e.type === 'session.error')));
    assert.equal(r.evs.find((e) => e.type === 'user.tool_result').is_error, false, out[0]);
    assert.match(out[0], /^sum=7 jq-\d/m, 'jq from the environment\'s packages runs in the session\'s sandbox');
    assert.match(out[0], new RegExp(`^hello from ${esc(net.allowedIp)} host=allowed\\.test$`, 'm'));
    const [sb] = await fx.sandboxes(s.id);
    assert.match(sb.snapshot, /^pkgs-[0-9a-f]{32}/, 'the sandbox is made from the packages snapshot');
    assert.equal(sb.network.type, 'limited');
    assert.deepEqual(sb.network.allow_hosts, ['allowed.test'], 'no package manager hosts without allow_package_managers');

    // The snapshot was built with a network of its own: its apt-get reached
    // the Debian mirror (and only it), although the session's networking
    // does not allow the mirror (docs/ORCHESTRATOR.md "Networking").
    const build = fx.log.filter((l) => l.msg === 'orchestrator.packages_build' && l.environment_id === env.id).map((l) => l.line);
    const netLine = build.find((l) => /^ {2}network: limited to [^, ]+ \(egress proxy\)$/.test(l));
    assert.ok(netLine, `the build's steps reach one host, the mirror:\n${build.slice(-40).join('\n')}`);
    const mirrorHost = netLine.match(/limited to ([^ ]+) /)[1];
    const fetched = new RegExp(`\\bGet:\\d+ https?://${esc(mirrorHost)}[/:]`);
    assert.ok(build.some((l) => fetched.test(l)), `apt-get fetched from ${mirrorHost}:\n${build.slice(-40).join('\n')}`);
    assert.ok(build.some((l) => /Setting up jq /.test(l)), 'apt-get installed jq');

    const from = fx.log.length;
    await say(c, s.id, `run: ${GET} get denied.test denied.test; get ${mirrorHost} ${mirrorHost}`);
    r = await waitIdle(c, s.id, 2);
    out = toolTexts(r.evs);
    assert.equal(out.length, 2);
    assert.doesNotMatch(out[1], /hello from/);
    assert.match(out[1], /403 Forbidden/);
    assert.match(out[1], /warren egress: host denied\.test is not in this sandbox's allowed hosts/);
    // The mirror the build reached is not the session's: neither allowed nor
    // a package manager host here.
    assert.match(out[1], new RegExp(`warren egress: host ${esc(mirrorHost)} is not in this sandbox's allowed hosts`));
    // ... and by address: the dialed address does not count.
    await say(c, s.id, `run: ${GET} get ${net.deniedIp} denied.test`);
    r = await waitIdle(c, s.id, 3);
    assert.match(toolTexts(r.evs)[2], /host denied\.test is not in this sandbox's allowed hosts/);
    const denials = fx.log.slice(from).filter((l) => l.msg === 'sandbox.egress.denied' && l.sandbox === sb.id);
    assert.ok(denials.filter((l) => l.host === 'denied.test').length >= 2, 'each refusal is logged');
    assert.ok(denials.some((l) => l.host === mirrorHost), 'the mirror refusal is logged');

    // The environment's networking changes: the session's sandbox gets the
    // new policy at its next claim (live if it still runs, else before it
    // starts again), and the hosts swap; with allow_package_managers the
    // package hosts are added (pypi.org: a test host, by the service's
    // `sandbox.egress_hosts`). The runner that served the turns above keeps
    // serving the session until it exits after its idle window, so the next
    // claim comes once the sandbox has been stopped for idleness.
    await fx.waitSandbox(s.id, 'stopped');
    await c.beta.environments.update(env.id, {
      config: {
        type: 'cloud',
        networking: { type: 'limited', allowed_hosts: ['denied.test'], allow_package_managers: true, allow_mcp_servers: false },
        packages: { type: 'packages', apt: ['jq'] },
      },
    });
    await say(c, s.id, `run: ${GET} get denied.test denied.test; get allowed.test allowed.test; get pypi.org pypi.org; echo '[5,6]' | jq -c 'map(.*2)'`);
    r = await waitIdle(c, s.id, 4);
    out = toolTexts(r.evs);
    assert.equal(out.length, 4);
    const swapped = out[3];
    assert.match(swapped, new RegExp(`^hello from ${esc(net.deniedIp)} host=denied\\.test$`, 'm'));
    assert.match(swapped, /warren egress: host allowed\.test is not in this sandbox's allowed hosts/);
    // pypi.org has allowed.test's address: the proxy decides by name.
    assert.match(swapped, new RegExp(`^hello from ${esc(net.allowedIp)} host=pypi\\.org$`, 'm'));
    assert.match(swapped, /^\[10,12\]$/m, 'the packages are still there after the stop and the policy change');
    const [after] = await fx.sandboxes(s.id);
    assert.equal(after.id, sb.id, 'the same sandbox');
    assert.equal(after.snapshot, sb.snapshot);
    assert.ok(after.network.allow_hosts.includes('denied.test'));
    assert.ok(!after.network.allow_hosts.includes('allowed.test'));
    for (const h of ['pypi.org', 'deb.debian.org', 'registry.npmjs.org']) {
      assert.ok(after.network.allow_hosts.includes(h), `allow_package_managers adds ${h}`);
    }
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
