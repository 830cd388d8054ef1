// Session page: the live event stream (one multiplexed stream), Markdown
// agent text, folded thinking, tool calls with folded outputs, approvals,
// the message box and Interrupt; the sandbox panel beside it.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { html, Badge, ErrorNote, Spinner, CopyId, useLoad, toast } from '../ui.js';
import { get, post } from '../api.js';
import { EventStream } from '../stream.js';
import { markdown, clock, cost, tokens, pretty, textOf, age } from '../util.js';
import { SandboxPanel } from './sandbox_panel.js';

const TOOL_USE = new Set(['agent.tool_use', 'agent.custom_tool_use', 'agent.mcp_tool_use']);
const TOOL_RESULT = new Set(['agent.tool_result', 'user.tool_result', 'user.custom_tool_result', 'agent.mcp_tool_result']);
const HIDDEN = new Set(['span.model_request_start', 'user.tool_confirmation', 'session.status_run_started', 'session.updated', 'session.usage']);

function Markdown({ text }) {
  return html`<div class="md" dangerouslySetInnerHTML=${{ __html: markdown(text) }}></div>`;
}

function plainError(err) {
  if (!err) return 'Something went wrong.';
  const t = err.type || '';
  const m = err.message || '';
  const words = {
    overloaded_error: 'The model is overloaded.',
    rate_limit_error: 'The model provider is rate limiting us.',
    authentication_error: 'The model provider rejected the credentials.',
    billing_error: 'The model provider refused for billing reasons.',
    model_request_failed_error: 'The call to the model failed.',
  };
  return [words[t], m].filter(Boolean).join(' ') || t;
}

function StatusLine({ ev }) {
  let text, tone;
  switch (ev.type) {
    case 'session.status_running': text = 'Agent is working'; tone = 'run'; break;
    case 'session.status_idle': {
      const r = ev.stop_reason?.type;
      text = r === 'requires_action' ? 'Waiting for you' : r === 'end_turn' ? 'Turn finished' : r === 'budget_reached'
        ? 'Stopped: budget reached' : r === 'retries_exhausted' ? 'Stopped: the model kept failing' : 'Idle';
      tone = r === 'requires_action' ? 'warn' : 'idle';
      break;
    }
    case 'session.status_rescheduled': text = 'Rescheduled, retrying'; tone = 'warn'; break;
    case 'session.status_terminated': text = 'Session ended'; tone = 'bad'; break;
    case 'user.interrupt': text = 'You interrupted the agent'; tone = 'warn'; break;
    default: text = ev.type; tone = 'muted';
  }
  return html`<div class=${`status-line tone-${tone}`} data-id=${ev.id} data-event=${ev.type}><span class="dot"></span><span>${text}</span><time class="faint">${clock(ev.processed_at || ev.created_at)}</time></div>`;
}

