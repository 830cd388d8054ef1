// MCP servers and vaults with the official SDK (issue 12, parts 1 and 2).
//
// A real MCP server (the official @modelcontextprotocol/sdk, lib/mcp_server.mjs)
// runs in this process over both transports; a real `warren serve` runs the
// scripted model, whose rules call MCP tools by their model-facing names
// (mcp__<server>__<tool>). Checked: the events and results of a call over
// Streamable HTTP and over HTTP+SSE; always_ask waits for user.tool_confirmation;
// bearer and OAuth credentials from the session's vaults are sent, and a 401
// triggers exactly one refresh; a dead server gives session.error naming it
// while the session goes on; vault and credential CRUD, archive, the 20-per-vault
// limit; and no secret's bytes in any API response, event or server log line.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import http from 'node:http';
import { writeFile, mkdtemp, rm, readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import Anthropic from '@anthropic-ai/sdk';
import { missingBinaryReason, startServer } from './lib/server.mjs';
import { startMcpServer } from './lib/mcp_server.mjs';
import { waitFor, settle } from './lib/util.mjs';
import { rawRequest, envelopeProblems } from './lib/http.mjs';
import { Fixture, orchestratorSkipReason, waitIdle, lastText, say } from './lib/orchestrator.mjs';

const skip = missingBinaryReason();
const msg = (text) => ({ type: 'user.message', content: [{ type: 'text', text }] });
const call = (user, name, input) => ({ when: { user }, reply: { text: `calling ${name}`, tool_calls: [{ name, input }] } });
const SCRIPT = {
  rules: [
    call('call str echo', 'mcp__str__echo', { text: 'hi' }),
    call('call legacy echo', 'mcp__legacy__echo', { text: 'old' }),
    call('call json echo', 'mcp__jsonsrv__echo', { text: 'plain' }),
    call('call oauth echo', 'mcp__oauth__echo', { text: 'tok' }),
    call('call big', 'mcp__str__big', { bytes: 600000 }),
    call('call slow', 'mcp__str__slow', {}),
    call('grow tools', 'mcp__str__grow', {}),
    call('call gate', 'mcp__str__gate', {}),
    call('call cutoff', 'mcp__str__cutoff', {}),
    call('call count', 'mcp__str__count', {}),
    call('call whoami', 'mcp__str__whoami', {}),
    { when: { user: 'what is offered', offered_tool: 'mcp__str__late2' }, reply: 'late2 is offered' },
    { when: { user: 'what is offered' }, reply: 'late2 is not offered' },
    { when: { user: { regex: '^tally (\\w+)$' } }, reply: { text: 'tallying', tool_calls: [
      { name: 'mcp__str__tally', input: { key: '{{1}}-first' } },
      { name: 'mcp__str__tally', input: { key: '{{1}}-second', hold: true } }] } },
    { when: { user: 'just talk' }, reply: 'talked' },
    { when: { user: 'is echo offered', offered_tool: 'mcp__str__echo' }, reply: 'echo is offered' },
    { when: { user: 'is echo offered' }, reply: 'echo is not offered' },
    { when: { user: 'is count offered', offered_tool: 'mcp__str__count' }, reply: 'count is offered' },
    { when: { user: 'is count offered' }, reply: 'count is not offered' },
    { when: { tool_name: 'mcp__str__grow', offered_tool: 'mcp__str__late' }, reply: 'the late tool is offered' },
    { when: { tool_name: 'mcp__str__big' }, reply: 'big done' },
    { when: { tool_name: { regex: '^mcp__' } }, reply: 'Tool said: {{tool_result}}' },
  ],
};

describe('MCP servers and vaults with the official SDK', { skip }, () => {
  let srv, org, mcp, env, dir;
  const responses = []; // every vault/credential API answer, as JSON text
  const secrets = [];
  const keep = (x) => {
    responses.push(JSON.stringify(x));
    return x;
  };
  const secret = (s) => {
    secrets.push(s);
    return s;
  };

  before(async () => {
    mcp = await startMcpServer();
    dir = await mkdtemp(path.join(tmpdir(), 'warren-mcp-'));
    const script = path.join(dir, 'script.json');
    await writeFile(script, JSON.stringify(SCRIPT));
    // Debug level: every log line the server can write is checked for secrets.
    srv = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script, WARREN_LOG_LEVEL: 'debug' } });
    org = new Anthropic({ apiKey: srv.apiKey, baseURL: srv.url, maxRetries: 0, timeout: 60_000 });
    env = await org.beta.environments.create({ name: 'mcp-env', config: { type: 'self_hosted' } });
  });

  after(async () => {
    const alive = srv?.alive;
    const tail = srv?.tail();
    if (srv) await srv.cleanup();
    if (mcp) await mcp.close();
    if (dir) await rm(dir, { recursive: true, force: true });
    if (srv) assert.ok(alive, `warren serve died during the suite:\n${tail}`);
  });

  const agentWith = async (servers, policy = 'always_allow') =>
    org.beta.agents.create({
      name: `mcp agent ${servers.map((s) => s.name).join('+')} ${policy}`,
      model: 'claude-sonnet-4-6',
      mcp_servers: servers.map((s) => ({ type: 'url', name: s.name, url: s.url })),
      tools: servers.map((s) => ({
        type: 'mcp_toolset', mcp_server_name: s.name,
        default_config: { enabled: true, permission_policy: { type: policy } },
      })),
    });

  async function events(sid) {
    const out = [];
    for await (const e of org.beta.sessions.events.list(sid, { limit: 1000 })) out.push(e);
    return out;
  }
  const lastIdle = (evs) => evs.filter((e) => e.type === 'session.status_idle').at(-1);
  async function runTurn(agent, text, vaultIds = []) {
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id, vault_ids: vaultIds });
    await org.beta.sessions.events.send(s.id, { events: [msg(text)] });
    await settle(org, s.id, { timeoutMs: 30_000 });
    return { sid: s.id, evs: await events(s.id) };
  }
  const textOf = (e) => (e.content || []).filter((b) => b.type === 'text').map((b) => b.text).join('');

  test('vaults and credentials: CRUD, archive, the 20-per-vault limit, secrets never returned', async () => {
    const v = keep(await org.beta.vaults.create({ display_name: 'crud vault', metadata: { team: 'a' } }));
    assert.match(v.id, /^vlt_/);
    assert.equal(v.type, 'vault');
    assert.equal(v.archived_at, null);
    assert.equal(keep(await org.beta.vaults.retrieve(v.id)).display_name, 'crud vault');
    const up = keep(await org.beta.vaults.update(v.id, { display_name: 'renamed', metadata: { team: null, x: '1' } }));
    assert.equal(up.display_name, 'renamed');
    assert.deepEqual(up.metadata, { x: '1' });

    const tok = secret(`static-${'S'.repeat(20)}-${Date.now()}`);
    const c = keep(await org.beta.vaults.credentials.create(v.id, {
      display_name: 'bearer', auth: { type: 'static_bearer', token: tok, mcp_server_url: 'https://example.invalid/mcp' },
    }));
    assert.match(c.id, /^vcrd_/);
    assert.equal(c.type, 'vault_credential');
    assert.deepEqual(c.auth, { type: 'static_bearer', mcp_server_url: 'https://example.invalid/mcp' });
    const rt = secret(`rt-secret-${Date.now()}`);
    const cs = secret(`cs-secret-${Date.now()}`);
    const at = secret(`at-secret-${Date.now()}`);
    const o = keep(await org.beta.vaults.credentials.create(v.id, {
      auth: {
        type: 'mcp_oauth', access_token: at, mcp_server_url: 'https://example.invalid/o', expires_at: '2030-01-01T00:00:00Z',
        refresh: { client_id: 'cid', refresh_token: rt, token_endpoint: 'https://example.invalid/token',
          token_endpoint_auth: { type: 'client_secret_basic', client_secret: cs } },
      },
    }));
    assert.equal(o.auth.refresh.token_endpoint_auth.type, 'client_secret_basic');
    assert.equal(o.auth.refresh.client_id, 'cid');
    keep(await org.beta.vaults.credentials.retrieve(o.id, { vault_id: v.id }));
    const tok2 = secret(`static-rotated-${Date.now()}`);
    const u = keep(await org.beta.vaults.credentials.update(c.id, { vault_id: v.id, auth: { type: 'static_bearer', token: tok2 } }));
    assert.equal(u.id, c.id);
    for await (const x of org.beta.vaults.credentials.list(v.id)) keep(x);
    for await (const x of org.beta.vaults.list()) keep(x);

    // The limit: 20 live credentials per vault; archiving one frees a slot.
    const lim = keep(await org.beta.vaults.create({ display_name: 'limit vault' }));
    const made = [];
    for (let i = 0; i < 20; i++) {
      made.push(keep(await org.beta.vaults.credentials.create(lim.id, {
        auth: { type: 'static_bearer', token: secret(`limit-token-${i}-${Date.now()}`), mcp_server_url: `https://h${i}.invalid/` },
      })));
    }
    await assert.rejects(
      org.beta.vaults.credentials.create(lim.id, { auth: { type: 'static_bearer', token: 'x-extra-token', mcp_server_url: 'https://x.invalid/' } }),
      (e) => e.status === 409 && /20/.test(e.message));
    const arch = keep(await org.beta.vaults.credentials.archive(made[0].id, { vault_id: lim.id }));
    assert.ok(arch.archived_at);
    keep(await org.beta.vaults.credentials.create(lim.id, { auth: { type: 'static_bearer', token: secret('after-archive-token'), mcp_server_url: 'https://y.invalid/' } }));
    await assert.rejects(org.beta.vaults.credentials.update(made[0].id, { vault_id: lim.id, display_name: 'x' }), (e) => e.status === 400);

    // Delete a credential, archive and delete vaults.
    const del = keep(await org.beta.vaults.credentials.delete(made[1].id, { vault_id: lim.id }));
    assert.deepEqual(del, { id: made[1].id, type: 'vault_credential_deleted' });
    await assert.rejects(org.beta.vaults.credentials.retrieve(made[1].id, { vault_id: lim.id }), (e) => e.status === 404);
    const av = keep(await org.beta.vaults.archive(lim.id));
    assert.ok(av.archived_at);
    const archivedCreds = [];
    for await (const x of org.beta.vaults.credentials.list(lim.id, { include_archived: true })) archivedCreds.push(keep(x));
    assert.ok(archivedCreds.every((x) => x.archived_at), 'archiving a vault archives its credentials');
    const listed = [];
    for await (const x of org.beta.vaults.list()) listed.push(x.id);
    assert.ok(!listed.includes(lim.id), 'archived vaults are hidden by default');
    await assert.rejects(
      org.beta.sessions.create({ agent: (await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }])).id, environment_id: env.id, vault_ids: [lim.id] }),
      (e) => e.status === 400);
    assert.deepEqual(keep(await org.beta.vaults.delete(lim.id)), { id: lim.id, type: 'vault_deleted' });
    await assert.rejects(org.beta.vaults.retrieve(lim.id), (e) => e.status === 404);
    await assert.rejects(org.beta.sessions.create({ agent: 'agent_x', environment_id: env.id, vault_ids: ['vlt_nope'] }), (e) => e.status >= 400);
  });

  test('a missing secrets key is a clear start-up error once a vault exists', async () => {
    const own = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted' } });
    const dataDir = own.dataDir;
    try {
      const c = new Anthropic({ apiKey: own.apiKey, baseURL: own.url, maxRetries: 0 });
      await c.beta.vaults.create({ display_name: 'keyed' });
      await own.stop();
      await rm(path.join(dataDir, 'secrets.key'));
      await assert.rejects(startServer({ dataDir, startTimeoutMs: 10_000 }),
        (e) => /vault\(s\) but no secrets key/.test(e.message) && /WARREN_SECRETS_KEY/.test(e.message));
    } finally {
      await own.cleanup();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  test('Streamable HTTP: the model calls an MCP tool with the vault bearer; right events and result', async () => {
    const token = secret(`bearer-${Date.now()}-STR`);
    mcp.state.tokens.str = token;
    const v = keep(await org.beta.vaults.create({ display_name: 'str vault' }));
    keep(await org.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token, mcp_server_url: `${mcp.base}/mcp` } }));
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const { evs } = await runTurn(agent, 'call str echo', [v.id]);
    const use = evs.find((e) => e.type === 'agent.mcp_tool_use');
    assert.ok(use, evs.map((e) => e.type).join(' '));
    assert.equal(use.name, 'echo');
    assert.equal(use.mcp_server_name, 'str');
    assert.equal(use.evaluated_permission, 'allow');
    assert.deepEqual(use.input, { text: 'hi' });
    const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
    assert.equal(res.mcp_tool_use_id, use.id);
    assert.equal(res.is_error, false);
    assert.equal(textOf(res), 'str-echo:hi');
    assert.equal(textOf(evs.filter((e) => e.type === 'agent.message').at(-1)), 'Tool said: str-echo:hi');
    assert.equal(lastIdle(evs).stop_reason.type, 'end_turn');
    assert.ok(!evs.some((e) => e.type === 'session.error'), 'no error');
    assert.ok(mcp.state.auth.some((a) => a.path === '/mcp' && a.authorization === `Bearer ${token}`), 'the bearer was sent');
  });

  test('a server that echoes the bearer it got: the result reaches the events and the model scrubbed', async () => {
    const token = secret(`bearer-${Date.now()}-WHOAMI`);
    mcp.state.tokens.str = token;
    try {
      const v = keep(await org.beta.vaults.create({ display_name: 'whoami vault' }));
      keep(await org.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token, mcp_server_url: `${mcp.base}/mcp` } }));
      const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
      const { evs } = await runTurn(agent, 'call whoami', [v.id]);
      const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
      assert.ok(res, evs.map((e) => e.type).join(' '));
      assert.equal(res.is_error, false);
      assert.equal(textOf(res), 'you sent Bearer [redacted]');
      assert.equal(textOf(evs.filter((e) => e.type === 'agent.message').at(-1)), 'Tool said: you sent Bearer [redacted]');
      assert.ok(!JSON.stringify(evs).includes(token));
    } finally {
      mcp.state.tokens.str = null;
    }
  });

  test('Streamable HTTP with JSON answers (the SDK server with enableJsonResponse): the same call works', async () => {
    const agent = await agentWith([{ name: 'jsonsrv', url: `${mcp.base}/json-mcp` }]);
    const { evs } = await runTurn(agent, 'call json echo');
    const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
    assert.ok(res, evs.map((e) => e.type).join(' '));
    assert.equal(res.is_error, false);
    assert.equal(textOf(res), 'json-echo:plain');
    assert.ok(!evs.some((e) => e.type === 'session.error'), 'no error');
    // The answers to its POSTs were JSON bodies, not event streams (the
    // standalone GET stream is an event stream either way).
    const posts = mcp.state.jsonContentTypes.filter((c) => c.startsWith('POST '));
    assert.ok(posts.length >= 3, JSON.stringify(mcp.state.jsonContentTypes));  // initialize, tools/list, tools/call
    assert.ok(posts.every((c) => c.startsWith('POST application/json')), JSON.stringify(mcp.state.jsonContentTypes));
    // Warren's POSTs accept both answer kinds, as the transport requires.
    const accepts = mcp.state.jsonAccepts.filter((a) => a.startsWith('POST '));
    assert.ok(accepts.length >= 3 && accepts.every((a) => a.includes('application/json') && a.includes('text/event-stream')),
      JSON.stringify(accepts));
  });

  test('HTTP+SSE (older transport): the same call works', async () => {
    const token = secret(`legacy-${Date.now()}-SSE`);
    mcp.state.tokens.legacy = token;
    const v = keep(await org.beta.vaults.create({ display_name: 'legacy vault' }));
    keep(await org.beta.vaults.credentials.create(v.id, { auth: { type: 'static_bearer', token, mcp_server_url: `${mcp.base}/sse` } }));
    const agent = await agentWith([{ name: 'legacy', url: `${mcp.base}/sse` }]);
    const { evs } = await runTurn(agent, 'call legacy echo', [v.id]);
    const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
    assert.ok(res, evs.map((e) => e.type).join(' '));
    assert.equal(textOf(res), 'legacy-echo:old');
    assert.equal(textOf(evs.filter((e) => e.type === 'agent.message').at(-1)), 'Tool said: legacy-echo:old');
    assert.ok(mcp.state.auth.some((a) => a.path === '/sse' && a.authorization === `Bearer ${token}`));
  });

  test('always_ask on an MCP tool waits for user.tool_confirmation', async () => {
    mcp.state.tokens.str = null;
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }], 'always_ask');
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const before = mcp.state.toolCalls;
    await org.beta.sessions.events.send(s.id, { events: [msg('call str echo')] });
    await settle(org, s.id, { timeoutMs: 30_000 });
    let evs = await events(s.id);
    const use = evs.find((e) => e.type === 'agent.mcp_tool_use');
    assert.equal(use.evaluated_permission, 'ask');
    const idle = lastIdle(evs);
    assert.equal(idle.stop_reason.type, 'requires_action');
    assert.deepEqual(idle.stop_reason.event_ids, [use.id]);
    assert.equal(mcp.state.toolCalls, before, 'not called before approval');
    assert.ok(!evs.some((e) => e.type === 'agent.mcp_tool_result'));
    await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.tool_confirmation', tool_use_id: use.id, result: 'allow' }] });
    await waitFor(async () => lastIdle(await events(s.id))?.stop_reason.type === 'end_turn', { timeoutMs: 30_000, what: 'end_turn after approval' });
    evs = await events(s.id);
    assert.equal(mcp.state.toolCalls, before + 1);
    assert.equal(textOf(evs.find((e) => e.type === 'agent.mcp_tool_result')), 'str-echo:hi');
  });

  test('enabled: false on one MCP tool: not offered to the model, and a call to it anyway never reaches the server', async () => {
    mcp.state.tokens.str = null;
    const agent = await org.beta.agents.create({
      name: 'mcp agent echo disabled', model: 'claude-sonnet-4-6',
      mcp_servers: [{ type: 'url', name: 'str', url: `${mcp.base}/mcp` }],
      tools: [{
        type: 'mcp_toolset', mcp_server_name: 'str',
        default_config: { enabled: true, permission_policy: { type: 'always_allow' } },
        configs: [{ name: 'echo', enabled: false }],
      }],
    });
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const ask = async (text, n) => {
      await org.beta.sessions.events.send(s.id, { events: [msg(text)] });
      await turnsEnded(s.id, n, text);
      return textOf((await events(s.id)).filter((e) => e.type === 'agent.message').at(-1));
    };
    assert.equal(await ask('is echo offered', 1), 'echo is not offered');
    assert.equal(await ask('is count offered', 2), 'count is offered', 'the server\'s other tools are offered');
    const calls = mcp.state.toolCalls;
    const reply = await ask('call str echo', 3);
    assert.equal(mcp.state.toolCalls, calls, 'the disabled tool was never called');
    const evs = await events(s.id);
    assert.ok(!evs.some((e) => e.type === 'agent.mcp_tool_result' && !e.is_error), evs.map((e) => e.type).join(' '));
    assert.match(reply, /^Tool said: .*(Unknown tool|not enabled).*mcp__str__echo/s, reply);
  });

  test('OAuth: the access token is refused once, refreshed once at the token endpoint, and the call succeeds', async () => {
    const refresh = secret(`rt-${Date.now()}-OAUTH`);
    const clientSecret = secret(`cs-${Date.now()}-OAUTH`);
    mcp.state.oauth.refresh = refresh;
    mcp.state.oauth.clientSecret = clientSecret;
    const v = keep(await org.beta.vaults.create({ display_name: 'oauth vault' }));
    const cred = keep(await org.beta.vaults.credentials.create(v.id, {
      auth: {
        type: 'mcp_oauth', access_token: secret(`at-stale-${Date.now()}`), mcp_server_url: `${mcp.base}/oauth-mcp`,
        expires_at: '2099-01-01T00:00:00Z',
        refresh: { client_id: 'warren-test', refresh_token: refresh, token_endpoint: `${mcp.base}/token`,
          token_endpoint_auth: { type: 'client_secret_post', client_secret: clientSecret } },
      },
    }));
    const agent = await agentWith([{ name: 'oauth', url: `${mcp.base}/oauth-mcp` }]);
    const { evs } = await runTurn(agent, 'call oauth echo', [v.id]);
    assert.equal(mcp.state.tokenRequests.length, 1, 'exactly one refresh');
    assert.equal(mcp.state.tokenRequests[0].client_id, 'warren-test');
    assert.equal(textOf(evs.find((e) => e.type === 'agent.mcp_tool_result')), 'oauth-echo:tok');
    secret(mcp.state.oauth.access);
    secret(mcp.state.oauth.refresh);
    assert.ok(mcp.state.auth.some((a) => a.path === '/oauth-mcp' && a.authorization === `Bearer ${mcp.state.oauth.access}`));
    const after = keep(await org.beta.vaults.credentials.retrieve(cred.id, { vault_id: v.id }));
    assert.notEqual(after.auth.expires_at, '2099-01-01T00:00:00Z', 'expires_at follows the new token');
    // mcp_oauth_validate refreshes (the rotated refresh token works) and probes the server.
    const val = keep(await org.beta.vaults.credentials.mcpOAuthValidate(cred.id, { vault_id: v.id }));
    assert.equal(val.type, 'vault_credential_validation');
    assert.equal(val.refresh.status, 'succeeded');
    assert.equal(val.status, 'valid');
    assert.equal(val.mcp_probe.http_response.status_code, 200);
    secret(mcp.state.oauth.access);
    secret(mcp.state.oauth.refresh);
  });

  test('OAuth: an expired access token is refreshed before use (never sent), once', async () => {
    const refresh = secret(`rt-${Date.now()}-EXPIRED`);
    const clientSecret = secret(`cs-${Date.now()}-EXPIRED`);
    mcp.state.oauth.refresh = refresh;
    mcp.state.oauth.clientSecret = clientSecret;
    const stale = secret(`at-expired-${Date.now()}`);
    const v = keep(await org.beta.vaults.create({ display_name: 'expired vault' }));
    keep(await org.beta.vaults.credentials.create(v.id, {
      auth: {
        type: 'mcp_oauth', access_token: stale, mcp_server_url: `${mcp.base}/oauth-mcp`, expires_at: '2020-01-01T00:00:00Z',
        refresh: { client_id: 'warren-test', refresh_token: refresh, token_endpoint: `${mcp.base}/token`,
          token_endpoint_auth: { type: 'client_secret_post', client_secret: clientSecret } },
      },
    }));
    const tokenRequests = mcp.state.tokenRequests.length;
    const authSeen = mcp.state.auth.length;
    const agent = await agentWith([{ name: 'oauth', url: `${mcp.base}/oauth-mcp` }]);
    const { evs } = await runTurn(agent, 'call oauth echo', [v.id]);
    assert.equal(textOf(evs.find((e) => e.type === 'agent.mcp_tool_result')), 'oauth-echo:tok');
    assert.equal(mcp.state.tokenRequests.length, tokenRequests + 1, 'one refresh');
    secret(mcp.state.oauth.access);
    secret(mcp.state.oauth.refresh);
    const sent = mcp.state.auth.slice(authSeen).filter((a) => a.path === '/oauth-mcp').map((a) => a.authorization);
    assert.ok(sent.length >= 1);
    assert.ok(!sent.includes(`Bearer ${stale}`), 'the expired token was never sent');
    assert.ok(sent.every((a) => a === `Bearer ${mcp.state.oauth.access}`), JSON.stringify(sent.map((a) => a?.slice(0, 20))));
  });

  test('a refused credential gives mcp_authentication_failed_error naming the server', async () => {
    const v = keep(await org.beta.vaults.create({ display_name: 'bad vault' }));
    keep(await org.beta.vaults.credentials.create(v.id, {
      auth: { type: 'static_bearer', token: secret(`wrong-${Date.now()}`), mcp_server_url: `${mcp.base}/oauth-mcp` },
    }));
    const agent = await agentWith([{ name: 'oauth', url: `${mcp.base}/oauth-mcp` }]);
    const { evs } = await runTurn(agent, 'call oauth echo', [v.id]);
    const err = evs.find((e) => e.type === 'session.error');
    assert.ok(err, evs.map((e) => e.type).join(' '));
    assert.equal(err.error.type, 'mcp_authentication_failed_error');
    assert.equal(err.error.mcp_server_name, 'oauth');
    assert.equal(lastIdle(evs).stop_reason.type, 'end_turn', 'the session goes on');
  });

  test('a dead server gives session.error naming it while the other server works', async () => {
    mcp.state.tokens.str = null;
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }, { name: 'dead', url: 'http://127.0.0.1:1/mcp' }]);
    const { sid, evs } = await runTurn(agent, 'call str echo');
    const err = evs.find((e) => e.type === 'session.error');
    assert.ok(err, evs.map((e) => e.type).join(' '));
    assert.equal(err.error.type, 'mcp_connection_failed_error');
    assert.equal(err.error.mcp_server_name, 'dead');
    assert.equal(textOf(evs.find((e) => e.type === 'agent.mcp_tool_result')), 'str-echo:hi');
    assert.equal(lastIdle(evs).stop_reason.type, 'end_turn');
    // The next turn still works (and the dead server is not reported again).
    await org.beta.sessions.events.send(sid, { events: [msg('call str echo')] });
    await settle(org, sid, { timeoutMs: 30_000 });
    const evs2 = await events(sid);
    assert.equal(evs2.filter((e) => e.type === 'agent.mcp_tool_result').length, 2);
    assert.equal(evs2.filter((e) => e.type === 'session.error').length, 1);
  });

  test('a large output reaches the model as a preview', async () => {
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const { evs } = await runTurn(agent, 'call big');
    const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
    const text = textOf(res);
    assert.ok(text.length < 600000, `cut: ${text.length}`);
    assert.match(text, /output truncated: the tool returned 600000 bytes/);
    // A self_hosted session has no sandbox of ours to hold the rest: said so.
    assert.match(text, /the full output was not kept: this session has no sandbox to hold it/);
  });

  test('with engine_threads=1, a slow MCP call does not stall another session: its turn completes meanwhile', async () => {
    const script = path.join(dir, 'script.json');
    const own = await startServer({
      env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script, WARREN_ENGINE_THREADS: '1' },
    });
    try {
      const c = new Anthropic({ apiKey: own.apiKey, baseURL: own.url, maxRetries: 0 });
      const e = await c.beta.environments.create({ name: 'one-thread', config: { type: 'self_hosted' } });
      const a = await c.beta.agents.create({
        name: 'one-thread agent', model: 'claude-sonnet-4-6',
        mcp_servers: [{ type: 'url', name: 'str', url: `${mcp.base}/mcp` }],
        tools: [{ type: 'mcp_toolset', mcp_server_name: 'str' }],
      });
      const slow = await c.beta.sessions.create({ agent: a.id, environment_id: e.id });
      const other = await c.beta.sessions.create({ agent: a.id, environment_id: e.id });
      mcp.state.gateOpen = false;
      const started = mcp.state.gateStarted;
      await c.beta.sessions.events.send(slow.id, { events: [msg('call gate')] });
      await waitFor(() => mcp.state.gateStarted > started, { timeoutMs: 20_000, what: 'the gate tool started' });
      // The only engine thread is free: the other session's whole turn
      // (listing its MCP tools, the model call, recording) completes while
      // the gate call is still pending.
      const list = async (sid) => {
        const out = [];
        for await (const x of c.beta.sessions.events.list(sid, { limit: 1000 })) out.push(x);
        return out;
      };
      await c.beta.sessions.events.send(other.id, { events: [msg('just talk')] });
      await waitFor(async () => lastIdle(await list(other.id))?.stop_reason.type === 'end_turn',
        { timeoutMs: 20_000, what: "the other session's turn to complete while the gate call is pending" });
      const otherEvs = await list(other.id);
      assert.equal(textOf(otherEvs.filter((x) => x.type === 'agent.message').at(-1)), 'talked');
      assert.equal(lastIdle(otherEvs).stop_reason.type, 'end_turn');
      assert.ok(!(await list(slow.id)).some((x) => x.type === 'agent.mcp_tool_result'), 'the gate call is still pending');
      assert.equal((await c.beta.sessions.retrieve(slow.id)).status, 'running');
      mcp.state.gateOpen = true;
      await waitFor(async () => lastIdle(await list(slow.id))?.stop_reason.type === 'end_turn',
        { timeoutMs: 20_000, what: 'the gate call to complete' });
      const done = await list(slow.id);
      assert.equal(textOf(done.find((x) => x.type === 'agent.mcp_tool_result')), 'gate passed');
      assert.equal(textOf(done.filter((x) => x.type === 'agent.message').at(-1)), 'Tool said: gate passed');
    } finally {
      mcp.state.gateOpen = true;
      await own.cleanup();
    }
  });

  test('user.interrupt cancels an MCP call in flight (the server sees notifications/cancelled)', async () => {
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const started = mcp.state.slowStarted;
    const aborted = mcp.state.slowAborted;
    await org.beta.sessions.events.send(s.id, { events: [msg('call slow')] });
    await waitFor(() => mcp.state.slowStarted > started, { timeoutMs: 20_000, what: 'the slow tool started' });
    await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.interrupt' }] });
    await waitFor(() => mcp.state.slowAborted > aborted, { timeoutMs: 20_000, what: 'the server saw the cancellation' });
    await waitFor(async () => lastIdle(await events(s.id))?.stop_reason.type === 'end_turn',
      { timeoutMs: 20_000, what: 'idle end_turn after the interrupt' });
    const evs = await events(s.id);
    assert.ok(!evs.some((e) => e.type === 'agent.mcp_tool_result' && textOf(e) === 'slow done'), 'no late result');
    assert.equal((await org.beta.sessions.retrieve(s.id)).status, 'idle');
  });

  test('a SIGKILL during an MCP call: after a restart the call is made again and the turn completes once', async () => {
    const script = path.join(dir, 'script.json');
    const own = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script } });
    let again;
    try {
      let c = new Anthropic({ apiKey: own.apiKey, baseURL: own.url, maxRetries: 0 });
      const e = await c.beta.environments.create({ name: 'crash-env', config: { type: 'self_hosted' } });
      const a = await c.beta.agents.create({
        name: 'crash agent', model: 'claude-sonnet-4-6',
        mcp_servers: [{ type: 'url', name: 'str', url: `${mcp.base}/mcp` }],
        tools: [{ type: 'mcp_toolset', mcp_server_name: 'str' }],
      });
      const s = await c.beta.sessions.create({ agent: a.id, environment_id: e.id });
      mcp.state.gateOpen = false;
      const started = mcp.state.gateStarted;
      await c.beta.sessions.events.send(s.id, { events: [msg('call gate')] });
      await waitFor(() => mcp.state.gateStarted > started, { timeoutMs: 20_000, what: 'the gate tool started' });
      await own.kill9();
      again = await startServer({ dataDir: own.dataDir, env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script } });
      c = new Anthropic({ apiKey: own.apiKey, baseURL: again.url, maxRetries: 0 });
      await waitFor(() => mcp.state.gateStarted > started + 1, { timeoutMs: 20_000, what: 'the call made again after the restart' });
      mcp.state.gateOpen = true;
      await waitFor(async () => {
        const evs = [];
        for await (const x of c.beta.sessions.events.list(s.id, { limit: 1000 })) evs.push(x);
        return lastIdle(evs)?.stop_reason.type === 'end_turn';
      }, { timeoutMs: 20_000, what: 'end_turn after the restart' });
      const evs = [];
      for await (const x of c.beta.sessions.events.list(s.id, { limit: 1000 })) evs.push(x);
      assert.equal(evs.filter((x) => x.type === 'agent.mcp_tool_use').length, 1);
      const results = evs.filter((x) => x.type === 'agent.mcp_tool_result');
      assert.equal(results.length, 1, 'one recorded result');
      assert.equal(textOf(results[0]), 'gate passed');
      assert.equal(textOf(evs.filter((x) => x.type === 'agent.message').at(-1)), 'Tool said: gate passed');
    } finally {
      mcp.state.gateOpen = true;
      if (again) await again.kill9();
      await own.cleanup();
      await rm(own.dataDir, { recursive: true, force: true });
    }
  });

  // Issue 14's weak spot: a stop (clean or a crash) used to make every call
  // of the job in flight again. Each result is now recorded as its call
  // ends, so only the call that had not finished runs again.
  for (const signal of ['SIGTERM', 'SIGKILL']) {
    test(`${signal} while the second of two MCP calls runs: after a restart the first is not made again, the second runs once`, async () => {
      const script = path.join(dir, 'script.json');
      const serverEnv = { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: script };
      const own = await startServer({ env: serverEnv });
      const key = `${signal.toLowerCase()}${Date.now()}`;
      const first = `${key}-first`;
      const second = `${key}-second`;
      let again;
      try {
        let c = new Anthropic({ apiKey: own.apiKey, baseURL: own.url, maxRetries: 0 });
        const e = await c.beta.environments.create({ name: `tally-${signal}`, config: { type: 'self_hosted' } });
        const a = await c.beta.agents.create({
          name: `tally agent ${signal}`, model: 'claude-sonnet-4-6',
          mcp_servers: [{ type: 'url', name: 'str', url: `${mcp.base}/mcp` }],
          tools: [{ type: 'mcp_toolset', mcp_server_name: 'str' }],
        });
        const s = await c.beta.sessions.create({ agent: a.id, environment_id: e.id });
        const list = async () => {
          const out = [];
          for await (const x of c.beta.sessions.events.list(s.id, { limit: 1000 })) out.push(x);
          return out;
        };
        await c.beta.sessions.events.send(s.id, { events: [msg(`tally ${key}`)] });
        // The first call finished and its result is in the log; the second is held at the server.
        await waitFor(async () => mcp.state.tallyStarted[second] === 1 &&
          (await list()).some((x) => x.type === 'agent.mcp_tool_result'),
        { timeoutMs: 20_000, what: 'the first result recorded while the second call is held' });
        if (signal === 'SIGKILL') {
          await own.kill9();
        } else {
          await own.stop(15_000);
          assert.equal(own.exit.code, 0, `graceful stop exits 0: ${JSON.stringify(own.exit)}\n${own.tail()}`);
        }
        assert.equal(mcp.state.tally[first], 1);
        assert.equal(mcp.state.tally[second], undefined, 'the held call did not finish');
        // The held attempt's client is gone (cancelled, or killed): it ends without its side effect.
        for (const r of mcp.state.tallyHeld.splice(0)) r('abandoned');
        again = await startServer({ dataDir: own.dataDir, env: serverEnv });
        c = new Anthropic({ apiKey: own.apiKey, baseURL: again.url, maxRetries: 0 });
        await waitFor(() => mcp.state.tallyStarted[second] === 2,
          { timeoutMs: 20_000, what: 'the second call made again after the restart' });
        for (const r of mcp.state.tallyHeld.splice(0)) r('release');
        await waitFor(async () => lastIdle(await list())?.stop_reason.type === 'end_turn',
          { timeoutMs: 20_000, what: 'end_turn after the restart' });
        const evs = await list();
        assert.equal(mcp.state.tallyStarted[first], 1, 'the finished call was not made again');
        assert.equal(mcp.state.tally[first], 1);
        assert.equal(mcp.state.tally[second], 1, 'the second call ran once');
        const uses = evs.filter((x) => x.type === 'agent.mcp_tool_use');
        assert.equal(uses.length, 2);
        const results = evs.filter((x) => x.type === 'agent.mcp_tool_result');
        assert.deepEqual(results.map((r) => r.mcp_tool_use_id).sort(), uses.map((u) => u.id).sort(), 'each call answered once');
        const byUse = new Map(results.map((r) => [r.mcp_tool_use_id, textOf(r)]));
        assert.equal(byUse.get(uses[0].id), `tally ${first}=1`);
        assert.equal(byUse.get(uses[1].id), `tally ${second}=1`);
        assert.equal(textOf(evs.filter((x) => x.type === 'agent.message').at(-1)), `Tool said: tally ${first}=1\ntally ${second}=1`);
      } finally {
        for (const r of mcp.state.tallyHeld.splice(0)) r('abandoned');
        if (again) await again.kill9();
        await own.cleanup();
        await rm(own.dataDir, { recursive: true, force: true });
      }
    });
  }

  test('tools/list is cached per session: three turns with a call each list the tools once', async () => {
    mcp.state.tokens.str = null;
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const known = mcp.state.sessionOrder.length;
    for (let n = 1; n <= 3; n++) {
      await org.beta.sessions.events.send(s.id, { events: [msg('call str echo')] });
      await turnsEnded(s.id, n, `turn ${n}`);
    }
    const evs = await events(s.id);
    assert.equal(evs.filter((e) => e.type === 'agent.mcp_tool_result' && textOf(e) === 'str-echo:hi').length, 3);
    // Every model call (two per turn) was offered the tools; the server listed them once.
    const made = mcp.state.sessionOrder.slice(known);
    assert.equal(made.length, 1, 'one MCP session for the Warren session');
    assert.equal(mcp.state.toolLists.get(made[0]), 1, 'tools/list sent once');
  });

  test('notifications/tools/list_changed makes the next model call see the new tool', async () => {
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const { evs } = await runTurn(agent, 'grow tools');
    assert.equal(textOf(evs.find((e) => e.type === 'agent.mcp_tool_result')), 'grown');
    assert.equal(textOf(evs.filter((e) => e.type === 'agent.message').at(-1)), 'the late tool is offered');
  });

  // Streamable HTTP beyond one request (MCP 2025-03-26+): the standalone GET
  // stream, resuming a broken answer stream, a server that forgot the session.
  const logLines = (needle, label) =>
    (srv.stdout + '\n' + srv.stderr).split('\n').filter((l) => l.includes(needle) && l.includes(label));
  // Waits for the session's n-th end of turn (what the assertions read).
  const turnsEnded = (sid, n, what) => waitFor(async () =>
    (await events(sid)).filter((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'end_turn').length >= n,
  { timeoutMs: 30_000, what });

  test('a list_changed sent outside any request (standalone GET stream) is seen by the next turn', async () => {
    mcp.state.tokens.str = null;
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const known = mcp.state.sessionOrder.length;
    await org.beta.sessions.events.send(s.id, { events: [msg('what is offered')] });
    await turnsEnded(s.id, 1, 'turn 1');
    assert.equal(textOf((await events(s.id)).filter((e) => e.type === 'agent.message').at(-1)), 'late2 is not offered');
    // The MCP session this Warren session opened (the only one made since).
    await waitFor(() => mcp.state.sessionOrder.length > known, { timeoutMs: 20_000, what: 'the MCP session' });
    const mcpSid = mcp.state.sessionOrder[known];
    await waitFor(() => mcp.state.standalone.has(mcpSid), { timeoutMs: 20_000, what: 'the standalone GET stream to open' });
    // The server adds a tool outside any request: the SDK sends
    // notifications/tools/list_changed on the standalone stream only.
    mcp.addTool(mcpSid, 'late2');
    await waitFor(() => logLines('mcp.tools_list_changed', `${s.id}/str`).some((l) => l.includes('standalone')),
      { timeoutMs: 20_000, what: 'Warren to receive the notification' });
    await org.beta.sessions.events.send(s.id, { events: [msg('what is offered')] });
    await turnsEnded(s.id, 2, 'turn 2');
    assert.equal(textOf((await events(s.id)).filter((e) => e.type === 'agent.message').at(-1)), 'late2 is offered');
  });

  test('an answer stream cut before the response is resumed with Last-Event-ID', async () => {
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const cutsBefore = mcp.state.cuts;
    const { id: sid } = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await org.beta.sessions.events.send(sid, { events: [msg('call cutoff')] });
    await turnsEnded(sid, 1, 'the turn');
    const evs = await events(sid);
    assert.equal(mcp.state.cuts, cutsBefore + 1, 'the stream was cut');
    const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
    assert.ok(res, evs.map((e) => e.type).join(' '));
    assert.equal(res.is_error, false);
    assert.equal(textOf(res), 'after the cut');
    assert.ok(!evs.some((e) => e.type === 'session.error'), 'no error');
    assert.equal(lastIdle(evs).stop_reason.type, 'end_turn');
    assert.equal(logLines('mcp.stream_resumed', `${sid}/str`).length, 1, 'resumed once');
  });

  test('a server restart that forgets the session: re-initialised transparently, the call made once', async () => {
    const agent = await agentWith([{ name: 'str', url: `${mcp.base}/mcp` }]);
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    const counted = mcp.state.counted;
    await org.beta.sessions.events.send(s.id, { events: [msg('call count')] });
    await turnsEnded(s.id, 1, 'turn 1');
    assert.equal(mcp.state.counted, counted + 1);
    await mcp.forgetSessions();
    await org.beta.sessions.events.send(s.id, { events: [msg('call count')] });
    await turnsEnded(s.id, 2, 'turn 2');
    const evs = await events(s.id);
    assert.equal(mcp.state.counted, counted + 2, 'the side effect happened exactly once more');
    const results = evs.filter((e) => e.type === 'agent.mcp_tool_result');
    assert.equal(results[1].is_error, false);
    assert.equal(textOf(results[1]), `counted ${counted + 2}`);
    assert.ok(!evs.some((e) => e.type === 'session.error'), 'no error');
    assert.equal(lastIdle(evs).stop_reason.type, 'end_turn');
    assert.equal(logLines('mcp.reinitialized', `${s.id}/str`).length, 1, 're-initialised once');
  });

  // Requests that carry a secret and are refused: the error never echoes it
  // (the log and the data dir are checked by the last test of the suite).
  test('refused credential requests never echo the secret they carry', async () => {
    const v = keep(await org.beta.vaults.create({ display_name: 'refusals vault' }));
    const base = `/v1/vaults/${v.id}/credentials`;
    const send = async (method, p, raw) => {
      const res = await rawRequest(srv.url, {
        method, path: p, body: Buffer.from(raw, 'utf8'),
        headers: { 'x-api-key': srv.apiKey, 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
      });
      return res;
    };
    const refusals = [];
    const expectRefused = async (what, method, p, raw, sec, status = 400) => {
      const res = await send(method, p, raw);
      assert.equal(res.status, status, `${what}: ${res.text}`);
      assert.deepEqual(envelopeProblems(res), [], `${what}: envelope`);
      for (const s of sec) assert.ok(!res.text.includes(s), `${what}: the error echoes a secret: ${res.text}`);
      refusals.push(what);
    };
    const bearer = (token, extra = {}) => JSON.stringify({ auth: { type: 'static_bearer', token, mcp_server_url: 'https://r.invalid/mcp', ...extra } });
    let t = secret(`refused-url-${Date.now()}-TOKEN`);
    await expectRefused('ftp url', 'POST', base, bearer(t, { mcp_server_url: 'ftp://r.invalid/' }), [t]);
    t = secret(`refused-field-${Date.now()}-TOKEN`);
    await expectRefused('unknown auth field', 'POST', base, bearer(t, { scope: 'x' }), [t]);
    t = secret(`refused-json-${Date.now()}-TOKEN`);
    await expectRefused('truncated JSON', 'POST', base, bearer(t).slice(0, -3), [t]);
    t = secret(`refused-ctl-${Date.now()}-TOKEN`);
    await expectRefused('a control byte inside the body', 'POST', base, bearer(t).replace('TOKEN', 'TOK\u0001EN'), [t, t.replace('TOKEN', 'TOK')]);
    t = secret(`refused-type-${Date.now()}-TOKEN`);
    await expectRefused('auth type unknown', 'POST', base, JSON.stringify({ auth: { type: 'password', token: t } }), [t]);
    const at = secret(`refused-at-${Date.now()}-OAUTH`);
    const rt = secret(`refused-rt-${Date.now()}-OAUTH`);
    const cs = secret(`refused-cs-${Date.now()}-OAUTH`);
    await expectRefused('oauth bad expires_at', 'POST', base, JSON.stringify({ auth: {
      type: 'mcp_oauth', access_token: at, mcp_server_url: 'https://r.invalid/o', expires_at: 'soon',
      refresh: { client_id: 'c', refresh_token: rt, token_endpoint: 'https://r.invalid/t',
        token_endpoint_auth: { type: 'client_secret_post', client_secret: cs } } } }), [at, rt, cs]);
    await expectRefused('oauth none with a client secret', 'POST', base, JSON.stringify({ auth: {
      type: 'mcp_oauth', access_token: at, mcp_server_url: 'https://r.invalid/o',
      refresh: { client_id: 'c', refresh_token: rt, token_endpoint: 'https://r.invalid/t',
        token_endpoint_auth: { type: 'none', client_secret: cs } } } }), [at, rt, cs]);
    // Updates: a type change and an archived credential, both carrying a new token.
    const c = keep(await org.beta.vaults.credentials.create(v.id, {
      auth: { type: 'static_bearer', token: secret(`refusals-live-${Date.now()}`), mcp_server_url: 'https://r.invalid/mcp' } }));
    t = secret(`refused-change-${Date.now()}-TOKEN`);
    await expectRefused('type change', 'POST', `${base}/${c.id}`, JSON.stringify({ auth: { type: 'mcp_oauth', access_token: t } }), [t]);
    keep(await org.beta.vaults.credentials.archive(c.id, { vault_id: v.id }));
    t = secret(`refused-archived-${Date.now()}-TOKEN`);
    await expectRefused('update of an archived credential', 'POST', `${base}/${c.id}`, JSON.stringify({ auth: { type: 'static_bearer', token: t } }), [t]);
    // The 21st live credential of a vault.
    const full = keep(await org.beta.vaults.create({ display_name: 'full vault' }));
    for (let i = 0; i < 20; i++) {
      keep(await org.beta.vaults.credentials.create(full.id, {
        auth: { type: 'static_bearer', token: secret(`full-${i}-${Date.now()}`), mcp_server_url: `https://f${i}.invalid/` } }));
    }
    t = secret(`refused-21st-${Date.now()}-TOKEN`);
    await expectRefused('the 21st credential', 'POST', `/v1/vaults/${full.id}/credentials`, bearer(t), [t], 409);
    assert.equal(refusals.length, 10);
  });

  // A token endpoint that echoes what it got in its error answer (raw, JSON
  // and form-encoded): neither mcp_oauth_validate's report nor the session's
  // events carry the secrets.
  test('a refusing token endpoint that echoes the refresh request: no secret in the report or the events', async () => {
    const echoed = [];
    const echo = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        echoed.push(body);
        const form = Object.fromEntries(new URLSearchParams(body));
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: `refused ${form.refresh_token} for ${form.client_id}`,
          got: body, client_secret: form.client_secret, authorization: req.headers.authorization ?? null }));
      });
    });
    await new Promise((r) => echo.listen(0, '127.0.0.1', r));
    try {
      // Characters that form encoding changes ('/', '+', '='), so the
      // encoded form differs from the raw secret.
      const rt = secret(`rt/echo+${Date.now()}=`);
      const cs = secret(`cs/echo+${Date.now()}=`);
      const at = secret(`at-echo-${Date.now()}`);
      const encoded = [rt, cs].map((s) => new URLSearchParams({ s }).toString().slice(2));
      for (const e of encoded) secret(e);
      const v = keep(await org.beta.vaults.create({ display_name: 'echo vault' }));
      const cred = keep(await org.beta.vaults.credentials.create(v.id, {
        auth: {
          type: 'mcp_oauth', access_token: at, mcp_server_url: `${mcp.base}/oauth-mcp`, expires_at: '2099-01-01T00:00:00Z',
          refresh: { client_id: 'echo-client', refresh_token: rt, token_endpoint: `http://127.0.0.1:${echo.address().port}/token`,
            token_endpoint_auth: { type: 'client_secret_post', client_secret: cs } },
        },
      }));
      const val = keep(await org.beta.vaults.credentials.mcpOAuthValidate(cred.id, { vault_id: v.id }));
      assert.ok(echoed.length >= 1, 'the token endpoint was asked');
      assert.ok(echoed[0].includes(encoded[0]), 'the request carried the refresh token, form-encoded');
      assert.equal(val.refresh.status, 'failed', JSON.stringify(val));
      assert.equal(val.refresh.http_response.status_code, 400);
      assert.match(val.refresh.http_response.body, /invalid_grant/);
      // client_secret_basic: the echoed Authorization header is the secret too.
      const cs2 = secret(`cs-basic/${Date.now()}`);
      secret(new URLSearchParams({ s: cs2 }).toString().slice(2));
      const blob = secret(Buffer.from(`echo-client:${encodeURIComponent(cs2)}`).toString('base64'));
      const basicCred = keep(await org.beta.vaults.credentials.create(v.id, {
        auth: {
          type: 'mcp_oauth', access_token: secret(`at-basic-${Date.now()}`), mcp_server_url: `${mcp.base}/oauth-mcp-basic`,
          refresh: { client_id: 'echo-client', refresh_token: secret(`rt-basic-${Date.now()}`),
            token_endpoint: `http://127.0.0.1:${echo.address().port}/token`,
            token_endpoint_auth: { type: 'client_secret_basic', client_secret: cs2 } },
        },
      }));
      const before = echoed.length;
      const val2 = keep(await org.beta.vaults.credentials.mcpOAuthValidate(basicCred.id, { vault_id: v.id }));
      assert.equal(echoed.length, before + 1);
      assert.equal(val2.refresh.status, 'failed', JSON.stringify(val2));
      assert.match(val2.refresh.http_response.body, /"authorization":"\[redacted\]"|"authorization":"Basic \[redacted\]"/, val2.refresh.http_response.body);
      assert.ok(!JSON.stringify(val2).includes(blob));
      // A session whose server refuses the stale access token: the refresh fails,
      // the error names the server, and nothing echoed reaches the events.
      const agent = await agentWith([{ name: 'oauth', url: `${mcp.base}/oauth-mcp` }]);
      const { evs } = await runTurn(agent, 'call oauth echo', [v.id]);
      const err = evs.find((e) => e.type === 'session.error');
      assert.ok(err, evs.map((e) => e.type).join(' '));
      assert.equal(err.error.type, 'mcp_authentication_failed_error');
      assert.equal(err.error.mcp_server_name, 'oauth');
      assert.ok(echoed.length >= 2, 'the 401 made the engine try a refresh');
    } finally {
      await new Promise((r) => echo.close(r));
    }
  });

  test('no secret is in any vault response, session event or server log line', async () => {
    assert.ok(secrets.length >= 10, `${secrets.length} secrets tracked`);
    const sessions = [];
    for await (const s of org.beta.sessions.list({ limit: 100 })) sessions.push(s.id);
    const eventText = [];
    for (const sid of sessions) eventText.push(JSON.stringify(await events(sid)));
    const logs = srv.stdout + srv.stderr;
    for (const s of secrets) {
      for (const r of responses) assert.ok(!r.includes(s), `a response carries the secret ${s}: ${r}`);
      for (const t of eventText) assert.ok(!t.includes(s), 'an event carries a secret');
      assert.ok(!logs.includes(s), 'the server log carries a secret');
    }
    assert.ok(logs.length > 0, 'the server logged something');
    assert.ok(/"level":"debug"|\bdebug\b|DEBUG/.test(logs), 'debug lines were written (and checked)');
    // Encrypted at rest: no file of the data dir (the SQLite database, its
    // WAL, the key file...) holds a secret's bytes.
    const files = [];
    const walk = async (d) => {
      for (const e of await readdir(d, { withFileTypes: true })) {
        const p = path.join(d, e.name);
        if (e.isDirectory()) await walk(p);
        else if (e.isFile()) files.push(p);
      }
    };
    await walk(srv.dataDir);
    assert.ok(files.some((f) => /\.(db|sqlite3?)(-wal)?$|store/.test(path.basename(f))), `the store is in the data dir: ${files}`);
    for (const f of files) {
      const bytes = await readFile(f);
      for (const s of secrets) assert.ok(!bytes.includes(Buffer.from(s)), `${f} holds a secret in clear`);
    }
  });
});

