// Environments: list, create, archive; the config shown as the server keeps it.
import { useState } from 'preact/hooks';
import { html, Empty, ErrorNote, PageHead, Spinner, Modal, Field, CopyId, useLoad, useAction, toast } from '../ui.js';
import { get, post, qs } from '../api.js';
import { age, pretty } from '../util.js';

export function EnvironmentsPage() {
  const [list, err, reload] = useLoad(() => get('/v1/environments' + qs({ limit: 100 })), []);
  const [creating, setCreating] = useState(false);
  const [open, setOpen] = useState(null);
  const [busy, run] = useAction();
  return html`<section class="page">
    <${PageHead} title="Environments" sub="Where agents' tools run: Warren's own sandboxes (cloud) or your workers (self-hosted).">
      <button type="button" class="primary" onClick=${() => setCreating(true)}>New environment</button>
    <//>
    <${ErrorNote} error=${err} />
    ${list === undefined ? html`<div class="center"><${Spinner} /></div>`
      : list.data.length === 0 ? html`<${Empty} title="No environments yet"><button type="button" class="primary" onClick=${() => setCreating(true)}>New environment</button><//>`
      : html`<div class="table-wrap"><table class="table">
        <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col" class="hide-sm">Network</th><th scope="col" class="num hide-sm">Created</th><th scope="col"><span class="sr-only">Actions</span></th></tr></thead>
        <tbody>${list.data.map((e) => html`<tr key=${e.id}>
          <td class="title-cell"><button type="button" class="link strong" onClick=${() => setOpen(e)}>${e.name}</button><div class="mono faint">${e.id}</div></td>
          <td><span class="pill">${e.config?.type === 'self_hosted' ? 'self-hosted' : e.config?.type}</span></td>
          <td class="hide-sm">${e.config?.networking?.type || '—'}</td>
          <td class="num faint hide-sm">${age(e.created_at)}</td>
          <td class="num"><button type="button" class="ghost small" disabled=${!!busy} aria-label=${`Archive ${e.name}`}
            onClick=${() => run('arch', async () => { await post(`/v1/environments/${e.id}/archive`); reload(); }, 'Environment archived')}>Archive</button></td>
        </tr>`)}</tbody></table></div>`}
    <${Modal} title=${open?.name || ''} open=${!!open} onClose=${() => setOpen(null)}>
      ${open && html`<div class="form"><${CopyId} id=${open.id} /><pre class="code">${pretty(open.config)}</pre></div>`}
    <//>
    <${CreateEnv} open=${creating} onClose=${() => setCreating(false)} onCreated=${reload} />
  </section>`;
}

function CreateEnv({ open, onClose, onCreated }) {
  const [name, setName] = useState('');
  const [type, setType] = useState('cloud');
  const [net, setNet] = useState('unrestricted');
  const [hosts, setHosts] = useState('');
  const [apt, setApt] = useState('');
  const [err, setErr] = useState(null);
  const submit = async (e) => {
    e.preventDefault();
    setErr(null);
    const config = { type };
    if (type === 'cloud') {
      config.networking = net === 'limited' ? { type: 'limited', allowed_hosts: hosts.split(/[\s,]+/).filter(Boolean) } : { type: 'unrestricted' };
      const pk = apt.split(/[\s,]+/).filter(Boolean);
      if (pk.length) config.packages = { type: 'packages', apt: pk };
    }
    try {
      await post('/v1/environments', { name: name.trim(), config });
      toast('Environment created');
      setName('');
      onClose();
      onCreated();
    } catch (e2) {
      setErr(e2);
    }
  };
  return html`<${Modal} title="New environment" open=${open} onClose=${onClose}>
    <form class="form" onSubmit=${submit}>
      <${Field} label="Name" id="env-name"><input id="env-name" required value=${name} onInput=${(e) => setName(e.target.value)} placeholder="python-dev" /><//>
      <fieldset class="radios"><legend>Type</legend>
        <label class="check"><input type="radio" name="env-type" checked=${type === 'cloud'} onChange=${() => setType('cloud')} /> Cloud: Warren runs each session in its own sandbox</label>
        <label class="check"><input type="radio" name="env-type" checked=${type === 'self_hosted'} onChange=${() => setType('self_hosted')} /> Self-hosted: your workers poll for tool calls</label>
      </fieldset>
      ${type === 'cloud' && html`
        <${Field} label="Network" id="env-net"><select id="env-net" value=${net} onChange=${(e) => setNet(e.target.value)}>
          <option value="unrestricted">Unrestricted</option><option value="limited">Limited to listed hosts</option></select><//>
        ${net === 'limited' && html`<${Field} label="Allowed hosts" id="env-hosts" hint="Comma or space separated"><input id="env-hosts" value=${hosts} onInput=${(e) => setHosts(e.target.value)} placeholder="api.github.com pypi.org" /><//>`}
        <${Field} label="apt packages" id="env-apt" hint="Optional, installed into the session's snapshot"><input id="env-apt" value=${apt} onInput=${(e) => setApt(e.target.value)} placeholder="git python3" /><//>`}
      <${ErrorNote} error=${err} />
      <div class="form-actions"><button type="button" class="ghost" onClick=${onClose}>Cancel</button><button type="submit" class="primary">Create</button></div>
    </form>
  <//>`;
}