function ToolCall({ ev, result, confirmation, pending, interrupted, sid }) {
  const [denying, setDenying] = useState(false);
  const [reason, setReason] = useState('');
  const [busy, setBusy] = useState(false);
  const answer = async (verdict) => {
    setBusy(true);
    try {
      const e = { type: 'user.tool_confirmation', tool_use_id: ev.id, result: verdict };
      if (verdict === 'deny' && reason.trim()) e.deny_message = reason.trim();
      await post(`/v1/sessions/${sid}/events`, { events: [e] });
      toast(verdict === 'allow' ? 'Approved' : 'Denied');
      setDenying(false);
    } catch (err) {
      toast(err.message, 'bad');
    } finally {
      setBusy(false);
    }
  };
  const input = ev.input || {};
  const summary = input.command || input.file_path || input.path || input.pattern || input.url || input.query || '';
  const isErr = result && (result.is_error || result.type === 'agent.tool_result' && result.is_error);
  const out = result ? textOf(result.content ?? result.output ?? '') : '';
  const state = result ? (isErr ? 'failed' : 'done') : confirmation?.result === 'deny' ? 'denied' : interrupted ? 'interrupted'
    : pending ? 'needs approval' : 'running';
  const tone = { failed: 'bad', done: 'ok', denied: 'bad', interrupted: 'warn', 'needs approval': 'warn', running: 'run' }[state];
  return html`<article class=${`tool ${pending ? 'tool-pending' : ''}`} data-id=${ev.id} data-event=${ev.type} data-state=${state} aria-label=${`Tool call ${ev.name}`}>
    <header class="tool-head">
      <span class="tool-name mono">${ev.name}</span>
      ${ev.type === 'agent.mcp_tool_use' && html`<span class="faint">via ${ev.mcp_server_name}</span>`}
      <span class="tool-sum mono" title=${typeof summary === 'string' ? summary : ''}>${typeof summary === 'string' ? summary : ''}</span>
      <span class=${`badge tone-${tone}`}><span class="dot"></span>${state}</span>
    </header>
    <details class="fold"><summary>Input</summary><pre class="code">${pretty(input)}</pre></details>
    ${confirmation && html`<div class=${`verdict ${confirmation.result}`}>${confirmation.result === 'allow' ? '✓ Approved' : '✕ Denied'}${confirmation.deny_message ? html`: “${confirmation.deny_message}”` : ''}</div>`}
    ${result && html`<details class="fold"><summary>${isErr ? 'Error output' : 'Output'} <span class="faint">(${out.length} chars)</span></summary><pre class=${`code ${isErr ? 'err' : ''}`}>${out || '(empty)'}</pre></details>`}
    ${pending && html`<div class="approve" role="group" aria-label="Approve or deny this call">
      <p>The agent wants to run <strong>${ev.name}</strong>. Allow it?</p>
      ${denying ? html`<form class="deny-form" onSubmit=${(e) => (e.preventDefault(), answer('deny'))}>
          <label class="sr-only" for=${`deny-${ev.id}`}>Reason for denying</label>
          <input id=${`deny-${ev.id}`} class="deny-msg" placeholder="Tell the agent why (optional)" value=${reason} onInput=${(e) => setReason(e.target.value)} autofocus />
          <button type="submit" class="danger" disabled=${busy}>Deny</button>
          <button type="button" class="ghost" onClick=${() => setDenying(false)}>Cancel</button></form>`
        : html`<div class="btns"><button type="button" class="primary approve-btn" disabled=${busy} onClick=${() => answer('allow')}>Approve</button>
          <button type="button" class="ghost deny-btn" disabled=${busy} onClick=${() => setDenying(true)}>Deny…</button></div>`}
    </div>`}
  </article>`;
}

// What the event log says right now: results and verdicts per call, the
// calls waiting for approval, and the calls still running in the sandbox.
function analyze(events) {
  const results = new Map();
  const confirms = new Map();
  let pendingIds = new Set();
  const interrupted = new Set();
  const uses = [];
  for (const e of events) {
    if (TOOL_USE.has(e.type)) uses.push(e);
    if (e.type === 'user.interrupt') for (const u of uses) if (!results.has(u.id)) interrupted.add(u.id);
    if (TOOL_RESULT.has(e.type)) results.set(e.tool_use_id || e.mcp_tool_use_id || e.custom_tool_use_id, e);
    if (e.type === 'user.tool_confirmation') confirms.set(e.tool_use_id, e);
    if (e.type === 'session.status_idle') pendingIds = new Set(e.stop_reason?.type === 'requires_action' ? e.stop_reason.event_ids || [] : []);
    if (e.type === 'session.status_running') pendingIds = new Set();
  }
  const inflight = uses.filter((u) => !results.has(u.id) && !interrupted.has(u.id) && u.type === 'agent.tool_use'
    && (confirms.get(u.id)?.result === 'allow' || (u.evaluated_permission !== 'ask' && u.evaluated_permission !== 'deny'))).length;
  // Calls the last idle left waiting for a person or a client: a gated call
  // not answered yet, a custom tool without its result.
  const byId = new Map(uses.map((u) => [u.id, u]));
  const waiting = [...pendingIds].filter((id) => {
    const u = byId.get(id);
    if (results.has(id) || interrupted.has(id)) return false;
    return !u || u.type === 'agent.custom_tool_use' || (u.evaluated_permission === 'ask' && !confirms.has(id));
  }).length;
  return { results, confirms, pendingIds, interrupted, inflight, waiting };
}

