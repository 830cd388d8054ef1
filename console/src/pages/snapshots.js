// Snapshots: list, delete, and builds with their streamed log.
import { useRef, useState } from 'preact/hooks';
import { html, Empty, ErrorNote, PageHead, Spinner, Modal, Field, Badge, useLoad, useAction, toast } from '../ui.js';
import { get, del, headers, errorFrom } from '../api.js';
import { readSse } from '../sse.js';
import { when } from '../util.js';

export function SnapshotsPage() {
  const [list, err, reload] = useLoad(() => get('/v1/warren/snapshots'), []);
  const [building, setBuilding] = useState(false);
  const [busy, run] = useAction();
  return html`<section class="page">
    <${PageHead} title="Snapshots" sub="Root file systems sandboxes start from.">
      <button type="button" class="primary" onClick=${() => setBuilding(true)}>Build snapshot</button>
    <//>
    <${ErrorNote} error=${err} />
    ${list === undefined ? html`<div class="center"><${Spinner} /></div>`
      : list.data.length === 0 ? html`<${Empty} title="No snapshots yet"><p>Sandboxes use <code>builtin:minimal</code> until you build one.</p><//>`
      : html`<div class="table-wrap"><table class="table">
        <thead><tr><th scope="col">Name</th><th scope="col" class="hide-sm">Base</th><th scope="col" class="num">Layers</th><th scope="col" class="num hide-sm">Built</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${list.data.map((s) => html`<tr key=${s.name}>
          <td class="title-cell"><strong>${s.name}</strong><div class="mono faint">${(s.hash || s.id || '').slice(0, 19)}</div></td>
          <td class="hide-sm mono">${(/^\s*FROM\s+(\S+)/im.exec(s.recipe || '') || [])[1] || (s.name.startsWith('builtin:') ? 'built in' : '—')}</td>
          <td class="num mono">${Array.isArray(s.layers) ? s.layers.length : '—'}</td>
          <td class="num faint hide-sm">${when(s.created_at)}</td>
          <td class="num"><button type="button" class="ghost small" disabled=${!!busy} aria-label=${`Delete snapshot ${s.name}`}
            onClick=${() => confirm(`Delete snapshot ${s.name}?`) && run('del', async () => { await del(`/v1/warren/snapshots/${encodeURIComponent(s.name)}`); reload(); }, 'Snapshot deleted')}>Delete</button></td>
        </tr>`)}</tbody></table></div>`}
    <${Build} open=${building} onClose=${() => setBuilding(false)} onBuilt=${reload} />
  </section>`;
}

const EXAMPLE = 'FROM builtin:minimal\nRUN echo "hello from the build" > /etc/motd\nRUN mkdir -p /workspace\n';

function Build({ open, onClose, onBuilt }) {
  const [name, setName] = useState('');
  const [recipe, setRecipe] = useState(EXAMPLE);
  const [log, setLog] = useState('');
  const [state, setState] = useState('idle');
  const [err, setErr] = useState(null);
  const logRef = useRef();
  const ctl = useRef(null);
  const append = (s) => {
    setLog((l) => l + s);
    requestAnimationFrame(() => logRef.current && (logRef.current.scrollTop = logRef.current.scrollHeight));
  };
  const start = async (e) => {
    e.preventDefault();
    setLog('');
    setErr(null);
    setState('building');
    ctl.current = new AbortController();
    try {
      const res = await fetch('/v1/warren/snapshots', {
        method: 'POST', signal: ctl.current.signal,
        headers: headers({ 'content-type': 'application/json', accept: 'text/event-stream' }),
        body: JSON.stringify({ name: name.trim(), recipe, stream: true }),
      });
      if (!res.ok) throw await errorFrom(res);
      let done = false;
      await readSse(res, (f) => {
        let d;
        try { d = JSON.parse(f.data); } catch { d = f.data; }
        if (f.event === 'log') append(typeof d === 'string' ? d : (d.line ?? d.text ?? d.data ?? JSON.stringify(d)) + (String(d.line ?? '').endsWith('\n') ? '' : '\n'));
        else if (f.event === 'snapshot') { done = true; setState('ready'); toast(`Snapshot ${d.name} built`); onBuilt(); }
        else if (f.event === 'error') { done = true; setState('failed'); setErr(new Error(d.error?.message || d.message || 'The build failed.')); }
      });
      if (!done) setState((s) => (s === 'building' ? 'failed' : s));
    } catch (e2) {
      if (e2.name !== 'AbortError') { setErr(e2); setState('failed'); }
    }
  };
  const close = () => { ctl.current?.abort(); setState('idle'); onClose(); };
  return html`<${Modal} title="Build a snapshot" open=${open} onClose=${close} wide>
    <form class="form" onSubmit=${start}>
      <${Field} label="Name" id="snap-name"><input id="snap-name" required pattern="[A-Za-z0-9][A-Za-z0-9._\\-]*" value=${name} onInput=${(e) => setName(e.target.value)} placeholder="python-tools" /><//>
      <${Field} label="Recipe" id="snap-recipe" hint="A Dockerfile subset: FROM, RUN, ENV, WORKDIR (docs/SANDBOX.md)."><textarea id="snap-recipe" class="mono" rows="6" value=${recipe} onInput=${(e) => setRecipe(e.target.value)}></textarea><//>
      ${state !== 'idle' && html`<div class="build-log-head"><span>Build log</span><${Badge} status=${state} /></div>
        <pre class="code build-log" ref=${logRef} aria-live="polite" tabindex="0">${log || 'Waiting for output…'}</pre>`}
      <${ErrorNote} error=${err} />
      <div class="form-actions"><button type="button" class="ghost" onClick=${close}>${state === 'building' ? 'Cancel' : 'Close'}</button>
        <button type="submit" class="primary" disabled=${state === 'building' || !name.trim()}>${state === 'building' ? 'Building…' : 'Build'}</button></div>
    </form>
  <//>`;
}
