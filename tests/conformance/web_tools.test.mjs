// web_fetch and web_search run by the service (issue 12 part 3), driven with
// the official SDK against a real `warren serve` and local test servers.
//
// The servers:
//   site      127.0.0.1:P1  HTML/text/PDF pages, redirects, a big body, and
//                           redirects into private ranges. The serve config
//                           allows exactly this address:port
//                           (web_tools.fetch.allow: ["127.0.0.1:P1"]); every
//                           other loopback/private address stays refused.
//   internal  127.0.0.1:P2  a live "internal" service that WOULD answer (it
//                           counts hits); web_fetch must never reach it.
//   searxng   127.0.0.1:P3  a fake SearxNG JSON API.
// The scripted model (tests/golden/webtools/script.json) calls web_fetch /
// web_search; the test reads the agent.tool_result events.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import path from 'node:path';
import { writeFile, rm } from 'node:fs/promises';
import { missingBinaryReason, startServer, makeDataDir, REPO_ROOT } from './lib/server.mjs';
import { settle } from './lib/util.mjs';

const SCRIPT = path.join(REPO_ROOT, 'tests/golden/webtools/script.json');
const skip = missingBinaryReason();

function listen(handler) {
  return new Promise((resolve) => {
    const s = http.createServer(handler);
    s.listen(0, '127.0.0.1', () => resolve(s));
  });
}

// A minimal one-page PDF (xref offsets computed).
function makePdf(text) {
  const stream = `BT /F1 18 Tf 20 100 Td (${text}) Tj ET`;
  const objs = [
    '<< /Type /Catalog /Pages 2 0 R >>',
    '<< /Type /Pages /Kids [3 0 R] /Count 1 >>',
    '<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 144] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>',
    `<< /Length ${stream.length} >>\nstream\n${stream}\nendstream`,
    '<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>',
  ];
  let pdf = '%PDF-1.4\n';
  const offsets = [];
  objs.forEach((o, i) => {
    offsets.push(pdf.length);
    pdf += `${i + 1} 0 obj\n${o}\nendobj\n`;
  });
  const xref = pdf.length;
  pdf += `xref\n0 ${objs.length + 1}\n0000000000 65535 f \n`;
  for (const o of offsets) pdf += `${String(o).padStart(10, '0')} 00000 n \n`;
  pdf += `trailer\n<< /Size ${objs.length + 1} /Root 1 0 R >>\nstartxref\n${xref}\n%%EOF\n`;
  return Buffer.from(pdf, 'latin1');
}

const ARTICLE = `<!doctype html><html><head><title>Warren &amp; the web</title>
<script>var tracking = "should never show";</script><style>p{color:red}</style></head>
<body><nav><a href="/">Home</a></nav><main><h1>Server-side tools</h1>
<p>Warren fetches pages <b>itself</b>, with a <a href="/docs/ssrf">guard</a>.</p>
<ul><li>first</li><li>second</li></ul></main></body></html>`;

