// The sandbox of a session (found by its warren.session_id label) or of the
// sandbox page: state and resources, a file browser with view and download,
// and a live terminal (xterm.js over the terminal WebSocket).
import { useEffect, useRef, useState } from 'preact/hooks';
import { html, Badge, Spinner, ErrorNote, useLoad, useAction } from '../ui.js';
import { get, post, qs, request, headers } from '../api.js';
import { bytes, when, age } from '../util.js';
import { Terminal } from '@xterm/xterm';
import { FitAddon } from '@xterm/addon-fit';

export function SandboxPanel({ sessionId }) {
  const [sb, setSb] = useState(undefined);
  const [err, setErr] = useState(null);
  useEffect(() => {
    let stop = false;
    let t;
    const look = async () => {
      try {
        const r = await get('/v1/warren/sandboxes' + qs({ label: `warren.session_id=${sessionId}`, limit: 5 }));
        if (stop) return;
        setSb(r.data[0] || null);
        setErr(null);
      } catch (e) {
        if (!stop) setErr(e);
      }
      if (!stop) t = setTimeout(look, 3000);
    };
    look();
    return () => ((stop = true), clearTimeout(t));
  }, [sessionId]);
  if (err && sb === undefined) return html`<div class="panel-pad"><h2 class="panel-title">Sandbox</h2><${ErrorNote} error=${err} /></div>`;
  if (sb === undefined) return html`<div class="panel-pad"><h2 class="panel-title">Sandbox</h2><${Spinner} /></div>`;
  if (sb === null)
    return html`<div class="panel-pad"><h2 class="panel-title">Sandbox</h2>
      <div class="empty small"><div class="empty-title">No sandbox yet</div>
      <p>A sandbox starts when the agent first runs a tool on a cloud environment.</p></div></div>`;
  return html`<${SandboxView} sandbox=${sb} compact onChange=${setSb} />`;
}

export function SandboxView({ sandbox, compact, title, onChange }) {
  const [tab, setTab] = useState('overview');
  const [busy, run] = useAction();
  const id = sandbox.id;
  const act = (verb) => run(verb, async () => onChange?.(await post(`/v1/warren/sandboxes/${id}/${verb}`)), `Sandbox ${verb === 'stop' ? 'stopped' : verb + (verb.endsWith('e') ? 'd' : 'ed')}`);
  const tabs = [['overview', 'Overview'], ['files', 'Files'], ['terminal', 'Terminal']];
  return html`<div class="sandbox-view">
    <div class="panel-pad sv-head">
      <div class="sv-title"><h2 class="panel-title">${title || 'Sandbox'}</h2><${Badge} status=${sandbox.state} /></div>
      ${compact && html`<a class="mono faint small-link" href=${`#/sandboxes/${id}`}>${id}</a>`}
      <div class="btn-row">
        ${sandbox.state === 'stopped' || sandbox.state === 'archived' ? html`<button type="button" class="ghost small" disabled=${!!busy} onClick=${() => act('start')}>Start</button>` : null}
        ${sandbox.state === 'started' ? html`<button type="button" class="ghost small" disabled=${!!busy} onClick=${() => act('pause')}>Pause</button>
          <button type="button" class="ghost small" disabled=${!!busy} onClick=${() => act('stop')}>Stop</button>` : null}
        ${sandbox.state === 'paused' ? html`<button type="button" class="ghost small" disabled=${!!busy} onClick=${() => act('resume')}>Resume</button>` : null}
        ${busy && html`<${Spinner} />`}
      </div>
    </div>
    <div class="tabs" role="tablist" aria-label="Sandbox views">
      ${tabs.map(([k, l]) => html`<button type="button" role="tab" key=${k} id=${`tab-${k}`} aria-selected=${tab === k} aria-controls=${`tp-${k}`}
        class=${tab === k ? 'on' : ''} onClick=${() => setTab(k)}>${l}</button>`)}
    </div>
    <div class="tab-panel" role="tabpanel" id=${`tp-${tab}`} aria-labelledby=${`tab-${tab}`}>
      ${tab === 'overview' && html`<${Overview} sandbox=${sandbox} />`}
      ${tab === 'files' && html`<${Files} id=${id} start=${sandbox.workdir || '/'} />`}
      ${tab === 'terminal' && html`<${Term} id=${id} state=${sandbox.state} />`}
    </div>
  </div>`;
}