// Large outputs in a cloud session (spec 6 "Large MCP outputs"): the
// built-in orchestrator's sandbox holds the whole output, the model gets a
// preview naming the file, and the agent reads the file with its own tools.
// Needs root (real sandboxes); skips with the reason otherwise.
describe('MCP large outputs go to a file in the session sandbox (cloud, built-in orchestrator)',
  { skip: skip || orchestratorSkipReason(), timeout: 240_000 }, () => {
    let fx, mcpSrv, dir2;
    before(async () => {
      mcpSrv = await startMcpServer();
      dir2 = await mkdtemp(path.join(tmpdir(), 'warren-mcp-cloud-'));
      const script = path.join(dir2, 'script.json');
      await writeFile(script, JSON.stringify({
        rules: [
          { when: { user: { regex: '^run: (.+)$' } }, reply: { tool_calls: [{ name: 'bash', input: { command: '{{1}}' } }] } },
          { when: { tool_name: 'bash' }, reply: 'The command printed: {{tool_result}}' },
          call('call big', 'mcp__str__big', { bytes: 600000 }),
          { when: { tool_name: 'mcp__str__big' }, reply: 'big done' },
        ],
        default: { text: 'No script for: {{user}}' },
      }));
      fx = new Fixture('mcpbig', { script, config: { runner_idle_ms: 8000 } });
      await fx.start();
    });
    after(async () => {
      if (fx) await fx.stopAndCheckLeaks();
      if (mcpSrv) await mcpSrv.close();
      if (dir2) await rm(dir2, { recursive: true, force: true });
    });

    test('the whole output is in /tmp/warren/mcp/<event id>.txt; the model gets a preview and the path', async () => {
      const c = fx.client;
      const env = await c.beta.environments.create({ name: 'cloud-mcp', config: { type: 'cloud' } });
      const agent = await c.beta.agents.create({
        name: 'cloud mcp', model: 'claude-sonnet-4-6',
        mcp_servers: [{ type: 'url', name: 'str', url: `${mcpSrv.base}/mcp` }],
        tools: [{ type: 'agent_toolset_20260401' }, { type: 'mcp_toolset', mcp_server_name: 'str' }],
      });
      const s = await c.beta.sessions.create({ agent: agent.id, environment_id: env.id });
      // A built-in call first: the orchestrator makes the session's sandbox.
      await say(c, s.id, 'run: echo ready');
      await waitIdle(c, s.id, 1);
      await say(c, s.id, 'call big');
      const { evs } = await waitIdle(c, s.id, 2);
      const use = evs.find((e) => e.type === 'agent.mcp_tool_use');
      const res = evs.find((e) => e.type === 'agent.mcp_tool_result');
      const file = `/tmp/warren/mcp/${use.id}.txt`;
      const text = res.content.filter((b) => b.type === 'text').map((b) => b.text).join('\n');
      assert.ok(text.length < 30_000, `a preview, not the output: ${text.length} chars`);
      assert.ok(text.startsWith('B'.repeat(20_000)), 'the preview is the head of the output');
      assert.match(text, /the tool returned 600000 bytes of text; above are the first 20000 bytes/);
      assert.ok(text.includes(`The full output is in the file ${file} in this session's sandbox`), text.slice(-400));
      assert.equal(res.is_error, false);
      // The file is in the session's sandbox, whole, owned by its root.
      const [sb] = await fx.sandboxes(s.id);
      const st = await fx.exec(sb.id, `wc -c < ${file}; stat -c '%u %a' ${file}; tr -d B < ${file} | wc -c`);
      assert.deepEqual(st.stdout.trim().split('\n').map((l) => l.trim()), ['600000', '0 644', '0'], st.stderr);
      // The agent reads it with its own tools (bash in the sandbox, through the runner).
      await say(c, s.id, `run: wc -c < ${file}`);
      const after = await waitIdle(c, s.id, 3);
      assert.match(lastText(after.msgs), /The command printed: 600000/);
    });
  });
