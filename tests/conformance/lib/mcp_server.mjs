// A real MCP server for the tests: the official @modelcontextprotocol/sdk
// (McpServer) on 127.0.0.1, port 0, over both transports:
//   /mcp          Streamable HTTP (stateful: Mcp-Session-Id), bearer `tokens.str` if set
//   /json-mcp     Streamable HTTP whose answers are JSON bodies (enableJsonResponse)
//   /oauth-mcp    Streamable HTTP that accepts only the current OAuth access token
//   /sse + /messages  the older HTTP+SSE transport, bearer `tokens.legacy` if set
//   /token        an OAuth token endpoint (refresh_token grant, client_secret_post)
// Every Authorization header and token request is recorded. Tools: echo,
// whoami (answers with the Authorization header it got),
// big (a large text), slow (waits until the client goes away), count (a
// side effect: state.counted), gate (waits for state.gateOpen), tally (a
// side effect counted when it completes), cutoff (its answer stream is cut after a
// first event; the answer is kept by the event store for a resume).
// /mcp keeps an event store (resumability, Last-Event-ID) and serves the
// standalone GET stream; state.standalone holds the MCP session ids whose
// GET stream is open, state.sessionOrder every session id in creation
// order. forgetSessions() drops every /mcp session (a restart that forgets
// them); addTool(sid, name) adds a tool to one session's server, which
// says so on its standalone stream (notifications/tools/list_changed
// outside any request).
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

