// Sessions list: live status, title, agent, environment, age and cost;
// filters; paging; create a session with its first message.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { html, Badge, Empty, ErrorNote, PageHead, Modal, Field, Spinner, useLoad, toast } from '../ui.js';
import { get, post, qs } from '../api.js';
import { EventStream } from '../stream.js';
import { age, cost, navigate, tokens } from '../util.js';
import { attentionOf, ATTENTION_TYPES } from '../attention.js';

const STATUSES = ['running', 'idle', 'rescheduling', 'terminated'];

export function SessionsPage() {
  const [status, setStatus] = useState('');
  const [agent, setAgent] = useState('');
  const [archived, setArchived] = useState(false);
  const [pages, setPages] = useState([undefined]); // page cursors; last = current
  const [creating, setCreating] = useState(false);
  const [live, setLive] = useState('connecting');
  const [, tick] = useState(0);
  const page = pages[pages.length - 1];
  const [list, error, reload, setList, loading] = useLoad(
    () => get('/v1/sessions' + qs({ limit: 20, page, 'statuses[]': status ? [status] : [], agent_id: agent, include_archived: archived ? 'true' : '' })),
    [page, status, agent, archived],
  );
  const [agents] = useLoad(() => get('/v1/agents?limit=100'), []);
  const [envs] = useLoad(() => get('/v1/environments?limit=100'), []);
  const envName = useMemo(() => new Map((envs?.data || []).map((e) => [e.id, e.name])), [envs]);

  // Live: one multiplexed stream with session change frames.
  useEffect(() => {
    const s = new EventStream({
      sessionsList: true,
      on: {
        state: setLive,
        session: (obj) =>
          setList((cur) => {
            if (!cur) return cur;
            const i = cur.data.findIndex((x) => x.id === obj.id);
            // Deleted (or archived while archived ones are hidden): the row goes.
            if (obj.type === 'session_deleted' || (obj.archived_at && !archived))
              return i >= 0 ? { ...cur, data: cur.data.filter((x) => x.id !== obj.id) } : cur;
            if (i >= 0) {
              const data = cur.data.slice();
              data[i] = { ...data[i], ...obj };
              return { ...cur, data };
            }
            // A new session shows up on the first page when it passes the filters.
            if (page === undefined && (!status || obj.status === status) && (!agent || obj.agent?.id === agent))
              return { ...cur, data: [obj, ...cur.data].slice(0, 20) };
            return cur;
          }),
      },
    }).start();
    const t = setInterval(() => tick((n) => n + 1), 30000);
    return () => (s.stop(), clearInterval(t));
  }, [page, status, agent, archived]);

  // An idle session may be waiting for someone (requires_action) or for a
  // worker running an allowed call: read its newest status and tool events
  // (one request per idle row, again when a frame says it changed).
  const [attention, setAttention] = useState(() => new Map());
  const asked = useRef(new Map()); // id -> updated_at of the answer we hold or wait for
  useEffect(() => {
    for (const row of list?.data || []) {
      const key = `${row.status}|${row.updated_at}`;
      if (asked.current.get(row.id) === key) continue;
      asked.current.set(row.id, key);
      if (row.status !== 'idle') {
        setAttention((m) => (m.has(row.id) ? (m = new Map(m), m.delete(row.id), m) : m));
        continue;
      }
      get(`/v1/sessions/${row.id}/events` + qs({ order: 'desc', limit: 100, 'types[]': ATTENTION_TYPES }))
        .then((r) => {
          if (asked.current.get(row.id) !== key) return; // a newer answer is on its way
          const a = attentionOf(r.data);
          setAttention((m) => (m.get(row.id) === a ? m : new Map(m).set(row.id, a)));
        })
        .catch(() => {});
    }
  }, [list]);
  const statusBadge = (s) => {
    const a = s.status === 'idle' ? attention.get(s.id) : null;
    if (a === 'requires_action') return html`<${Badge} status="requires_action" label="Requires action" exact />`;
    if (a === 'working') return html`<${Badge} status="running" label="Working" exact />`;
    return html`<${Badge} status=${s.status} />`;
  };

  const resetPaging = () => setPages([undefined]);
  return html`<section class="page">
    <${PageHead} title="Sessions" sub="Every conversation with an agent, live.">
      <span class="live-pill"><${Badge} status=${live} label=${live === 'live' ? 'Live' : live} /></span>
      <button type="button" class="primary" onClick=${() => setCreating(true)} accesskey="n">New session</button>
    <//>
    <div class="toolbar" role="search">
      <div class="seg" role="group" aria-label="Status filter">
        ${['', ...STATUSES].map((s) => html`<button type="button" key=${s} aria-pressed=${status === s}
          class=${status === s ? 'on' : ''} onClick=${() => (setStatus(s), resetPaging())}>${s || 'All'}</button>`)}
      </div>
      <label class="inline-field"><span class="sr-only">Agent</span>
        <select aria-label="Filter by agent" value=${agent} onChange=${(e) => (setAgent(e.target.value), resetPaging())}>
          <option value="">All agents</option>
          ${(agents?.data || []).map((a) => html`<option value=${a.id}>${a.name}</option>`)}
        </select></label>
      <label class="check"><input type="checkbox" checked=${archived} onChange=${(e) => (setArchived(e.target.checked), resetPaging())} /> Archived</label>
    </div>
    <${ErrorNote} error=${error} />
    ${list === undefined ? html`<div class="center"><${Spinner} /></div>`
      : list.data.length === 0 ? html`<${Empty} title="No sessions yet">
          <p>Start one: pick an agent and an environment and say what to do.</p>
          <button type="button" class="primary" onClick=${() => setCreating(true)}>New session</button><//>`
      : html`<div class="table-wrap"><table class="table sessions">
        <thead><tr><th scope="col">Status</th><th scope="col">Title</th><th scope="col" class="hide-sm">Agent</th>
          <th scope="col" class="hide-sm">Environment</th><th scope="col" class="hide-sm">Tokens</th><th scope="col" class="num hide-sm">Cost</th><th scope="col" class="num hide-sm">Age</th></tr></thead>
        <tbody>${list.data.map((s) => html`<tr key=${s.id} class="row-link" data-session=${s.id}>
          <td>${statusBadge(s)}</td>
          <td class="title-cell"><a href=${`#/sessions/${s.id}`}>${s.title || html`<span class="muted">Untitled</span>`}</a>
            <div class="mono faint hide-sm">${s.id}</div>
            <div class="show-sm faint small">${s.agent?.name || ''} · ${cost(s.usage?.list_cost)} · ${age(s.created_at)}</div></td>
          <td class="hide-sm">${s.agent?.name || '—'}${s.agent?.version ? html` <span class="faint">v${s.agent.version}</span>` : ''}</td>
          <td class="hide-sm">${envName.get(s.environment_id) || html`<span class="mono faint">${s.environment_id}</span>`}</td>
          <td class="hide-sm mono">${tokens((s.usage?.input_tokens || 0) + (s.usage?.output_tokens || 0))}</td>
          <td class="num mono hide-sm">${cost(s.usage?.list_cost)}</td>
          <td class="num faint hide-sm" title=${s.created_at}>${age(s.created_at)}</td>
        </tr>`)}</tbody></table></div>
        <nav class="pager" aria-label="Pages">
          <button type="button" class="ghost" disabled=${pages.length < 2 || loading} onClick=${() => setPages(pages.slice(0, -1))}>← Newer</button>
          <span class="faint">Page ${pages.length}</span>
          <button type="button" class="ghost" disabled=${!list.next_page || loading} onClick=${() => setPages([...pages, list.next_page])}>Older →</button>
        </nav>`}
    <${CreateSession} open=${creating} onClose=${() => setCreating(false)} agents=${agents?.data || []} envs=${envs?.data || []} />
  </section>`;
}

function CreateSession({ open, onClose, agents, envs }) {
  const [agent, setAgent] = useState('');
  const [env, setEnv] = useState('');
  const [title, setTitle] = useState('');
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState(null);
  useEffect(() => {
    if (open) {
      setAgent((a) => a || agents[0]?.id || '');
      setEnv((e) => e || envs[0]?.id || '');
    }
  }, [open, agents, envs]);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const s = await post('/v1/sessions', { agent, environment_id: env, ...(title.trim() ? { title: title.trim() } : {}) });
      if (message.trim())
        await post(`/v1/sessions/${s.id}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: message.trim() }] }] });
      toast('Session started');
      setTitle('');
      setMessage('');
      onClose();
      navigate(`#/sessions/${s.id}`);
    } catch (e2) {
      setErr(e2);
    } finally {
      setBusy(false);
    }
  };
  return html`<${Modal} title="New session" open=${open} onClose=${onClose}>
    <form onSubmit=${submit} class="form">
      ${agents.length === 0 && html`<div class="note">No agents yet: <a href="#/agents">create one</a> first.</div>`}
      <${Field} label="Agent" id="ns-agent"><select id="ns-agent" value=${agent} onChange=${(e) => setAgent(e.target.value)} required>
        ${agents.map((a) => html`<option value=${a.id}>${a.name} (v${a.version})</option>`)}</select><//>
      <${Field} label="Environment" id="ns-env"><select id="ns-env" value=${env} onChange=${(e) => setEnv(e.target.value)} required>
        ${envs.map((x) => html`<option value=${x.id}>${x.name} · ${x.config?.type || ''}</option>`)}</select><//>
      <${Field} label="Title" id="ns-title" hint="Optional"><input id="ns-title" value=${title} onInput=${(e) => setTitle(e.target.value)} placeholder="Fix the flaky test" /><//>
      <${Field} label="First message" id="ns-msg" hint="Sent as soon as the session exists. Ctrl+Enter to start.">
        <textarea id="ns-msg" rows="4" value=${message} onInput=${(e) => setMessage(e.target.value)}
          onKeyDown=${(e) => e.key === 'Enter' && (e.ctrlKey || e.metaKey) && submit(e)} placeholder="What should the agent do?"></textarea><//>
      <${ErrorNote} error=${err} />
      <div class="form-actions"><button type="button" class="ghost" onClick=${onClose}>Cancel</button>
        <button type="submit" class="primary" disabled=${busy || !agent || !env}>${busy ? 'Starting…' : 'Start session'}</button></div>
    </form>
  <//>`;
}
