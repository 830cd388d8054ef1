// Shared UI pieces: status badges, buttons, dialogs, toasts, loaders.
import { html } from 'htm/preact';
import { useEffect, useRef, useState, useCallback } from 'preact/hooks';
import { signal } from './state.js';

export { html };

const STATUS_TONE = {
  running: 'run', started: 'ok', idle: 'idle', rescheduling: 'warn', terminated: 'bad',
  stopped: 'idle', paused: 'warn', archived: 'muted', error: 'bad', failed: 'bad', creating: 'run',
  starting: 'run', stopping: 'run', pausing: 'run', resuming: 'run', forking: 'run', archiving: 'run',
  restoring: 'run', ready: 'ok', building: 'run', requires_action: 'warn', live: 'ok', reconnecting: 'warn',
};

// `exact`: the label as written (badges capitalise every word otherwise).
export function Badge({ status, label, exact }) {
  const tone = STATUS_TONE[status] || 'muted';
  return html`<span class=${`badge tone-${tone}${exact ? ' exact' : ''}`}><span class="dot" aria-hidden="true"></span>${label || status || 'unknown'}</span>`;
}

export function Spinner({ label = 'Loading' }) {
  return html`<span class="spinner" role="status" aria-label=${label}></span>`;
}

export function Empty({ title, children }) {
  return html`<div class="empty"><div class="empty-title">${title}</div>${children}</div>`;
}

export function ErrorNote({ error }) {
  if (!error) return null;
  return html`<div class="note note-bad" role="alert">${error.message || String(error)}</div>`;
}

export function CopyId({ id }) {
  const [ok, setOk] = useState(false);
  return html`<button type="button" class="id-chip" title="Copy ${id}" aria-label=${`Copy id ${id}`}
    onClick=${async (e) => {
      e.stopPropagation();
      e.preventDefault();
      try {
        await navigator.clipboard.writeText(id);
        setOk(true);
        setTimeout(() => setOk(false), 1200);
      } catch {
        /* clipboard blocked: the id stays visible */
      }
    }}>${ok ? 'copied' : id}</button>`;
}

// A modal dialog on <dialog>: Esc closes it, focus stays inside.
export function Modal({ title, open, onClose, children, wide }) {
  const ref = useRef();
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (open && !d.open) d.showModal();
    if (!open && d.open) d.close();
  }, [open]);
  return html`<dialog ref=${ref} class=${wide ? 'modal wide' : 'modal'} aria-label=${title}
      onClose=${() => onClose?.()} onCancel=${() => onClose?.()}>
    ${open && html`<div class="modal-head"><h2>${title}</h2>
      <button type="button" class="icon-btn" aria-label="Close" onClick=${() => onClose?.()}>✕</button></div>
      <div class="modal-body">${children}</div>`}
  </dialog>`;
}

// Toasts: short confirmations and errors, announced to screen readers.
export const toasts = signal([]);
let toastId = 0;
export function toast(message, tone = 'ok') {
  const id = ++toastId;
  toasts.set([...toasts.get(), { id, message, tone }].slice(-3));
  setTimeout(() => toasts.set(toasts.get().filter((t) => t.id !== id)), tone === 'bad' ? 7000 : 3500);
}
// A toast belongs to the page it was raised on.
addEventListener('hashchange', () => toasts.set([]));
export function Toasts() {
  const list = toasts.use();
  return html`<div class="toasts" role="status" aria-live="polite">
    ${list.map((t) => html`<div key=${t.id} class=${`toast tone-${t.tone}`}>${t.message}</div>`)}
  </div>`;
}

// Loads with `fn` (re-run when deps change); returns [data, error, reload, setData].
export function useLoad(fn, deps) {
  const [state, setState] = useState({ data: undefined, error: null, loading: true });
  const gen = useRef(0);
  const load = useCallback(async () => {
    const g = ++gen.current;
    setState((s) => ({ ...s, loading: true }));
    try {
      const data = await fn();
      if (g === gen.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (error.name === 'AbortError') return;
      if (g === gen.current) setState((s) => ({ ...s, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    load();
  }, [load]);
  return [state.data, state.error, load, (d) => setState((s) => ({ ...s, data: typeof d === 'function' ? d(s.data) : d })), state.loading];
}

// Runs an action with a busy flag and a toast on failure.
export function useAction() {
  const [busy, setBusy] = useState(null);
  const run = async (name, fn, okMessage) => {
    setBusy(name);
    try {
      const r = await fn();
      if (okMessage) toast(okMessage);
      return r;
    } catch (e) {
      toast(e.message || String(e), 'bad');
      return undefined;
    } finally {
      setBusy(null);
    }
  };
  return [busy, run];
}

export function PageHead({ title, sub, children }) {
  return html`<header class="page-head">
    <div><h1>${title}</h1>${sub && html`<p class="sub">${sub}</p>`}</div>
    <div class="actions">${children}</div>
  </header>`;
}

export function Field({ label, hint, children, id }) {
  return html`<label class="field" for=${id}><span class="label">${label}</span>${children}${hint && html`<span class="hint">${hint}</span>`}</label>`;
}