// The SDK's client, for peers measured against Warren (bench/mcp).
export { Client } from '@modelcontextprotocol/sdk/client/index.js';
export { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

// An event store that keeps events in the order they were stored (the SDK's
// example store orders by time and a random suffix, which can reorder two
// events of one millisecond). No getStreamIdForEventId: a resume replaces a
// stream the server has not yet noticed is gone instead of answering 409.
class OrderedEventStore {
  constructor() {
    this.events = [];
  }
  async storeEvent(streamId, message) {
    const eventId = `ev${this.events.length + 1}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const at = this.events.findIndex((e) => e.eventId === lastEventId);
    if (at < 0) return '';
    const { streamId } = this.events[at];
    for (const e of this.events.slice(at + 1)) if (e.streamId === streamId) await send(e.eventId, e.message);
    return streamId;
  }
}

function newMcp(tag, state) {
  const server = new McpServer({ name: `warren-test-${tag}`, version: '1.0.0' });
  // A side effect the tests count: made once per call that reached the tool.
  server.registerTool('count', { description: 'Counts its calls', inputSchema: {} }, async () => {
    state.counted++;
    return { content: [{ type: 'text', text: `counted ${state.counted}` }] };
  });
  // Sends a first event on its answer stream; the HTTP handler cuts the
  // connection once that event is on the wire; then the tool answers (the
  // event store keeps the answer for the client's resume).
  server.registerTool('cutoff', { description: 'Its answer stream breaks', inputSchema: {} }, async (_args, extra) => {
    await extra.sendNotification({ method: 'notifications/progress', params: { progressToken: 'cut', progress: 1 } });
    await state.cut.done;
    return { content: [{ type: 'text', text: 'after the cut' }] };
  });
  // Waits until the client cancels (notifications/cancelled aborts `signal`) or 60 s.
  server.registerTool('slow', { description: 'Waits until cancelled', inputSchema: {} }, async (_args, extra) => {
    state.slowStarted++;
    await new Promise((resolve) => {
      const t = setTimeout(resolve, 60_000);
      extra.signal.addEventListener('abort', () => {
        state.slowAborted++;
        clearTimeout(t);
        resolve();
      });
    });
    return { content: [{ type: 'text', text: 'slow done' }] };
  });
  // Waits until the test opens the gate (state.gateOpen) or the call is cancelled.
  server.registerTool('gate', { description: 'Waits for the gate', inputSchema: {} }, async (_args, extra) => {
    state.gateStarted++;
    while (!state.gateOpen && !extra.signal.aborted) await new Promise((r) => setTimeout(r, 10));
    return { content: [{ type: 'text', text: 'gate passed' }] };
  });
  // Adds a tool and says so on this request's stream (notifications/tools/list_changed).
  server.registerTool('grow', { description: 'Adds the tool late', inputSchema: {} }, async (_args, extra) => {
    if (!state.grown.has(server)) {
      state.grown.add(server);
      server.registerTool('late', { description: 'Added at run time', inputSchema: {} },
        async () => ({ content: [{ type: 'text', text: 'late answer' }] }));
    }
    await extra.sendNotification({ method: 'notifications/tools/list_changed' });
    return { content: [{ type: 'text', text: 'grown' }] };
  });
  // A side effect counted when the call completes: state.tally[key]. With
  // `hold`, the call first waits for the test: state.tallyHeld holds one
  // resolver per held call; resolving it with 'release' completes the call,
  // anything else ('abandoned': its client died) ends it without the side
  // effect, as does a cancellation (notifications/cancelled).
  server.registerTool('tally', { description: 'Counts a side effect', inputSchema: { key: z.string(), hold: z.boolean().optional() } },
    async ({ key, hold }, extra) => {
      state.tallyStarted[key] = (state.tallyStarted[key] ?? 0) + 1;
      if (hold) {
        const outcome = await new Promise((resolve) => {
          state.tallyHeld.push(resolve);
          extra.signal.addEventListener('abort', () => resolve('aborted'));
        });
        if (outcome !== 'release') return { content: [{ type: 'text', text: `tally ${key} ${outcome}` }], isError: true };
      }
      state.tally[key] = (state.tally[key] ?? 0) + 1;
      return { content: [{ type: 'text', text: `tally ${key}=${state.tally[key]}` }] };
    });
  // Echoes the Authorization header it was called with (a server that
  // leaks the credential back: the client must scrub it).
  server.registerTool('whoami', { description: 'Says which credential it got', inputSchema: {} },
    async (_args, extra) => ({ content: [{ type: 'text', text: `you sent ${extra.requestInfo?.headers?.authorization ?? 'nothing'}` }] }));
  server.registerTool('echo', { description: 'Echoes its text', inputSchema: { text: z.string() } },
    async ({ text }) => ({ content: [{ type: 'text', text: `${tag}-echo:${text}` }] }));
  server.registerTool('big', { description: 'A large answer', inputSchema: { bytes: z.number() } },
    async ({ bytes }) => ({ content: [{ type: 'text', text: 'B'.repeat(bytes) }] }));
  server.registerTool('fail', { description: 'Always fails', inputSchema: {} },
    async () => ({ content: [{ type: 'text', text: 'it broke' }], isError: true }));
  return server;
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const s = Buffer.concat(chunks).toString('utf8');
  return s ? JSON.parse(s) : undefined;
}

export async function startMcpServer() {
  const state = {
    auth: [],           // { path, authorization }
    tokenRequests: [],  // parsed form bodies
    tokens: { str: null, legacy: null },
    oauth: { access: 'at-initial-never-valid', refresh: null, clientSecret: null, issued: 0 },
    toolCalls: 0,
    jsonAccepts: [],      // "<method> <Accept>" of requests to /json-mcp
    jsonContentTypes: [], // "<method> <Content-Type>" of its answers
    toolLists: new Map(), // MCP session id -> tools/list requests on /mcp
    slowStarted: 0,
    slowAborted: 0,
    gateStarted: 0,
    gateOpen: false,
    tally: {},          // key -> side effects done
    tallyStarted: {},   // key -> calls started
    tallyHeld: [],      // resolvers of held tally calls
    grown: new WeakSet(),
    counted: 0,
    cuts: 0,
    cut: null,
    standalone: new Set(),
    sessionOrder: [],
  };
  const armCut = () => {
    let resolve;
    state.cut = { done: new Promise((r) => (resolve = r)), resolve };
  };
  armCut();
  const streamable = new Map(); // session id -> transport
  const servers = new Map(); // session id -> McpServer
  const legacy = new Map();

  const unauthorized = (res) => {
    res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Bearer' });
    res.end('{"error":"unauthorized"}');
  };

  async function handleStreamable(req, res, tag, { json = false } = {}) {
    const body = req.method === 'POST' ? await readBody(req) : undefined;
    const sid = req.headers['mcp-session-id'];
    let transport = sid ? streamable.get(sid) : undefined;
    if (!transport) {
      if (req.method !== 'POST' || !isInitializeRequest(body)) {
        res.writeHead(sid ? 404 : 400, { 'content-type': 'application/json' });
        res.end('{"jsonrpc":"2.0","error":{"code":-32000,"message":"no session"},"id":null}');
        return;
      }
      const server = newMcp(tag, state);
      transport = new StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        // json: answers are application/json bodies instead of SSE streams.
        enableJsonResponse: json,
        eventStore: new OrderedEventStore(),
        onsessioninitialized: (id) => {
          streamable.set(id, transport);
          servers.set(id, server);
          state.sessionOrder.push(id);
        },
      });
      await server.connect(transport);
    }
    if (req.method === 'GET' && sid && !req.headers['last-event-id']) {
      // The standalone stream is open once its head is written.
      const writeHead = res.writeHead.bind(res);
      res.writeHead = (code, ...rest) => {
        if (code === 200) {
          state.standalone.add(sid);
          res.on('close', () => state.standalone.delete(sid));
        }
        return writeHead(code, ...rest);
      };
    }
    if (body?.method === 'tools/call') state.toolCalls++;
    if (body?.method === 'tools/list') state.toolLists.set(sid, (state.toolLists.get(sid) ?? 0) + 1);
    if (body?.method === 'tools/call' && body.params?.name === 'cutoff') {
      // Cut the connection right after the first event reaches the socket.
      const write = res.write.bind(res);
      let cut = false;
      res.write = (chunk, ...rest) => {
        if (!cut && Buffer.from(chunk).toString().includes('"progressToken":"cut"')) {
          cut = true;
          return write(chunk, () => {
            state.cuts++;
            res.socket?.destroy();
            state.cut.resolve();
          });
        }
        return write(chunk, ...rest);
      };
    }
    await transport.handleRequest(req, res, body);
  }

  const srv = http.createServer(async (req, res) => {
    try {
      const url = new URL(req.url, 'http://x');
      state.auth.push({ path: url.pathname, authorization: req.headers.authorization ?? null });
      if (url.pathname === '/token') {
        const form = new URLSearchParams(await new Promise((r) => { let s = ''; req.on('data', (c) => (s += c)); req.on('end', () => r(s)); }));
        state.tokenRequests.push(Object.fromEntries(form));
        const o = state.oauth;
        if (form.get('grant_type') !== 'refresh_token' || form.get('refresh_token') !== o.refresh ||
            form.get('client_secret') !== o.clientSecret) {
          res.writeHead(400, { 'content-type': 'application/json' });
          res.end('{"error":"invalid_grant"}');
          return;
        }
        o.issued++;
        o.access = `at-fresh-${o.issued}-${randomUUID()}`;
        o.refresh = `rt-rotated-${o.issued}-${randomUUID()}`;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ access_token: o.access, refresh_token: o.refresh, token_type: 'Bearer', expires_in: 3600 }));
        return;
      }
      if (url.pathname === '/mcp') {
        if (state.tokens.str && req.headers.authorization !== `Bearer ${state.tokens.str}`) return unauthorized(res);
        return await handleStreamable(req, res, 'str');
      }
      if (url.pathname === '/json-mcp') {
        state.jsonAccepts.push(`${req.method} ${req.headers.accept ?? ''}`);
        const res0 = res.writeHead.bind(res);
        res.writeHead = (code, ...rest) => {
          const h = rest.find((x) => x && typeof x === 'object') ?? {};
          const ct = h['content-type'] ?? h['Content-Type'] ?? res.getHeader('content-type');
          if (ct) state.jsonContentTypes.push(`${req.method} ${ct}`);
          return res0(code, ...rest);
        };
        return await handleStreamable(req, res, 'json', { json: true });
      }
      if (url.pathname === '/oauth-mcp') {
        if (req.headers.authorization !== `Bearer ${state.oauth.access}`) return unauthorized(res);
        return await handleStreamable(req, res, 'oauth');
      }
      if (url.pathname === '/sse' || url.pathname === '/messages') {
        if (state.tokens.legacy && req.headers.authorization !== `Bearer ${state.tokens.legacy}`) return unauthorized(res);
        if (url.pathname === '/sse' && req.method === 'GET') {
          const t = new SSEServerTransport('/messages', res);
          legacy.set(t.sessionId, t);
          res.on('close', () => legacy.delete(t.sessionId));
          await newMcp('legacy', state).connect(t);
          return;
        }
        if (url.pathname === '/messages' && req.method === 'POST') {
          const t = legacy.get(url.searchParams.get('sessionId'));
          if (!t) { res.writeHead(404).end(); return; }
          const body = await readBody(req);
          if (body?.method === 'tools/call') state.toolCalls++;
          await t.handlePostMessage(req, res, body);
          return;
        }
      }
      res.writeHead(404).end();
    } catch (e) {
      if (!res.headersSent) res.writeHead(500);
      res.end(String(e));
    }
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${srv.address().port}`;
  return {
    base,
    state,
    // A restart that forgets every /mcp session: their streams end and the
    // old ids answer 404.
    async forgetSessions() {
      const all = [...streamable.values()];
      streamable.clear();
      servers.clear();
      for (const t of all) await t.close().catch(() => {});
    },
    addTool(sid, name) {
      const server = servers.get(sid);
      if (!server) throw new Error(`no MCP session ${sid}`);
      server.registerTool(name, { description: 'Added outside any request', inputSchema: {} },
        async () => ({ content: [{ type: 'text', text: `${name} answer` }] }));
    },
    rearmCut: armCut,
    async close() {
      for (const t of [...streamable.values(), ...legacy.values()]) await t.close().catch(() => {});
      srv.closeAllConnections?.();
      await new Promise((r) => srv.close(r));
    },
  };
}