function Timeline({ events, previews, sid, running, info }) {
  const { results, confirms, pendingIds, interrupted } = info;
  const items = [];
  let lastStatus = null;
  for (const e of events) {
    if (HIDDEN.has(e.type) || TOOL_RESULT.has(e.type)) continue;
    const k = e.id;
    switch (e.type) {
      case 'user.message':
        items.push(html`<div key=${k} class="msg user" data-id=${k} data-event=${e.type}><div class="who">You <time class="faint">${clock(e.created_at || e.processed_at)}</time></div>
          <div class="bubble">${textOf(e.content)}</div></div>`);
        break;
      case 'agent.message':
        items.push(html`<div key=${k} class="msg agent" data-id=${k} data-event=${e.type}><div class="who">Agent <time class="faint">${clock(e.processed_at)}</time></div>
          <${Markdown} text=${textOf(e.content)} /></div>`);
        break;
      case 'agent.thinking':
        items.push(html`<details key=${k} class="thinking" data-id=${k} data-event=${e.type}><summary>Thinking</summary>
          <div class="think-body">${e.thinking || textOf(e.content) || html`<span class="faint">(hidden)</span>`}</div></details>`);
        break;
      case 'session.error':
        items.push(html`<div key=${k} class="note note-bad err-event" role="alert" data-id=${k} data-event=${e.type}>
          <strong>Error.</strong> ${plainError(e.error)}${e.error?.retry_status?.type ? html` <span class="faint">(${e.error.retry_status.type === 'retrying' ? 'retrying' : e.error.retry_status.type})</span>` : ''}</div>`);
        break;
      case 'span.model_request_end': {
        const u = e.model_usage || {};
        items.push(html`<div key=${k} class="usage-line faint mono" data-id=${k} data-event=${e.type}>${e.is_error ? 'model call failed · ' : 'model call · '}
          ${tokens(u.input_tokens)} in · ${tokens(u.output_tokens)} out${u.cache_read_input_tokens ? ` · ${tokens(u.cache_read_input_tokens)} cached` : ''}</div>`);
        break;
      }
      default:
        if (TOOL_USE.has(e.type)) {
          items.push(html`<${ToolCall} key=${k} ev=${e} sid=${sid} result=${results.get(e.id)} confirmation=${confirms.get(e.id)}
            interrupted=${interrupted.has(e.id)}
            pending=${pendingIds.has(e.id) && !confirms.has(e.id) && e.evaluated_permission === 'ask'} />`);
        } else if (e.type.startsWith('session.status_') || e.type === 'user.interrupt') {
          if (lastStatus === e.type && e.type === 'session.status_running') break;
          lastStatus = e.type;
          items.push(html`<${StatusLine} key=${k} ev=${e} />`);
        } else {
          items.push(html`<div key=${k} class="status-line tone-muted" data-id=${k} data-event=${e.type}><span class="dot"></span>${e.type}</div>`);
        }
    }
  }
  for (const [id, p] of previews) {
    if (events.some((e) => e.id === id)) continue;
    items.push(p.type === 'agent.thinking'
      ? html`<div key=${'p' + id} class="thinking preview faint">Thinking…</div>`
      : html`<div key=${'p' + id} class="msg agent preview" data-event="preview"><div class="who">Agent <span class="faint">typing</span></div><${Markdown} text=${p.text} /></div>`);
  }
  if (running) items.push(html`<div key="working" class="working" role="status"><span class="dots"><i></i><i></i><i></i></span> Working…</div>`);
  return items;
}

