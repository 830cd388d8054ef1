// Raw HTTP helpers (node:http, no SDK) for table-driven and wire-level tests.
import http from 'node:http';
import net from 'node:net';

/**
 * One HTTP request on a fresh connection. Resolves {status, headers, text, json}
 * (json is undefined when the body is not JSON). Rejects only when no response
 * arrived at all (connection refused/reset before a status line).
 * A write error after the server already answered (e.g. 413 for an oversized
 * body followed by close) is ignored: the answer is what counts.
 */
export function rawRequest(baseURL, { method = 'GET', path = '/', headers = {}, body, timeoutMs = 30_000 } = {}) {
  if (body && body.length > 4 << 20) return socketRequest(baseURL, { method, path, headers, body, timeoutMs });
  const u = new URL(path, baseURL);
  return new Promise((resolve, reject) => {
    let settled = false;
    let gotResponse = false;
    const done = (err, val) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) reject(err);
      else resolve(val);
    };
    const hdrs = { ...headers };
    let payload = body;
    if (typeof payload === 'string') payload = Buffer.from(payload, 'utf8');
    if (payload !== undefined && payload !== null && hdrs['content-length'] === undefined) {
      hdrs['content-length'] = String(payload.length);
    }
    const req = http.request(
      { host: u.hostname, port: u.port, method, path: u.pathname + u.search, headers: hdrs, agent: false },
      (res) => {
        gotResponse = true;
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', (e) => done(e));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          done(null, { status: res.statusCode, headers: res.headers, text, json });
        });
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      done(new Error(`timeout after ${timeoutMs} ms: ${method} ${path}`));
    }, timeoutMs);
    req.on('error', (e) => {
      if (gotResponse) return; // answered; a late EPIPE/ECONNRESET does not matter
      // An early answer may still be in flight when the write fails; wait briefly.
      setTimeout(() => {
        if (!gotResponse) done(e);
      }, 200);
    });
    req.end(payload ?? undefined);
  });
}

/** JSON request with the org key (x-api-key) by default. */
export async function api(baseURL, key, method, path, bodyObj, extraHeaders = {}) {
  const headers = { 'anthropic-version': '2023-06-01', ...extraHeaders };
  if (key) headers['x-api-key'] = key;
  let body;
  if (bodyObj !== undefined) {
    body = JSON.stringify(bodyObj);
    headers['content-type'] = 'application/json';
  }
  return rawRequest(baseURL, { method, path, headers, body });
}

/**
 * Checks the spec's error envelope (section 0):
 * {"type":"error","error":{"type","message"},"request_id":"..."}.
 * Returns a list of problems (empty when fine).
 */
export function envelopeProblems(res) {
  const p = [];
  const j = res.json;
  if (!j || typeof j !== 'object') return [`body is not a JSON object: ${JSON.stringify(res.text.slice(0, 200))}`];
  if (j.type !== 'error') p.push(`type is ${JSON.stringify(j.type)}, want "error"`);
  if (!j.error || typeof j.error !== 'object') p.push('missing error object');
  else {
    if (typeof j.error.type !== 'string' || !j.error.type) p.push('error.type missing');
    if (typeof j.error.message !== 'string') p.push('error.message missing');
  }
  if (typeof j.request_id !== 'string' || !j.request_id) p.push('request_id missing');
  const ct = res.headers['content-type'] || '';
  if (!ct.includes('application/json')) p.push(`content-type is ${JSON.stringify(ct)}`);
  return p;
}

/**
 * HTTP/1.1 request over a plain socket, for bodies the server may refuse before
 * reading them (413): node:http drops an early answer once a write fails with
 * EPIPE, as a server that answers and closes causes. Here the socket keeps
 * reading while the body is written and write errors are ignored; the answer
 * is parsed from whatever arrived. Handles Content-Length and chunked bodies.
 */
function socketRequest(baseURL, { method, path, headers, body, timeoutMs }) {
  const u = new URL(path, baseURL);
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: u.hostname, port: Number(u.port) });
    const chunks = [];
    let settled = false;
    const finish = () => {
      if (settled) return;
      const res = parseResponse(Buffer.concat(chunks));
      if (!res) return;
      settled = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(res);
    };
    const timer = setTimeout(() => {
      settled = true;
      sock.destroy();
      reject(new Error(`timeout after ${timeoutMs} ms: ${method} ${path}`));
    }, timeoutMs);
    sock.on('data', (c) => {
      chunks.push(c);
      finish();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      finish();
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(new Error(`connection closed without a complete answer: ${method} ${path}`));
      }
    });
    sock.on('connect', () => {
      const lines = [`${method} ${u.pathname}${u.search} HTTP/1.1`, `host: ${u.host}`, 'connection: close'];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-length')) lines.push(`content-length: ${body.length}`);
      sock.write(lines.join('\r\n') + '\r\n\r\n');
      // Paced writes: one chunk at a time, and stop as soon as any answer
      // bytes arrive. (node destroys a socket on EPIPE and drops what it had
      // not read yet, so racing ahead would lose an early 413.)
      let off = 0;
      const step = 256 << 10;
      const pump = () => {
        if (sock.destroyed || chunks.length || off >= body.length) return;
        const piece = body.subarray(off, off + step);
        off += step;
        sock.write(piece, () => setTimeout(pump, 1));
      };
      pump();
    });
  });
}

/** Parses a complete HTTP/1.1 response from `buf`, or returns null if incomplete. */
function parseResponse(buf) {
  const end = buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = buf.subarray(0, end).toString('latin1').split('\r\n');
  const m = head[0].match(/^HTTP\/1\.[01] (\d{3})/);
  if (!m) return null;
  const headers = {};
  for (const l of head.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let rest = buf.subarray(end + 4);
  let bodyBuf;
  if (headers['content-length'] !== undefined) {
    const n = Number(headers['content-length']);
    if (rest.length < n) return null;
    bodyBuf = rest.subarray(0, n);
  } else if (/chunked/i.test(headers['transfer-encoding'] || '')) {
    const parts = [];
    for (;;) {
      const le = rest.indexOf('\r\n');
      if (le < 0) return null;
      const size = parseInt(rest.subarray(0, le).toString('latin1'), 16);
      if (rest.length < le + 2 + size + 2) return null;
      if (size === 0) break;
      parts.push(rest.subarray(le + 2, le + 2 + size));
      rest = rest.subarray(le + 2 + size + 2);
    }
    bodyBuf = Buffer.concat(parts);
  } else {
    return null; // read until close: the caller's close handler decides
  }
  const text = bodyBuf.toString('utf8');
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: Number(m[1]), headers, text, json };
}
