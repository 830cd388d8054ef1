// The API client: the key lives in sessionStorage (never in a URL), every
// call sends it as x-api-key, and failures become ApiError with the
// server's message in plain words.
const KEY = 'warren.api_key';

export const getKey = () => sessionStorage.getItem(KEY);
export const setKey = (k) => sessionStorage.setItem(KEY, k);
export const clearKey = () => sessionStorage.removeItem(KEY);

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

const PLAIN = {
  authentication_error: 'The API key was not accepted.',
  permission_error: 'This key may not do that.',
  not_found_error: 'Not found.',
  rate_limit_error: 'Too many requests; try again in a moment.',
  overloaded_error: 'The service is busy; try again in a moment.',
};

export function headers(extra = {}) {
  return { 'x-api-key': getKey() || '', 'anthropic-version': '2023-06-01', ...extra };
}

async function errorFrom(res) {
  let type = 'api_error';
  let message = `${res.status} ${res.statusText}`;
  try {
    const j = await res.json();
    if (j?.error) {
      type = j.error.type || type;
      message = j.error.message || PLAIN[type] || message;
    }
  } catch {
    /* not JSON */
  }
  if (res.status === 401) message = PLAIN.authentication_error + (message ? ` (${message})` : '');
  return new ApiError(res.status, type, message);
}

// Listeners told when the key is rejected (the app returns to the login page).
const unauthorized = new Set();
export const onUnauthorized = (fn) => (unauthorized.add(fn), () => unauthorized.delete(fn));

export async function request(method, path, body, { signal, raw = false, extraHeaders = {} } = {}) {
  const init = { method, headers: headers(extraHeaders), signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, 'network_error', 'Cannot reach the Warren server. Is it running?');
  }
  if (!res.ok) {
    const err = await errorFrom(res);
    if (res.status === 401) unauthorized.forEach((fn) => fn(err));
    throw err;
  }
  if (raw) return res;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (p, o) => request('GET', p, undefined, o);
export const post = (p, b = {}, o) => request('POST', p, b, o);
export const del = (p, o) => request('DELETE', p, undefined, o);

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    if (Array.isArray(v)) v.forEach((x) => u.append(k, x));
    else u.append(k, v);
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

export { errorFrom };