export function SessionPage({ id }) {
  const [session, err, reload, setSession] = useLoad(() => get(`/v1/sessions/${id}`), [id]);
  const [events, setEvents] = useState([]);
  const [previews, setPreviews] = useState(new Map());
  const [live, setLive] = useState('connecting');
  const [streamErr, setStreamErr] = useState(null);
  const [text, setText] = useState('');
  const [sending, setSending] = useState(false);
  const [panel, setPanel] = useState(() => matchMedia('(min-width: 1100px)').matches);
  const scroller = useRef();
  const stick = useRef(true);

  useEffect(() => {
    setEvents([]);
    let buf = [];
    let raf = 0;
    const flush = () => {
      raf = 0;
      const add = buf;
      buf = [];
      // A client event comes again, same id, once processed: it replaces
      // the queued copy where it stands.
      setEvents((cur) => {
        let at = null;
        const out = cur.slice();
        for (const ev of add) {
          if (ev.processed_at !== null && ev.type.startsWith('user.')) {
            at ??= new Map(out.map((e, i) => [e.id, i]));
            const i = at.get(ev.id);
            if (i !== undefined) { out[i] = ev; continue; }
          }
          if (at) at.set(ev.id, out.length);
          out.push(ev);
        }
        return out;
      });
    };
    const s = new EventStream({
      sessions: [id],
      previews: true,
      on: {
        state: setLive,
        error: (e) => setStreamErr(e.error || e),
        event: (_sid, ev) => {
          buf.push(ev);
          if (!raf) raf = requestAnimationFrame(flush);
          if (ev.type === 'agent.message' || ev.type === 'agent.thinking')
            setPreviews((m) => (m.has(ev.id) ? (m = new Map(m), m.delete(ev.id), m) : m));
          const st = { 'session.status_running': 'running', 'session.status_idle': 'idle', 'session.status_terminated': 'terminated', 'session.status_rescheduled': 'rescheduling' }[ev.type];
          if (st) setSession((cur) => (cur ? { ...cur, status: st } : cur));
          if (ev.type === 'session.status_idle' || ev.type === 'span.model_request_end')
            get(`/v1/sessions/${id}`).then((x) => setSession(x)).catch(() => {});
        },
        preview: (_sid, f) => {
          if (!f) return;
          if (f.type === 'event_start' && f.event?.id)
            setPreviews((m) => new Map(m).set(f.event.id, { type: f.event.type, text: '' }));
          else if (f.type === 'event_delta' && f.event_id)
            setPreviews((m) => {
              const p = m.get(f.event_id);
              if (!p) return m;
              return new Map(m).set(f.event_id, { ...p, text: p.text + (f.delta?.content?.text || '') });
            });
        },
      },
    }).start();
    return () => (s.stop(), raf && cancelAnimationFrame(raf));
  }, [id]);

  useEffect(() => {
    const el = scroller.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  });

  const info = useMemo(() => analyze(events), [events]);
  // Working: the model runs, or an allowed tool call runs in the sandbox
  // (the session itself is idle while a worker executes an approved call).
  const running = session?.status === 'running' || info.inflight > 0;
  const send = async (e) => {
    e?.preventDefault();
    const t = text.trim();
    if (!t) return;
    setSending(true);
    try {
      await post(`/v1/sessions/${id}/events`, { events: [{ type: 'user.message', content: [{ type: 'text', text: t }] }] });
      setText('');
      stick.current = true;
    } catch (e2) {
      toast(e2.message, 'bad');
    } finally {
      setSending(false);
    }
  };
  const interrupt = async () => {
    try {
      await post(`/v1/sessions/${id}/events`, { events: [{ type: 'user.interrupt' }] });
      toast('Interrupt sent');
    } catch (e2) {
      toast(e2.message, 'bad');
    }
  };
  const u = session?.usage || {};
  if (err && !session) return html`<section class="page"><a href="#/sessions" class="back">← Sessions</a><${ErrorNote} error=${err} /></section>`;
  return html`<section class=${`page session-page ${panel ? 'with-panel' : ''}`}>
    <header class="session-head">
      <a href="#/sessions" class="back" aria-label="Back to sessions">←</a>
      <div class="sh-main">
        <h1>${session ? session.title || 'Untitled session' : html`<${Spinner} />`}</h1>
        <div class="sh-meta">
          ${session && (session.status === 'idle' && info.inflight > 0
            ? html`<${Badge} status="running" label="working" />`
            : session.status === 'idle' && info.waiting > 0
              ? html`<${Badge} status="requires_action" label="Requires action" exact />`
              : html`<${Badge} status=${session.status} />`)}
          ${session && html`<span>${session.agent?.name}</span><span class="faint">v${session.agent?.version}</span>`}
          ${session && html`<${CopyId} id=${id} />`}
          ${session && html`<span class="faint" title=${session.created_at}>started ${age(session.created_at)}</span>`}
        </div>
      </div>
      <dl class="sh-stats">
        <div><dt>Input</dt><dd class="mono">${tokens(u.input_tokens)}</dd></div>
        <div><dt>Output</dt><dd class="mono">${tokens(u.output_tokens)}</dd></div>
        <div class="hide-sm"><dt>Cached</dt><dd class="mono">${tokens(u.cache_read_input_tokens)}</dd></div>
        <div><dt>Cost</dt><dd class="mono">${cost(u.list_cost)}</dd></div>
      </dl>
      <div class="sh-actions">
        <span class="live-pill"><${Badge} status=${live} label=${live === 'live' ? 'Live' : live} /></span>
        <button type="button" class="ghost" aria-pressed=${panel} onClick=${() => setPanel(!panel)}>Sandbox</button>
        <button type="button" class="danger-ghost" onClick=${interrupt} disabled=${!running} title="Stop the agent's current turn (Esc)">Interrupt</button>
      </div>
    </header>
    ${streamErr && html`<div class="note note-bad" role="alert">${streamErr.message}</div>`}
    <div class="session-body">
      <div class="session-main">
        <div class="timeline" ref=${scroller} aria-label="Session events" aria-live="polite" tabindex="0"
          onScroll=${(e) => { const el = e.currentTarget; stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80; }}
          onKeyDown=${(e) => e.key === 'Escape' && running && interrupt()}>
          ${events.length === 0 && live !== 'live' ? html`<div class="center"><${Spinner} /></div>` : null}
          ${events.length === 0 && live === 'live' ? html`<div class="empty"><div class="empty-title">No events yet</div><p>Send the first message below.</p></div>` : null}
          <${Timeline} events=${events} previews=${previews} sid=${id} running=${running} info=${info} />
        </div>
        <form class="composer" onSubmit=${send}>
          <label for="composer-text" class="sr-only">Message</label>
          <textarea id="composer-text" rows="2" placeholder=${running ? 'The agent is working — you can still send a message' : 'Message the agent…'}
            value=${text} onInput=${(e) => setText(e.target.value)}
            onKeyDown=${(e) => { if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) send(e); if (e.key === 'Escape' && running) interrupt(); }}
            disabled=${session?.status === 'terminated'}></textarea>
          <button type="submit" class="primary" disabled=${sending || !text.trim()}>Send</button>
        </form>
        <p class="composer-hint faint">Enter sends · Shift+Enter new line · Esc interrupts</p>
      </div>
      ${panel && html`<aside class="panel" aria-label="Sandbox">
        <button type="button" class="icon-btn panel-close" aria-label="Close the sandbox panel" onClick=${() => setPanel(false)}>✕</button>
        <${SandboxPanel} sessionId=${id} /></aside>`}
    </div>
  </section>`;
}
