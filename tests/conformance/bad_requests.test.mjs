// Table-driven bad input: every row of tests/golden/api/bad_requests.jsonl is sent
// raw (node:http) to a live `warren serve`. Each answer must be the spec's error
// envelope (section 0) with the row's status and error.type; the server must keep
// running, and a rejected write must leave no trace (list snapshots unchanged).
//
// Row fields: name, method, path, [auth: api|none|bad_api|bad_bearer|env],
// [headers], [body (raw string) | body_b64 | body_gen: "oversize"], status,
// error_type, [message_contains], [why], [todo: "server: <known bug>" marks a row
// the server fails today; it still runs and reports]. In path and body, {agent_id}, {env_id},
// {env_name}, {env_b_id}, {cloud_env_id}, {session_id}, {session_b_id},
// {cloud_session_id}, {opus_session_id}, {archived_session_id},
// {sessions_asc_cursor}, {events_asc_cursor}, {vault_id}, {credential_id},
// {archived_credential_id}, {archived_oauth_credential_id}, {archived_vault_id} name fixtures made below;
// {{repeat:C:N}} expands to N copies of C and {{pairs:N}} to N "kI":"v" pairs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { serverFixture, settle } from './lib/util.mjs';
import { REPO_ROOT } from './lib/server.mjs';
import { rawRequest, api, envelopeProblems } from './lib/http.mjs';

const TABLE = path.join(REPO_ROOT, 'tests/golden/api/bad_requests.jsonl');
const rows = readFileSync(TABLE, 'utf8').split('\n').filter((l) => l.trim()).map((l, i) => {
  try {
    return JSON.parse(l);
  } catch (e) {
    throw new Error(`${TABLE}:${i + 1}: ${e.message}`);
  }
});
// Bigger than any sane body limit of the server; override with WARREN_TEST_OVERSIZE_BYTES.
const OVERSIZE = Number(process.env.WARREN_TEST_OVERSIZE_BYTES || 48 * 1024 * 1024);

const fx = serverFixture();
const F = {}; // fixtures by placeholder name

function expand(s) {
  if (typeof s !== 'string') return s;
  s = s.replace(/\{\{repeat:(.):(\d+)\}\}/g, (_, c, n) => c.repeat(Number(n)));
  s = s.replace(/\{\{pairs:(\d+)\}\}/g, (_, n) => Array.from({ length: Number(n) }, (_, i) => `"k${i}":"v"`).join(','));
  return s.replace(/\{([a-z_]+)\}/g, (m, k) => (k in F ? F[k] : m));
}

async function ok(res, what) {
  assert.ok(res.status >= 200 && res.status < 300, `${what}: ${res.status} ${res.text}`);
  return res.json;
}

async function listAll(p) {
  const out = [];
  let page = null;
  for (let n = 0; n < 1000; n++) {
    const sep = p.includes('?') ? '&' : '?';
    const r = await api(fx.srv.url, fx.srv.apiKey, 'GET', page ? `${p}${sep}page=${encodeURIComponent(page)}` : p);
    const j = await ok(r, `GET ${p}`);
    out.push(...j.data);
    if (!j.next_page) return out;
    page = j.next_page;
  }
  throw new Error(`pagination of ${p} did not terminate`);
}

/** Everything a rejected write could have touched. */
async function snapshot() {
  const pick = (o, keys) => Object.fromEntries(keys.map((k) => [k, o[k]]));
  const agents = (await listAll('/v1/agents?include_archived=true&limit=100'))
    .map((a) => pick(a, ['id', 'version', 'name', 'updated_at', 'archived_at', 'metadata', 'system', 'tools']));
  const versions = (await listAll(`/v1/agents/${F.agent_id}/versions?limit=100`)).map((a) => a.version);
  const envs = (await listAll('/v1/environments?include_archived=true&limit=100'))
    .map((e) => pick(e, ['id', 'name', 'updated_at', 'archived_at', 'metadata', 'config', 'description']));
  const sessions = (await listAll('/v1/sessions?include_archived=true&limit=100'))
    .map((s) => pick(s, ['id', 'title', 'status', 'updated_at', 'archived_at', 'metadata', 'agent']));
  const events = {};
  for (const k of ['session_id', 'session_b_id', 'cloud_session_id', 'opus_session_id', 'archived_session_id']) {
    events[k] = (await listAll(`/v1/sessions/${F[k]}/events?limit=1000`)).map((e) => e.id);
  }
  const vaults = (await listAll('/v1/vaults?include_archived=true&limit=100'))
    .map((v) => pick(v, ['id', 'display_name', 'updated_at', 'archived_at', 'metadata']));
  const credentials = (await listAll(`/v1/vaults/${F.vault_id}/credentials?include_archived=true&limit=100`))
    .map((c) => pick(c, ['id', 'display_name', 'updated_at', 'archived_at', 'metadata', 'auth']));
  return { agents, versions, envs, sessions, events, vaults, credentials };
}

