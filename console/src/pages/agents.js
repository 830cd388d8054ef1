// Agents: list, create, and an agent page with its version history.
import { useState } from 'preact/hooks';
import { html, Empty, ErrorNote, PageHead, Spinner, Modal, Field, CopyId, useLoad, toast } from '../ui.js';
import { get, post, qs } from '../api.js';
import { age, when, navigate } from '../util.js';

function toolsSummary(a) {
  const t = a.tools || [];
  if (!t.length) return 'no tools';
  return t.map((x) => (x.type === 'agent_toolset_20260401' ? 'built-in tools' + (x.default_config?.permission_policy?.type === 'always_ask' ? ' (ask)' : '') : x.type === 'custom' ? x.name : x.mcp_server_name || x.type)).join(', ');
}

export function AgentsPage() {
  const [archived, setArchived] = useState(false);
  const [list, err, reload] = useLoad(() => get('/v1/agents' + qs({ limit: 100, include_archived: archived ? 'true' : '' })), [archived]);
  const [creating, setCreating] = useState(false);
  return html`<section class="page">
    <${PageHead} title="Agents" sub="Versioned definitions: model, instructions and tools.">
      <button type="button" class="primary" onClick=${() => setCreating(true)}>New agent</button>
    <//>
    <div class="toolbar"><label class="check"><input type="checkbox" checked=${archived} onChange=${(e) => setArchived(e.target.checked)} /> Show archived</label></div>
    <${ErrorNote} error=${err} />
    ${list === undefined ? html`<div class="center"><${Spinner} /></div>`
      : list.data.length === 0 ? html`<${Empty} title="No agents yet"><p>An agent is a model with instructions and tools.</p>
          <button type="button" class="primary" onClick=${() => setCreating(true)}>New agent</button><//>`
      : html`<div class="cards">${list.data.map((a) => html`<a key=${a.id} class="card link-card" href=${`#/agents/${a.id}`}>
          <div class="lc-head"><strong>${a.name}</strong><span class="pill">v${a.version}</span></div>
          <div class="faint small">${a.description || a.system?.slice(0, 120) || 'No instructions'}</div>
          <div class="lc-foot"><span class="mono">${a.model?.id || a.model}</span><span class="faint">${toolsSummary(a)}</span><span class="faint">${age(a.updated_at)}</span></div>
        </a>`)}</div>`}
    <${CreateAgent} open=${creating} onClose=${() => setCreating(false)} onCreated=${(a) => { reload(); navigate(`#/agents/${a.id}`); }} />
  </section>`;
}

function CreateAgent({ open, onClose, onCreated }) {
  const [f, setF] = useState({ name: '', model: 'claude-sonnet-4-6', system: '', tools: true, ask: false });
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (e) => setF({ ...f, [k]: e.target.type === 'checkbox' ? e.target.checked : e.target.value });
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const body = { name: f.name.trim(), model: f.model.trim() };
      if (f.system.trim()) body.system = f.system;
      if (f.tools) body.tools = [{ type: 'agent_toolset_20260401', default_config: { permission_policy: { type: f.ask ? 'always_ask' : 'always_allow' } } }];
      const a = await post('/v1/agents', body);
      toast(`Agent ${a.name} created`);
      onClose();
      onCreated(a);
    } catch (e2) {
      setErr(e2);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title="New agent" open=${open} onClose=${onClose}>
    <form class="form" onSubmit=${submit}>
      <${Field} label="Name" id="ag-name"><input id="ag-name" required value=${f.name} onInput=${set('name')} placeholder="Code reviewer" /><//>
      <${Field} label="Model" id="ag-model"><input id="ag-model" required class="mono" value=${f.model} onInput=${set('model')} /><//>
      <${Field} label="Instructions" id="ag-system" hint="The system prompt. Optional."><textarea id="ag-system" rows="4" value=${f.system} onInput=${set('system')}></textarea><//>
      <label class="check"><input type="checkbox" checked=${f.tools} onChange=${set('tools')} /> Built-in tools (bash, read, write, edit, glob, grep)</label>
      <label class="check"><input type="checkbox" checked=${f.ask} disabled=${!f.tools} onChange=${set('ask')} /> Ask me before each tool call</label>
      <${ErrorNote} error=${err} />
      <div class="form-actions"><button type="button" class="ghost" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${busy}>${busy ? 'Creating…' : 'Create agent'}</button></div>
    </form>
  <//>`;
}

export function AgentPage({ id }) {
  const [agent, err, reload] = useLoad(() => get(`/v1/agents/${id}`), [id]);
  const [versions, , reloadV] = useLoad(() => get(`/v1/agents/${id}/versions?limit=100`), [id]);
  const [editing, setEditing] = useState(false);
  const [system, setSystem] = useState('');
  const [sel, setSel] = useState(null);
  const save = async (e) => {
    e.preventDefault();
    try {
      await post(`/v1/agents/${id}`, { version: agent.version, system });
      toast('New version saved');
      setEditing(false);
      reload();
      reloadV();
    } catch (e2) {
      toast(e2.message, 'bad');
    }
  };
  if (err && !agent) return html`<section class="page"><a href="#/agents" class="back">← Agents</a><${ErrorNote} error=${err} /></section>`;
  if (!agent) return html`<section class="page"><div class="center"><${Spinner} /></div></section>`;
  const shown = sel || agent;
  return html`<section class="page">
    <a href="#/agents" class="back">← Agents</a>
    <${PageHead} title=${agent.name} sub=${html`<${CopyId} id=${agent.id} /> <span class="pill">v${agent.version}</span>`}>
      <button type="button" class="ghost" onClick=${() => (setSystem(agent.system || ''), setEditing(true))}>Edit instructions</button>
    <//>
    <div class="grid-2">
      <div class="card pad">
        <h2 class="panel-title">${sel ? `Version ${sel.version}` : 'Current version'}</h2>
        <dl class="kv">
          <div><dt>Model</dt><dd class="mono">${shown.model?.id || shown.model}</dd></div>
          <div><dt>Tools</dt><dd>${toolsSummary(shown)}</dd></div>
          <div><dt>Updated</dt><dd>${when(shown.updated_at || shown.created_at)}</dd></div>
        </dl>
        <h3 class="sub-title">Instructions</h3>
        <pre class="code prewrap">${shown.system || '(none)'}</pre>
      </div>
      <div class="card pad">
        <h2 class="panel-title">Version history</h2>
        ${!versions ? html`<${Spinner} />` : html`<ol class="versions">${versions.data.map((v) => html`<li key=${v.version}>
          <button type="button" class=${`version ${shown.version === v.version ? 'on' : ''}`} onClick=${() => setSel(v.version === agent.version ? null : v)}
            aria-pressed=${shown.version === v.version}><span class="pill">v${v.version}</span>
            <span class="faint">${when(v.updated_at || v.created_at)}</span><span class="v-sum">${(v.system || '').slice(0, 60) || '—'}</span></button></li>`)}</ol>`}
      </div>
    </div>
    <${Modal} title="Edit instructions" open=${editing} onClose=${() => setEditing(false)}>
      <form class="form" onSubmit=${save}>
        <${Field} label="Instructions" id="ag-edit" hint="Saving creates a new version; running sessions keep theirs."><textarea id="ag-edit" rows="8" value=${system} onInput=${(e) => setSystem(e.target.value)}></textarea><//>
        <div class="form-actions"><button type="button" class="ghost" onClick=${() => setEditing(false)}>Cancel</button><button type="submit" class="primary">Save version</button></div>
      </form>
    <//>
  </section>`;
}
