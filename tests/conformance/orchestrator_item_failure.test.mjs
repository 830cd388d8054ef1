// A work item that cannot be served for a reason of the session's own (here:
// its cloud environment's `config.packages` cannot become a snapshot: an
// entry the package grammar refuses, found before any build runs) is
// reported to the session in plain words, as a `session.error` and as error
// results for its pending calls, and the item is stopped without being
// delivered again (docs/ORCHESTRATOR.md, "When an item cannot be served").
// Needs root; skips with the reason otherwise.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { Fixture, orchestratorSkipReason as skipReason, waitIdle, lastText, say, sleep } from './lib/orchestrator.mjs';

describe('orchestrator: an environment whose packages cannot be built', { skip: skipReason(), timeout: 120_000 }, () => {
  const fx = new Fixture('fail');
  before(async () => { await fx.start(); });
  after(async () => { await fx.stopAndCheckLeaks(); });

  test('the session gets a session.error naming the failure, its call an error result, and the item does not loop', async () => {
    const c = fx.client;
    const env = await c.beta.environments.create({
      name: 'pip-env', config: { type: 'cloud', packages: { type: 'packages', pip: ['--index-url=http://evil.test/'] } },
    });
    const agent = await c.beta.agents.create({ name: 'a', model: 'claude-sonnet-4-6', tools: [{ type: 'agent_toolset_20260401' }] });
    const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await say(c, s.id, 'run: echo hello');
    const { evs, msgs } = await waitIdle(c, s.id, 1, 60_000);
    const errors = evs.filter((e) => e.type === 'session.error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0].error.type, 'unknown_error');
    assert.equal(errors[0].error.retry_status.type, 'terminal');
    assert.match(errors[0].error.message, /^Warren could not prepare the sandbox for this session: environment env_\w+: config\.packages\.pip\[0\]: '--index-url=http:\/\/evil\.test\/' is not a valid pip package: must not start with '-'$/);
    const results = evs.filter((e) => e.type === 'user.tool_result');
    assert.equal(results.length, 1);
    assert.equal(results[0].is_error, true);
    assert.equal(results[0].content[0].text, errors[0].error.message);
    // The turn went on with the answer: the model saw the failure.
    assert.match(lastText(msgs), /The command failed: Warren could not prepare the sandbox/);
    assert.equal((await fx.sandboxes(s.id)).length, 0, 'no sandbox was made');
    // Not delivered again: a few poll rounds later there is still exactly
    // one failure for the session.
    await sleep(3000);
    const failures = fx.log.filter((l) => l.msg === 'orchestrator.item_failed' && l.session_id === s.id);
    assert.equal(failures.length, 1, JSON.stringify(failures));
    assert.ok(fx.log.some((l) => l.msg === 'orchestrator.session_error_reported' && l.session_id === s.id));
    // A later turn is served the same way (each turn tries the build again).
    await say(c, s.id, 'run: echo again');
    const r2 = await waitIdle(c, s.id, 2, 60_000);
    assert.equal(r2.evs.filter((e) => e.type === 'session.error').length, 2);
  });
});
