// Issue 10 step 8, "Must show": at least 50 SIGKILL points across a
// session's life (claim, create, start, launch, mid-tool, stop) of `warren
// serve` with its built-in orchestrator, and a few of the standalone `warren
// orchestrator` while its `warren serve` keeps running (the full set of those
// is in the soak: bench/orchestrator/crash_soak.mjs --standalone); each tool
// call runs exactly once (a side-effect line per call), every session
// completes, never two runners or two sandboxes for a session, nothing leaks
// after teardown. Seeded: WARREN_CRASH_SEED replays a run (the default seed
// is fixed, so CI runs the same points each time). The campaign is
// lib/orchestrator_crash.mjs. Needs root.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { orchestratorSkipReason as skipReason } from './lib/orchestrator.mjs';
import { runCrashCampaign, checkPhases, PHASES } from './lib/orchestrator_crash.mjs';

const SEED = Number(process.env.WARREN_CRASH_SEED || 20261002);
const POINTS = Number(process.env.WARREN_CRASH_POINTS || 54);
const STANDALONE_POINTS = Number(process.env.WARREN_CRASH_STANDALONE_POINTS || 12);

describe('orchestrator: SIGKILL of warren serve across a session\'s life', { skip: skipReason(), timeout: 600_000 }, () => {
  test(`${POINTS} kill points, seed ${SEED}: every session completes, each call ran once, nothing leaks`, async (t) => {
    const { kills, jobs, sessions } = await runCrashCampaign({ seed: SEED, points: POINTS, report: (l) => t.diagnostic(l) });
    assert.ok(kills.length >= 50, 'at least 50 kill points');
    checkPhases(t, kills, Math.floor(POINTS / PHASES.length) - 2);
    t.diagnostic(`${jobs} jobs in ${sessions} sessions`);
  });
});

describe('orchestrator: SIGKILL of the standalone warren orchestrator across a session\'s life', { skip: skipReason(), timeout: 600_000 }, () => {
  test(`${STANDALONE_POINTS} kill points, seed ${SEED}: every session completes, each call ran once, nothing leaks`, async (t) => {
    const { kills, jobs, sessions } = await runCrashCampaign({
      seed: SEED, points: STANDALONE_POINTS, mode: 'standalone', report: (l) => t.diagnostic(l),
    });
    assert.equal(kills.length, STANDALONE_POINTS);
    checkPhases(t, kills, 1);
    t.diagnostic(`${jobs} jobs in ${sessions} sessions`);
  });
});
