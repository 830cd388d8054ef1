// The long variant of tests/conformance/orchestrator_crash.test.mjs: the
// same seeded SIGKILL campaign of `warren serve` (lib/orchestrator_crash.mjs)
// with many more kill points, over several seeds. Needs root.
//
//   WARREN_BIN=build/src/cli/warren WARREN_RUNNER_BIN=build/src/runner/warren-runner \
//     node bench/orchestrator/crash_soak.mjs [points per seed, default 300] [seed ...]
//
// Prints one line per kill and a summary per seed; exits non-zero at the
// first broken invariant, naming the seed that reproduces it.
import { runCrashCampaign, PHASES } from '../../tests/conformance/lib/orchestrator_crash.mjs';

const points = Number(process.argv[2] || 300);
const seeds = process.argv.length > 3 ? process.argv.slice(3).map(Number) : [1, 2, 3];
for (const seed of seeds) {
  const t0 = Date.now();
  const { kills, jobs, sessions } = await runCrashCampaign({ seed, points, report: (l) => console.log(`[seed ${seed}] ${l}`) });
  const by = PHASES.map((p) => `${p} ${kills.filter((k) => k.phase === p && k.anchor).length}/${kills.filter((k) => k.phase === p).length}`);
  console.log(`seed ${seed}: ${kills.length} kills (${by.join(', ')}), ${jobs} jobs in ${sessions} sessions, ` +
    `every invariant held, ${((Date.now() - t0) / 1000).toFixed(0)} s`);
}
