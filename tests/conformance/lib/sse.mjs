// Minimal raw SSE client (node:http), used where the test needs the wire frames
// (`event:`/`id:` lines, pings) or many cheap concurrent streams (benchmarks).
import http from 'node:http';

/**
 * Opens GET `path` as an event stream. Resolves once the response headers
 * arrive with {status, headers, frames, close(), ended, onFrame}.
 * frames: [{event, data, id, raw}] in arrival order; `onFrame(f)` is called for each.
 * For a non-200 answer the body is collected into `text` and `ended` resolves.
 */
export function openSse(baseURL, path, headers = {}, { timeoutMs = 30_000, keepAlive } = {}) {
  const u = new URL(path, baseURL);
  return new Promise((resolve, reject) => {
    const req = http.request({
      host: u.hostname, port: u.port, method: 'GET', path: u.pathname + u.search,
      headers: { accept: 'text/event-stream', ...headers }, agent: keepAlive ?? false,
    });
    const timer = setTimeout(() => {
      req.destroy(new Error(`SSE connect timeout ${path}`));
    }, timeoutMs);
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      clearTimeout(timer);
      req.removeAllListeners('error');
      req.on('error', () => {});
      let endResolve;
      const s = {
        status: res.statusCode,
        headers: res.headers,
        frames: [],
        text: '',
        onFrame: null,
        ended: new Promise((r) => (endResolve = r)),
        close() {
          req.destroy();
          res.destroy();
        },
      };
      res.setEncoding('utf8');
      let buf = '';
      let cur = { event: null, data: [], id: null, raw: [] };
      const dispatch = () => {
        if (cur.data.length || cur.event !== null || cur.id !== null) {
          const f = { event: cur.event, data: cur.data.join('\n'), id: cur.id, raw: cur.raw };
          s.frames.push(f);
          if (s.onFrame) s.onFrame(f);
        }
        cur = { event: null, data: [], id: null, raw: [] };
      };
      res.on('data', (chunk) => {
        if (s.status !== 200) {
          s.text += chunk;
          return;
        }
        buf += chunk;
        let i;
        while ((i = buf.search(/\r\n|\r|\n/)) >= 0) {
          const line = buf.slice(0, i);
          const nl = buf.startsWith('\r\n', i) ? 2 : 1;
          buf = buf.slice(i + nl);
          if (line === '') {
            dispatch();
            continue;
          }
          cur.raw.push(line);
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let value = c < 0 ? '' : line.slice(c + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') cur.event = value;
          else if (field === 'data') cur.data.push(value);
          else if (field === 'id') cur.id = value;
        }
      });
      const end = () => endResolve();
      res.on('end', end);
      res.on('close', end);
      res.on('error', end);
      resolve(s);
    });
    req.end();
  });
}
