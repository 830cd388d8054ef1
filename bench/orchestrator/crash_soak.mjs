// The long variant of tests/conformance/orchestrator_crash.test.mjs: the
// same seeded SIGKILL campaign (lib/orchestrator_crash.mjs) with many more
// kill points, over several seeds: of `warren serve` with its built-in
// orchestrator, or with --standalone of a `warren orchestrator` serving a
// separate `warren serve` over HTTP (the service keeps running); with
// --network, of `warren serve` with sessions' sandboxes on the isolated and
// limited networks and the host's network state checked after every kill
// (tests/conformance/orchestrator_crash_net.test.mjs). Needs root.
//
//   WARREN_BIN=build/src/cli/warren WARREN_RUNNER_BIN=build/src/runner/warren-runner \
//     node bench/orchestrator/crash_soak.mjs [--standalone | --network] [points per seed, default 300] [seed ...]
//
// Prints one line per kill and a summary per seed; exits non-zero at the
// first broken invariant, naming the seed that reproduces it.
import { runCrashCampaign, PHASES } from '../../tests/conformance/lib/orchestrator_crash.mjs';

const args = process.argv.slice(2);
const mode = args.includes('--standalone') ? 'standalone' : 'embedded';
const network = args.includes('--network') ? 'isolated' : 'none';
const rest = args.filter((a) => a !== '--standalone' && a !== '--network');
const points = Number(rest[0] || 300);
const seeds = rest.length > 1 ? rest.slice(1).map(Number) : [1, 2, 3];
for (const seed of seeds) {
  const t0 = Date.now();
  const label = network === 'none' ? mode : `${mode}+network`;
  const { kills, jobs, sessions } = await runCrashCampaign({ seed, points, mode, network, report: (l) => console.log(`[${label} seed ${seed}] ${l}`) });
  const by = PHASES.map((p) => `${p} ${kills.filter((k) => k.phase === p && k.anchor).length}/${kills.filter((k) => k.phase === p).length}`);
  console.log(`${label} seed ${seed}: ${kills.length} kills (${by.join(', ')}), ${jobs} jobs in ${sessions} sessions, ` +
    `every invariant held, ${((Date.now() - t0) / 1000).toFixed(0)} s; ` +
    `${kills.filter((k) => k.recovered && (k.recovered.stopped || k.recovered.removed)).length} kills caught a sandbox mid-transition, ` +
    `${kills.reduce((n, k) => n + (k.recovered?.orphan_links || 0), 0)} orphan veths removed`);
  if (network !== 'none') {
    const steps = new Map();
    for (const c of kills.flatMap((k) => k.caught || [])) steps.set(c, (steps.get(c) || 0) + 1);
    console.log(`${label} seed ${seed}: states at the kills: ${JSON.stringify(Object.fromEntries(steps))}`);
  }
}
