// Sandboxes: list with lifecycle actions, the fork tree drawn as a tree, and
// a sandbox page with the same panel as a session's.
import { useMemo, useState } from 'preact/hooks';
import { html, Badge, Empty, ErrorNote, PageHead, Spinner, CopyId, useLoad, useAction } from '../ui.js';
import { get, post, del, qs } from '../api.js';
import { age, shortId } from '../util.js';
import { SandboxView } from './sandbox_panel.js';

const STATES = ['started', 'stopped', 'paused', 'archived'];

async function allSandboxes(state) {
  const out = [];
  let page;
  do {
    const r = await get('/v1/warren/sandboxes' + qs({ limit: 100, page, state }));
    out.push(...r.data);
    page = r.next_page;
  } while (page && out.length < 1000);
  return out;
}

function Actions({ sb, onDone, run, busy }) {
  const act = (verb, label) => run(`${sb.id}:${verb}`, async () => {
    const r = await post(`/v1/warren/sandboxes/${sb.id}/${verb}`, verb === 'fork' ? { count: 1 } : {});
    onDone();
    return r;
  }, label);
  const b = (verb, text, label) => html`<button type="button" class="ghost small" disabled=${!!busy}
    aria-label=${`${text} ${sb.name || sb.id}`} onClick=${() => act(verb, label)}>${busy === `${sb.id}:${verb}` ? '…' : text}</button>`;
  return html`<div class="btn-row">
    ${(sb.state === 'stopped' || sb.state === 'archived') && b('start', 'Start', 'Sandbox started')}
    ${sb.state === 'started' && b('pause', 'Pause', 'Sandbox paused')}
    ${sb.state === 'paused' && b('resume', 'Resume', 'Sandbox resumed')}
    ${(sb.state === 'started' || sb.state === 'paused') && b('stop', 'Stop', 'Sandbox stopped')}
    ${(sb.state === 'started' || sb.state === 'stopped' || sb.state === 'paused') && b('fork', 'Fork', 'Forked')}
  </div>`;
}

