// Raw HTTP helpers (node:http, no SDK) for table-driven and wire-level tests.
import http from 'node:http';

/**
 * One HTTP request on a fresh connection. Resolves {status, headers, text, json}
 * (json is undefined when the body is not JSON). Rejects only when no response
 * arrived at all (connection refused/reset before a status line).
 * A write error after the server already answered (e.g. 413 for an oversized
 * body followed by close) is ignored: the answer is what counts.
 */
export function rawRequest(baseURL, { method = 'GET', path = '/', headers = {}, body, timeoutMs = 30_000 } = {}) {
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
    if (payload && payload.length > 4 << 20) {
      // Write large bodies in chunks so an early answer can be observed.
      let off = 0;
      const step = 1 << 20;
      const pump = () => {
        while (off < payload.length && !req.destroyed) {
          const ok = req.write(payload.subarray(off, off + step));
          off += step;
          if (!ok) {
            req.once('drain', pump);
            return;
          }
        }
        if (!req.destroyed) req.end();
      };
      pump();
    } else {
      req.end(payload ?? undefined);
    }
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