function Overview({ sandbox }) {
  const [stats] = useLoad(() => (sandbox.state === 'started' ? get(`/v1/warren/sandboxes/${sandbox.id}/stats`) : Promise.resolve(null)), [sandbox.id, sandbox.state]);
  const r = sandbox.resources || {};
  const row = (k, v) => html`<div><dt>${k}</dt><dd>${v}</dd></div>`;
  return html`<dl class="kv panel-pad">
    ${row('Snapshot', html`<span class="mono">${sandbox.snapshot || '—'}</span>`)}
    ${row('CPUs', r.cpus || 'no limit')}
    ${row('Memory', r.memory_bytes ? bytes(r.memory_bytes) : 'no limit')}
    ${row('Disk', r.disk_bytes ? bytes(r.disk_bytes) : 'no limit')}
    ${row('Processes', r.pids || 'no limit')}
    ${stats && row('Memory used', `${bytes(stats.memory_bytes)} (peak ${bytes(stats.memory_peak_bytes)})`)}
    ${stats && row('CPU time', `${(stats.cpu_usage_ns / 1e9).toFixed(2)} s`)}
    ${row('Network', sandbox.network?.type || '—')}
    ${row('Work dir', html`<span class="mono">${sandbox.workdir || '/'}</span>`)}
    ${row('Created', html`<span title=${sandbox.created_at}>${when(sandbox.created_at)}</span>`)}
    ${row('Last activity', age(sandbox.last_activity_at))}
    ${sandbox.parent && row('Forked from', html`<a class="mono" href=${`#/sandboxes/${sandbox.parent}`}>${sandbox.parent}</a>`)}
  </dl>`;
}

const VIEW_LIMIT = 256 * 1024;

function Files({ id, start }) {
  const [path, setPath] = useState(start);
  const [list, err, reload] = useLoad(() => get(`/v1/warren/sandboxes/${id}/files` + qs({ path })), [id, path]);
  const [view, setView] = useState(null);
  const join = (name) => (path.endsWith('/') ? path : path + '/') + name;
  const parts = path.split('/').filter(Boolean);
  const open = async (f) => {
    const p = join(f.name);
    if (f.type === 'dir') return setPath(p);
    setView({ path: p, loading: true });
    try {
      const res = await request('GET', `/v1/warren/sandboxes/${id}/files/content` + qs({ path: p }), undefined, {
        raw: true, extraHeaders: { range: `bytes=0-${VIEW_LIMIT - 1}` } });
      const buf = new Uint8Array(await res.arrayBuffer());
      const binary = buf.subarray(0, 4096).includes(0);
      setView({ path: p, size: f.size, binary, text: binary ? '' : new TextDecoder().decode(buf), cut: f.size > VIEW_LIMIT });
    } catch (e) {
      setView({ path: p, error: e });
    }
  };
  const download = async (p) => {
    const res = await fetch(`/v1/warren/sandboxes/${id}/files/content` + qs({ path: p }), { headers: headers() });
    if (!res.ok) return;
    const url = URL.createObjectURL(await res.blob());
    const a = document.createElement('a');
    a.href = url;
    a.download = p.split('/').pop() || 'file';
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  };
  return html`<div class="files">
    <nav class="crumbs" aria-label="Path">
      <button type="button" class="link" onClick=${() => (setPath('/'), setView(null))}>/</button>
      ${parts.map((p, i) => html`${i > 0 && html`<span class="faint">/</span>`}<button type="button" class="link" onClick=${() => (setPath('/' + parts.slice(0, i + 1).join('/')), setView(null))}>${p}</button>`)}
      <button type="button" class="icon-btn" aria-label="Refresh" onClick=${reload}>↻</button>
    </nav>
    <${ErrorNote} error=${err} />
    ${view ? html`<div class="file-view">
        <div class="fv-head"><button type="button" class="ghost small" onClick=${() => setView(null)}>← Back</button>
          <span class="mono fv-path">${view.path}</span>
          <button type="button" class="ghost small" onClick=${() => download(view.path)}>Download</button></div>
        ${view.loading ? html`<${Spinner} />` : view.error ? html`<${ErrorNote} error=${view.error} />`
          : view.binary ? html`<p class="faint panel-pad">Binary file (${bytes(view.size)}). Download it to look inside.</p>`
          : html`<pre class="code file-text" tabindex="0" aria-label=${`Contents of ${view.path}`}>${view.text}</pre>
            ${view.cut && html`<p class="faint small">Showing the first ${bytes(VIEW_LIMIT)} of ${bytes(view.size)}.</p>`}`}
      </div>`
    : !list ? html`<div class="center"><${Spinner} /></div>`
    : html`<ul class="file-list" aria-label=${`Files in ${path}`}>
        ${path !== '/' && html`<li><button type="button" class="file-row" onClick=${() => setPath('/' + parts.slice(0, -1).join('/'))}><span class="ficon">↰</span><span>..</span></button></li>`}
        ${list.data.length === 0 && html`<li class="faint panel-pad">Empty directory</li>`}
        ${list.data.map((f) => html`<li key=${f.name}><button type="button" class="file-row" data-file=${f.name} onClick=${() => open(f)}>
          <span class="ficon" aria-hidden="true">${f.type === 'dir' ? '▸' : f.type === 'symlink' ? '↪' : '·'}</span>
          <span class=${f.type === 'dir' ? 'fname dir' : 'fname'}>${f.name}${f.type === 'dir' ? '/' : ''}</span>
          <span class="fsize faint mono">${f.type === 'file' ? bytes(f.size) : ''}</span></button></li>`)}
      </ul>`}
  </div>`;
}