function authHeaders(kind) {
  switch (kind ?? 'api') {
    case 'api': return { 'x-api-key': fx.srv.apiKey };
    case 'none': return {};
    case 'bad_api': return { 'x-api-key': 'sk-ant-api03-definitely-not-a-key' };
    case 'bad_bearer': return { authorization: 'Bearer sk-ant-oat01-definitely-not-a-key' };
    case 'env': return { authorization: `Bearer ${F.env_key}` };
    default: throw new Error(`unknown auth kind ${kind}`);
  }
}

function bodyOf(row) {
  if (row.body_gen === 'oversize') {
    const head = '{"name":"big","model":"m","events":[],"description":"';
    const tail = '"}';
    const buf = Buffer.alloc(OVERSIZE + head.length + tail.length, 'a');
    buf.write(head, 0);
    buf.write(tail, buf.length - tail.length);
    return buf;
  }
  if (row.body_b64 !== undefined) return Buffer.from(row.body_b64, 'base64');
  if (row.body !== undefined) return Buffer.from(expand(row.body), 'utf8');
  return undefined;
}

describe('bad requests (tests/golden/api/bad_requests.jsonl)', { skip: fx.skip }, () => {
  before(fx.start);
  after(fx.stop);

  before(async () => {
    const u = fx.srv.url;
    const k = fx.srv.apiKey;
    const post = async (p, b) => ok(await api(u, k, 'POST', p, b), `POST ${p}`);
    F.agent_id = (await post('/v1/agents', { name: 'table agent', model: 'claude-sonnet-4-6', metadata: { a: '1' } })).id;
    F.opus_agent_id = (await post('/v1/agents', { name: 'table opus', model: 'claude-opus-4-8' })).id;
    const envA = await post('/v1/environments', { name: 'table-env-a', config: { type: 'self_hosted' } });
    F.env_id = envA.id;
    F.env_name = envA.name;
    F.env_b_id = (await post('/v1/environments', { name: 'table-env-b', config: { type: 'self_hosted' } })).id;
    F.cloud_env_id = (await post('/v1/environments', { name: 'table-env-cloud', config: { type: 'cloud' } })).id;
    const sess = async (agent, env, extra = {}) => (await post('/v1/sessions', { agent, environment_id: env, ...extra })).id;
    F.session_id = await sess(F.agent_id, F.env_id, { metadata: { a: '1' } });
    F.session_b_id = await sess(F.agent_id, F.env_b_id);
    F.cloud_session_id = await sess(F.agent_id, F.cloud_env_id);
    F.opus_session_id = await sess(F.opus_agent_id, F.env_id);
    F.archived_session_id = await sess(F.agent_id, F.env_id);
    F.archived_agent_id = (await post('/v1/agents', { name: 'table archived agent', model: 'claude-sonnet-4-6' })).id;
    await post(`/v1/agents/${F.archived_agent_id}/archive`, {});
    const msg = (t) => ({ type: 'user.message', content: [{ type: 'text', text: t }] });
    await post(`/v1/sessions/${F.session_id}/events`, { events: [msg('one'), msg('two')] });
    await post(`/v1/sessions/${F.archived_session_id}/events`, { events: [msg('before archive')] });
    // The engine answers those messages; wait until it is done so snapshots are stable
    // (and archive is allowed: not while running).
    for (const k of ['session_id', 'archived_session_id']) await settle(fx.client, F[k]);
    await post(`/v1/sessions/${F.archived_session_id}/archive`, {});
    const sl = await ok(await api(u, k, 'GET', '/v1/sessions?limit=1&order=asc'), 'sessions cursor');
    assert.ok(sl.next_page, 'sessions list gives a cursor');
    F.sessions_asc_cursor = encodeURIComponent(sl.next_page);
    const el = await ok(await api(u, k, 'GET', `/v1/sessions/${F.session_id}/events?limit=1&order=asc`), 'events cursor');
    assert.ok(el.next_page, 'events list gives a cursor');
    F.events_asc_cursor = encodeURIComponent(el.next_page);
    F.env_key = await fx.srv.createEnvKey(F.env_id);
    F.vault_id = (await post('/v1/vaults', { display_name: 'table vault' })).id;
    F.credential_id = (await post(`/v1/vaults/${F.vault_id}/credentials`, {
      auth: { type: 'static_bearer', token: 'table-token', mcp_server_url: 'https://mcp.example.invalid/' },
    })).id;
    F.archived_credential_id = (await post(`/v1/vaults/${F.vault_id}/credentials`, {
      auth: { type: 'static_bearer', token: 'table-archived-token', mcp_server_url: 'https://mcp2.example.invalid/' },
    })).id;
    await post(`/v1/vaults/${F.vault_id}/credentials/${F.archived_credential_id}/archive`, {});
    F.archived_oauth_credential_id = (await post(`/v1/vaults/${F.vault_id}/credentials`, {
      auth: { type: 'mcp_oauth', access_token: 'table-at', mcp_server_url: 'https://mcp3.example.invalid/' },
    })).id;
    await post(`/v1/vaults/${F.vault_id}/credentials/${F.archived_oauth_credential_id}/archive`, {});
    F.archived_vault_id = (await post('/v1/vaults', { display_name: 'table archived vault' })).id;
    await post(`/v1/vaults/${F.archived_vault_id}/archive`, {});
  });

  test('the table has at least 50 rows, each well-formed', () => {
    assert.ok(rows.length >= 50, `${rows.length} rows`);
    const names = new Set();
    for (const r of rows) {
      assert.ok(r.name && r.method && r.path && r.status && r.error_type, `row ${JSON.stringify(r)}`);
      assert.ok(!names.has(r.name), `duplicate row name ${r.name}`);
      names.add(r.name);
    }
  });

  for (const row of rows) {
    test(`${row.method} ${row.path}: ${row.name} -> ${row.status} ${row.error_type}`, { todo: row.todo }, async () => {
      const isWrite = row.method !== 'GET';
      const before = isWrite ? await snapshot() : null;
      const headers = { 'anthropic-version': '2023-06-01', ...authHeaders(row.auth) };
      const body = bodyOf(row);
      if (body !== undefined) headers['content-type'] = 'application/json';
      for (const [h, v] of Object.entries(row.headers ?? {})) headers[h.toLowerCase()] = expand(v);
      const p = expand(row.path);
      const res = await rawRequest(fx.srv.url, { method: row.method, path: p, headers, body, timeoutMs: 60_000 });
      const detail = `${row.method} ${p} -> ${res.status} ${res.text.slice(0, 300)}`;
      assert.equal(res.status, row.status, `status: ${detail}`);
      assert.deepEqual(envelopeProblems(res), [], `envelope: ${detail}`);
      assert.equal(res.json.error.type, row.error_type, `error.type: ${detail}`);
      assert.match(res.json.request_id, /^req_/, 'request_id has the req_ prefix');
      if (row.message_contains) {
        assert.ok(res.json.error.message.includes(expand(row.message_contains)),
          `message should contain ${JSON.stringify(row.message_contains)}: ${res.json.error.message}`);
      }
      assert.ok(fx.srv.alive, `server died on this request:\n${fx.srv.tail()}`);
      if (isWrite) {
        const afterSnap = await snapshot();
        assert.deepEqual(afterSnap, before, 'a rejected request changed stored state');
      }
    });
  }

  test('the server still answers normally after the whole table', async () => {
    const r = await api(fx.srv.url, fx.srv.apiKey, 'POST', '/v1/agents', { name: 'after table', model: 'm' });
    assert.equal(r.status, 200, r.text);
    const g = await api(fx.srv.url, fx.srv.apiKey, 'GET', `/v1/agents/${r.json.id}`);
    assert.equal(g.status, 200);
    assert.ok(fx.srv.alive);
  });
});
