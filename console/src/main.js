// The console's shell: login gate, navigation, hash routes, theme.
import './csp.js';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { html, Toasts, Field } from './ui.js';
import { getKey, setKey, clearKey, get, onUnauthorized } from './api.js';
import { SessionsPage } from './pages/sessions.js';
import { SessionPage } from './pages/session.js';
import { SandboxesPage, SandboxPage } from './pages/sandboxes.js';
import { SnapshotsPage } from './pages/snapshots.js';
import { AgentsPage, AgentPage } from './pages/agents.js';
import { EnvironmentsPage } from './pages/environments.js';
import './style.css';
import '@xterm/xterm/css/xterm.css';

const THEME = 'warren.theme';
function applyTheme(t) {
  document.documentElement.dataset.theme = t;
}
applyTheme(localStorage.getItem(THEME) || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));

function useHash() {
  const [h, setH] = useState(location.hash || '#/sessions');
  useEffect(() => {
    const f = () => setH(location.hash || '#/sessions');
    addEventListener('hashchange', f);
    return () => removeEventListener('hashchange', f);
  }, []);
  return h;
}

function route(hash) {
  const parts = hash.replace(/^#\/?/, '').split('?')[0].split('/').filter(Boolean).map(decodeURIComponent);
  const [a, b] = parts;
  switch (a) {
    case 'sessions': return b ? html`<${SessionPage} id=${b} key=${b} />` : html`<${SessionsPage} />`;
    case 'sandboxes': return b ? html`<${SandboxPage} id=${b} key=${b} />` : html`<${SandboxesPage} />`;
    case 'snapshots': return html`<${SnapshotsPage} />`;
    case 'agents': return b ? html`<${AgentPage} id=${b} key=${b} />` : html`<${AgentsPage} />`;
    case 'environments': return html`<${EnvironmentsPage} />`;
    default: return html`<${SessionsPage} />`;
  }
}

const NAV = [
  ['sessions', 'Sessions', 'M4 5h16v10H8l-4 4z'],
  ['agents', 'Agents', 'M12 3a4 4 0 110 8 4 4 0 010-8zm-7 17a7 7 0 0114 0'],
  ['environments', 'Environments', 'M3 7l9-4 9 4-9 4zm0 5l9 4 9-4M3 17l9 4 9-4'],
  ['sandboxes', 'Sandboxes', 'M4 4h16v16H4zM4 9h16M9 9v11'],
  ['snapshots', 'Snapshots', 'M4 7h4l2-3h4l2 3h4v12H4zM12 10a3.5 3.5 0 110 7 3.5 3.5 0 010-7'],
];

function Icon({ d }) {
  return html`<svg viewBox="0 0 24 24" width="18" height="18" aria-hidden="true" fill="none" stroke="currentColor" stroke-width="1.7" stroke-linecap="round" stroke-linejoin="round"><path d=${d} /></svg>`;
}

function Logo() {
  return html`<svg viewBox="0 0 32 32" width="26" height="26" aria-hidden="true"><rect width="32" height="32" rx="8" fill="var(--accent)"/><path d="M7 10l3.5 12L16 12l5.5 10L25 10" fill="none" stroke="#fff" stroke-width="2.6" stroke-linecap="round" stroke-linejoin="round"/></svg>`;
}

function Shell({ onLogout }) {
  const hash = useHash();
  const [theme, setTheme] = useState(document.documentElement.dataset.theme);
  const [menu, setMenu] = useState(false);
  const section = hash.replace(/^#\/?/, '').split('/')[0] || 'sessions';
  useEffect(() => setMenu(false), [hash]);
  const toggleTheme = () => {
    const t = theme === 'dark' ? 'light' : 'dark';
    localStorage.setItem(THEME, t);
    applyTheme(t);
    setTheme(t);
  };
  return html`<div class=${menu ? 'shell menu-open' : 'shell'}>
    <a class="skip" href="#main">Skip to content</a>
    <aside class="side">
      <div class="brand"><${Logo} /><span>Warren</span>
        <button type="button" class="icon-btn menu-btn" aria-label="Menu" aria-expanded=${menu} onClick=${() => setMenu(!menu)}>☰</button></div>
      <nav aria-label="Main">
        <ul>${NAV.map(([k, label, d]) => html`<li key=${k}><a href=${`#/${k}`} class=${section === k ? 'active' : ''}
          aria-current=${section === k ? 'page' : undefined}><${Icon} d=${d} />${label}</a></li>`)}</ul>
      </nav>
      <div class="side-foot">
        <button type="button" class="ghost small" onClick=${toggleTheme} aria-label="Switch colour theme">${theme === 'dark' ? '☀ Light' : '☾ Dark'}</button>
        <button type="button" class="ghost small" onClick=${onLogout}>Sign out</button>
      </div>
    </aside>
    <main id="main" tabindex="-1">${route(hash)}</main>
    <${Toasts} />
  </div>`;
}

function Login({ onLogin, reason }) {
  const [key, setK] = useState('');
  const [err, setErr] = useState(reason || '');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const k = key.trim();
    if (!k) return setErr('Paste an API key.');
    setBusy(true);
    setErr('');
    setKey(k);
    try {
      await get('/v1/sessions?limit=1');
      onLogin();
    } catch (e2) {
      clearKey();
      setErr(e2.status === 401 ? 'That key was not accepted. Check it and try again.' : e2.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<div class="login-wrap">
    <form class="login card" onSubmit=${submit} aria-labelledby="login-title">
      <div class="brand big"><${Logo} /><span>Warren</span></div>
      <h1 id="login-title">Sign in to the console</h1>
      <p class="sub">Paste an API key. It stays in this browser tab only (session storage) and is sent as a header, never in a URL.</p>
      <${Field} label="API key" id="api-key">
        <input id="api-key" name="api-key" type="password" autocomplete="off" spellcheck="false" placeholder="sk-…"
          value=${key} onInput=${(e) => setK(e.target.value)} autofocus />
      <//>
      ${err && html`<div class="note note-bad" role="alert">${err}</div>`}
      <button type="submit" class="primary wide" disabled=${busy}>${busy ? 'Checking…' : 'Sign in'}</button>
      <p class="hint">Create a key on the server with <code>warren keys create api</code>.</p>
    </form>
  </div>`;
}

function App() {
  const [authed, setAuthed] = useState(!!getKey());
  const [reason, setReason] = useState('');
  useEffect(() => onUnauthorized(() => {
    clearKey();
    setReason('Your API key was rejected; sign in again.');
    setAuthed(false);
  }), []);
  if (!authed) return html`<${Login} reason=${reason} onLogin=${() => { setReason(''); setAuthed(true); }} />`;
  return html`<${Shell} onLogout=${() => { clearKey(); setAuthed(false); }} />`;
}

render(html`<${App} />`, document.getElementById('app'));