function Term({ id, state }) {
  const host = useRef();
  const [status, setStatus] = useState('connecting');
  const [err, setErr] = useState(null);
  const [gen, setGen] = useState(0);
  useEffect(() => {
    if (state !== 'started') return undefined;
    const styles = getComputedStyle(document.documentElement);
    const term = new Terminal({
      fontFamily: styles.getPropertyValue('--mono').trim() || 'monospace', fontSize: 13, cursorBlink: true, convertEol: false,
      theme: { background: '#0d1117', foreground: '#e6edf3', cursor: '#7aa2ff', selectionBackground: '#264f78' },
    });
    const fit = new FitAddon();
    term.loadAddon(fit);
    term.open(host.current);
    try { fit.fit(); } catch { /* hidden */ }
    let ws = null;
    let closed = false;
    const enc = new TextEncoder();
    (async () => {
      try {
        const t = await post(`/v1/warren/sandboxes/${id}/terminal_tickets`, { cols: term.cols, rows: term.rows });
        if (closed) return;
        ws = new WebSocket(`${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/warren/sandboxes/${id}/terminal?ticket=${encodeURIComponent(t.ticket)}`);
        ws.binaryType = 'arraybuffer';
        ws.onopen = () => { setStatus('live'); term.focus(); };
        ws.onmessage = (m) => {
          if (typeof m.data === 'string') {
            try {
              const c = JSON.parse(m.data);
              if (c.type === 'exit') { term.write(`\r\n\x1b[2m[shell exited with code ${c.code}]\x1b[0m\r\n`); setStatus('exited'); }
            } catch { /* ignore */ }
          } else term.write(new Uint8Array(m.data));
        };
        ws.onclose = () => setStatus((s) => (s === 'exited' ? s : 'closed'));
        ws.onerror = () => setStatus('closed');
      } catch (e) {
        setErr(e.status === 404 ? new Error('This server has no terminal route yet.') : e);
        setStatus('closed');
      }
    })();
    const d1 = term.onData((d) => ws?.readyState === 1 && ws.send(enc.encode(d)));
    const d2 = term.onResize(({ cols, rows }) => ws?.readyState === 1 && ws.send(JSON.stringify({ type: 'resize', cols, rows })));
    const ro = new ResizeObserver(() => { try { fit.fit(); } catch { /* detached */ } });
    ro.observe(host.current);
    return () => { closed = true; ro.disconnect(); d1.dispose(); d2.dispose(); ws?.close(); term.dispose(); };
  }, [id, state, gen]);
  if (state !== 'started') return html`<p class="panel-pad faint">The terminal needs a running sandbox (it is ${state}).</p>`;
  return html`<div class="term-wrap">
    <div class="term-bar"><${Badge} status=${status === 'live' ? 'live' : status === 'connecting' ? 'starting' : 'stopped'} label=${status} />
      ${status !== 'live' && status !== 'connecting' && html`<button type="button" class="ghost small" onClick=${() => (setStatus('connecting'), setErr(null), setGen(gen + 1))}>Reconnect</button>`}</div>
    <${ErrorNote} error=${err} />
    <div class="term" ref=${host} aria-label="Terminal"></div>
  </div>`;
}