function Tree({ list }) {
  const byId = new Map(list.map((s) => [s.id, s]));
  const kids = new Map();
  const roots = [];
  for (const s of list) {
    if (s.parent && byId.has(s.parent)) {
      if (!kids.has(s.parent)) kids.set(s.parent, []);
      kids.get(s.parent).push(s);
    } else roots.push(s);
  }
  const forked = roots.filter((r) => kids.has(r.id));
  if (forked.length === 0) return html`<p class="faint">No forks yet. Fork a sandbox to branch its disk (and memory, when paused) into a copy.</p>`;
  const node = (s) => html`<li key=${s.id}><a class="tree-node" href=${`#/sandboxes/${s.id}`}><${Badge} status=${s.state} label=" " />
      <span>${s.name || shortId(s.id)}</span><span class="faint mono">${shortId(s.id)}</span></a>
    ${kids.has(s.id) && html`<ul>${kids.get(s.id).map(node)}</ul>`}</li>`;
  return html`<ul class="tree" aria-label="Fork tree">${forked.map(node)}</ul>`;
}

export function SandboxesPage() {
  const [state, setState] = useState('');
  const [list, err, reload] = useLoad(() => allSandboxes(state), [state]);
  const [all] = useLoad(() => allSandboxes(''), [list]);
  const [busy, run] = useAction();
  return html`<section class="page">
    <${PageHead} title="Sandboxes" sub="Isolated machines the agents work in.">
      <button type="button" class="ghost" onClick=${reload}>Refresh</button>
    <//>
    <div class="toolbar"><div class="seg" role="group" aria-label="State filter">
      ${['', ...STATES].map((s) => html`<button type="button" key=${s} aria-pressed=${state === s} class=${state === s ? 'on' : ''} onClick=${() => setState(s)}>${s || 'All'}</button>`)}
    </div></div>
    <${ErrorNote} error=${err} />
    ${list === undefined ? html`<div class="center"><${Spinner} /></div>`
      : list.length === 0 ? html`<${Empty} title="No sandboxes"><p>Sessions on cloud environments get one when the agent first uses a tool.</p><//>`
      : html`<div class="table-wrap"><table class="table">
        <thead><tr><th scope="col">State</th><th scope="col">Sandbox</th><th scope="col" class="hide-sm">Snapshot</th><th scope="col" class="hide-sm">Session</th>
          <th scope="col" class="num hide-sm">Active</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${list.map((s) => html`<tr key=${s.id} data-sandbox=${s.id}>
          <td><${Badge} status=${s.state} /></td>
          <td class="title-cell"><a href=${`#/sandboxes/${s.id}`}>${s.name || shortId(s.id)}</a><div class="mono faint">${s.id}</div></td>
          <td class="hide-sm mono">${s.snapshot}</td>
          <td class="hide-sm">${s.labels?.['warren.session_id'] ? html`<a class="mono" href=${`#/sessions/${s.labels['warren.session_id']}`}>${shortId(s.labels['warren.session_id'])}</a>` : html`<span class="faint">—</span>`}</td>
          <td class="num faint hide-sm">${age(s.last_activity_at || s.updated_at)}</td>
          <td class="num"><${Actions} sb=${s} busy=${busy} run=${run} onDone=${reload} /></td>
        </tr>`)}</tbody></table></div>`}
    <h2 class="section-title">Fork tree</h2>
    <div class="card pad">${all ? html`<${Tree} list=${all} />` : html`<${Spinner} />`}</div>
  </section>`;
}

// The chain of ancestors (root first), this sandbox, and its children, nested.
function Lineage({ sb, tree }) {
  const idOf = (x) => (typeof x === 'string' ? x : x?.id);
  const ancestors = [...(tree.ancestors || [])].reverse().map(idOf);
  const children = (tree.children || []).map(idOf);
  let node = html`<li><span class="tree-node current"><${Badge} status=${sb.state} label=" " /><strong>${sb.name || shortId(sb.id)}</strong> <span class="faint">(this)</span></span>
    ${children.length > 0 && html`<ul>${children.map((c) => html`<li key=${c}><a class="tree-node mono" href=${`#/sandboxes/${c}`}>${shortId(c)}</a></li>`)}</ul>`}</li>`;
  for (let i = ancestors.length - 1; i >= 0; i--)
    node = html`<li><a class="tree-node mono" href=${`#/sandboxes/${ancestors[i]}`}>${shortId(ancestors[i])}</a><ul>${node}</ul></li>`;
  return html`<ul class="tree" aria-label="Fork lineage">${node}</ul>`;
}

export function SandboxPage({ id }) {
  const [sb, err, reload, setSb] = useLoad(() => get(`/v1/warren/sandboxes/${id}`), [id]);
  const [tree, , reloadTree] = useLoad(() => get(`/v1/warren/sandboxes/${id}/tree`), [id, sb?.state]);
  const [busy, run] = useAction();
  const fork = () => run('fork', async () => { await post(`/v1/warren/sandboxes/${id}/fork`, { count: 1 }); reloadTree(); }, 'Forked');
  const remove = () => run('delete', async () => { await del(`/v1/warren/sandboxes/${id}`); location.hash = '#/sandboxes'; }, 'Sandbox deleted');
  if (err && !sb) return html`<section class="page"><a href="#/sandboxes" class="back">← Sandboxes</a><${ErrorNote} error=${err} /></section>`;
  if (!sb) return html`<section class="page"><div class="center"><${Spinner} /></div></section>`;
  return html`<section class="page">
    <a href="#/sandboxes" class="back">← Sandboxes</a>
    <${PageHead} title=${sb.name || (sb.parent ? `Fork of ${shortId(sb.parent)}` : 'Sandbox')} sub=${html`<${CopyId} id=${sb.id} />`}>
      <button type="button" class="ghost" disabled=${!!busy || sb.state === 'archived'} onClick=${fork}>Fork</button>
      <button type="button" class="danger-ghost" disabled=${!!busy} onClick=${() => confirm('Delete this sandbox and its files?') && remove()}>Delete</button>
    <//>
    <div class="grid-2">
      <div class="card"><${SandboxView} sandbox=${sb} title="Details" onChange=${setSb} /></div>
      <div class="card pad"><h2 class="panel-title">Lineage</h2>
        ${tree ? html`<${Lineage} sb=${sb} tree=${tree} />` : html`<${Spinner} />`}
      </div>
    </div>
  </section>`;
}