describe('web_fetch and web_search run by the service', { skip }, () => {
  let site, internal, searx, srv, org, agent, cloudEnv, hostedEnv, cfgPath;
  let internalHits = 0;
  const searxQueries = [];

  before(async () => {
    internal = await listen((req, res) => {
      internalHits++;
      res.end('internal secret');
    });
    const internalUrl = `http://127.0.0.1:${internal.address().port}`;
    site = await listen((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (u.pathname === '/article') {
        res.setHeader('Content-Type', 'text/html; charset=utf-8');
        res.end(ARTICLE);
      } else if (u.pathname === '/moved') {
        res.writeHead(301, { Location: '/article' }).end();
      } else if (u.pathname.startsWith('/chain/')) {
        const n = Number(u.pathname.slice(7));
        res.writeHead(302, { Location: n > 0 ? `/chain/${n - 1}` : '/article' }).end();
      } else if (u.pathname === '/big') {
        res.setHeader('Content-Type', 'text/plain');
        res.end('x'.repeat(2 * 1024 * 1024));
      } else if (u.pathname === '/doc.pdf') {
        res.setHeader('Content-Type', 'application/pdf');
        res.end(makePdf('Quarterly report text'));
      } else if (u.pathname === '/latin1') {
        // ISO-8859-1 bytes, said by the header only.
        res.setHeader('Content-Type', 'text/html; charset=ISO-8859-1');
        res.end(Buffer.from('<html><head><title>Caf\u00e9</title></head><body><p>cr\u00e8me br\u00fbl\u00e9e</p></body></html>', 'latin1'));
      } else if (u.pathname === '/sjis') {
        // Shift_JIS bytes of "日本語のページ", said only by the page's <meta>.
        res.setHeader('Content-Type', 'text/html');
        res.end(Buffer.concat([Buffer.from('<html><head><meta charset="Shift_JIS"><title>'),
          Buffer.from([0x93, 0xfa, 0x96, 0x7b]), Buffer.from('</title></head><body><p>'),
          Buffer.from([0x93, 0xfa, 0x96, 0x7b, 0x8c, 0xea, 0x82, 0xcc, 0x83, 0x79, 0x81, 0x5b, 0x83, 0x57]),
          Buffer.from('</p></body></html>')]));
      } else if (u.pathname === '/martian') {
        res.setHeader('Content-Type', 'text/html; charset=x-martian');
        res.end(Buffer.from('<p>caf\u00e9</p>', 'latin1'));
      } else if (u.pathname === '/to-internal') {
        res.writeHead(302, { Location: `${internalUrl}/admin` }).end();
      } else if (u.pathname === '/to-metadata') {
        res.writeHead(302, { Location: 'http://169.254.169.254/latest/meta-data/' }).end();
      } else if (u.pathname === '/to-private') {
        res.writeHead(302, { Location: 'http://10.0.0.1/' }).end();
      } else {
        res.writeHead(404).end('not here');
      }
    });
    searx = await listen((req, res) => {
      const u = new URL(req.url, 'http://x');
      searxQueries.push({ path: u.pathname, q: u.searchParams.get('q'), format: u.searchParams.get('format') });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ query: u.searchParams.get('q'), results: [
        { url: 'https://warren.example/docs', title: 'Warren docs', content: 'Self-hosted agents.' },
        { url: 'https://other.example/post', title: 'A post', content: 'About agents.' },
      ] }));
    });
    const dataDir = await makeDataDir('webtools');
    cfgPath = path.join(dataDir, '..', `${path.basename(dataDir)}.json`);
    await writeFile(cfgPath, JSON.stringify({
      model: { provider: 'scripted', script: SCRIPT },
      web_tools: {
        // The test server itself is allowed explicitly, by address AND port;
        // nothing else on loopback is.
        fetch: { allow: [`127.0.0.1:${site.address().port}`], max_bytes: 1024 * 1024, max_redirects: 3, timeout_ms: 10000 },
        search: { provider: 'searxng', base_url: `http://127.0.0.1:${searx.address().port}` },
      },
    }));
    srv = await startServer({ dataDir, extraArgs: ['--config', cfgPath] });
    srv.ownsDir = true;
    org = srv.client();
    agent = await org.beta.agents.create({
      name: 'web agent', model: 'claude-sonnet-4-6',
      tools: [{ type: 'agent_toolset_20260401', default_config: { enabled: false },
        configs: [{ name: 'web_fetch', enabled: true }, { name: 'web_search', enabled: true }] }],
    });
    cloudEnv = await org.beta.environments.create({ name: 'web-cloud', config: { type: 'cloud' } });
    hostedEnv = await org.beta.environments.create({ name: 'web-self-hosted', config: { type: 'self_hosted' } });
  });

  after(async () => {
    for (const s of [site, internal, searx]) s?.close();
    if (cfgPath) await rm(cfgPath, { force: true });
    if (!srv) return;
    const alive = srv.alive;
    const tail = srv.tail();
    await srv.cleanup();
    assert.ok(alive, `warren serve died during the suite:\n${tail}`);
  });

  /** Sends one message and returns the session's events after it settled. */
  async function turn(text, env = cloudEnv) {
    const s = await org.beta.sessions.create({ agent: agent.id, environment_id: env.id });
    await org.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text }] }] });
    const settled = await settle(org, s.id);
    const events = [];
    for await (const e of org.beta.sessions.events.list(s.id, { limit: 1000 })) events.push(e);
    return { sid: s.id, session: settled, events };
  }
  const resultOf = (events) => {
    const use = events.find((e) => e.type === 'agent.tool_use');
    assert.ok(use, `an agent.tool_use: ${events.map((e) => e.type).join(' ')}`);
    const res = events.find((e) => e.type === 'agent.tool_result' && e.tool_use_id === use.id);
    assert.ok(res, `an agent.tool_result for ${use.id}: ${events.map((e) => e.type).join(' ')}`);
    return { use, res };
  };
  const errorText = (res) => (res.content || []).map((b) => b.text || '').join('');

  test('HTML becomes readable Markdown text, on cloud and self_hosted environments alike', async () => {
    for (const env of [cloudEnv, hostedEnv]) {
      const url = `http://127.0.0.1:${site.address().port}/article`;
      const { events, session } = await turn(`fetch: ${url}`, env);
      const { use, res } = resultOf(events);
      assert.equal(use.name, 'web_fetch');
      assert.equal(use.evaluated_permission, 'allow');
      assert.equal(res.is_error, false, JSON.stringify(res));
      const doc = res.content[0];
      assert.equal(doc.type, 'document');
      assert.equal(doc.source.type, 'text');
      assert.equal(doc.title, 'Warren & the web');
      assert.ok(doc.context.includes(url));
      const text = doc.source.data;
      assert.ok(text.includes('# Server-side tools'), text);
      assert.ok(text.includes(`Warren fetches pages itself, with a [guard](http://127.0.0.1:${site.address().port}/docs/ssrf).`), text);
      assert.ok(text.includes('- first\n- second'), text);
      assert.ok(!text.includes('should never show') && !text.includes('color:red'), text);
      // The session never waited for a worker: no requires_action.
      assert.ok(!events.some((e) => e.type === 'session.status_idle' && e.stop_reason?.type === 'requires_action'));
      const last = events.filter((e) => e.type === 'agent.message').at(-1);
      assert.equal(last.content[0].text, 'Fetched the page.');
      assert.equal(session.usage.server_tool_use.web_fetch_requests, 1);
    }
  });

  test('redirects are followed up to the limit; PDFs become text', async () => {
    const base = `http://127.0.0.1:${site.address().port}`;
    let { res } = resultOf((await turn(`fetch: ${base}/moved`)).events);
    assert.equal(res.is_error, false, errorText(res));
    assert.ok(res.content[0].context.includes(`${base}/article`), res.content[0].context);
    ({ res } = resultOf((await turn(`fetch: ${base}/chain/2`)).events));  // 3 redirects = the configured limit
    assert.equal(res.is_error, false, errorText(res));
    ({ res } = resultOf((await turn(`fetch: ${base}/chain/3`)).events));  // 4 redirects
    assert.equal(res.is_error, true);
    assert.match(errorText(res), /too many redirects/);
    ({ res } = resultOf((await turn(`fetch: ${base}/doc.pdf`)).events));
    assert.equal(res.is_error, false, errorText(res));
    assert.ok(res.content[0].source.data.includes('Quarterly report text'), res.content[0].source.data);
  });

  test('pages are decoded by their charset: ISO-8859-1 (header), Shift_JIS (<meta>), an unknown one said', async () => {
    const base = `http://127.0.0.1:${site.address().port}`;
    let { res } = resultOf((await turn(`fetch: ${base}/latin1`)).events);
    assert.equal(res.is_error, false, errorText(res));
    assert.equal(res.content[0].title, 'Caf\u00e9');
    assert.equal(res.content[0].source.data, 'cr\u00e8me br\u00fbl\u00e9e');
    assert.match(res.content[0].context, /decoded from iso-8859-1 \(the Content-Type header\)/);
    ({ res } = resultOf((await turn(`fetch: ${base}/sjis`)).events));
    assert.equal(res.is_error, false, errorText(res));
    assert.equal(res.content[0].title, '日本');
    assert.equal(res.content[0].source.data, '日本語のページ');
    assert.match(res.content[0].context, /decoded from shift_jis \(the page's <meta> charset\)/);
    ({ res } = resultOf((await turn(`fetch: ${base}/martian`)).events));
    assert.equal(res.is_error, false, errorText(res));
    assert.equal(res.content[0].source.data, 'caf\ufffd');
    assert.match(res.content.at(-1).text, /charset "x-martian" is not supported by this server/);
  });

  test('a body over the size limit is refused', async () => {
    const { res } = resultOf((await turn(`fetch: http://127.0.0.1:${site.address().port}/big`)).events);
    assert.equal(res.is_error, true);
    assert.match(errorText(res), /web_fetch error \(url_too_large\)/);
  });

  test('SSRF: loopback, 169.254.169.254 and redirects into private ranges are refused', async () => {
    const site1 = `http://127.0.0.1:${site.address().port}`;
    const internalPort = internal.address().port;
    const targets = [
      `http://127.0.0.1:${internalPort}/admin`,          // loopback, a live server
      `http://localhost:${internalPort}/admin`,          // a name that resolves to loopback
      `http://[::ffff:127.0.0.1]:${internalPort}/admin`, // IPv4-mapped IPv6
      `http://[::1]:${internalPort}/admin`,              // IPv6 loopback
      `http://2130706433:${internalPort}/admin`,         // 127.0.0.1 as one decimal number
      `http://0x7f.1:${internalPort}/admin`,             // ... hex and short forms
      `http://0.0.0.0:${internalPort}/admin`,            // "this host" reaches loopback services on Linux
      'http://169.254.169.254/latest/meta-data/',        // cloud metadata
      `${site1}/to-internal`,                            // allowed host redirecting to loopback
      `${site1}/to-metadata`,
      `${site1}/to-private`,                             // ... and to 10.0.0.1
    ];
    for (const url of targets) {
      const { res } = resultOf((await turn(`fetch: ${url}`)).events);
      assert.equal(res.is_error, true, url);
      assert.match(errorText(res), /web_fetch error \(url_not_allowed\)/, `${url}: ${errorText(res)}`);
    }
    assert.equal(internalHits, 0, 'the internal server was never reached');
    // Sanity: the internal server does answer when asked directly.
    const direct = await fetch(`http://127.0.0.1:${internalPort}/`);
    assert.equal(await direct.text(), 'internal secret');
  });

  test('web_search goes to the configured SearxNG and returns search_result blocks', async () => {
    const { events, session } = await turn('search: self hosted agents');
    const { use, res } = resultOf(events);
    assert.equal(use.name, 'web_search');
    assert.equal(res.is_error, false, errorText(res));
    assert.deepEqual(res.content.map((b) => [b.type, b.source, b.title, b.content[0].text]), [
      ['search_result', 'https://warren.example/docs', 'Warren docs', 'Self-hosted agents.'],
      ['search_result', 'https://other.example/post', 'A post', 'About agents.'],
    ]);
    assert.deepEqual(searxQueries.at(-1), { path: '/search', q: 'self hosted agents', format: 'json' });
    assert.equal(session.usage.server_tool_use.web_search_requests, 1);
    const { events: ev2 } = await turn('which tools');
    assert.equal(ev2.filter((e) => e.type === 'agent.message').at(-1).content[0].text, 'web_search is offered');
  });

  test('with no search provider configured, web_search is absent from the model tool list', async () => {
    const other = await startServer({ env: { WARREN_MODEL_PROVIDER: 'scripted', WARREN_MODEL_SCRIPT: SCRIPT } });
    try {
      const c = other.client();
      const a = await c.beta.agents.create({
        name: 'web agent', model: 'claude-sonnet-4-6',
        tools: [{ type: 'agent_toolset_20260401', configs: [{ name: 'web_search', enabled: true }] }],
      });
      const e = await c.beta.environments.create({ name: 'w', config: { type: 'cloud' } });
      const s = await c.beta.sessions.create({ agent: a.id, environment_id: e.id });
      await c.beta.sessions.events.send(s.id, { events: [{ type: 'user.message', content: [{ type: 'text', text: 'which tools' }] }] });
      await settle(c, s.id);
      const evs = [];
      for await (const ev of c.beta.sessions.events.list(s.id)) evs.push(ev);
      assert.equal(evs.filter((x) => x.type === 'agent.message').at(-1).content[0].text, 'web_search is absent');
    } finally {
      await other.cleanup();
    }
  });
});
