// api.js talks to the gridwatch API. The bearer token lives in memory and
// in sessionStorage (so a reload keeps the session, a closed tab ends it),
// never in localStorage and never in the address: a wall screen may open
// /#token=…, and takeTokenFromHash removes it from the location at once.
import { fetchEventSource } from '@microsoft/fetch-event-source';

const tokenKey = 'gridwatch.token';
let token = '';
const signOutListeners = new Set();

// takeTokenFromHash moves a token given as /#token=… into the session and
// replaces the location (no history entry keeps it). It runs before
// anything reads the hash.
export function takeTokenFromHash() {
  const m = /^#token=([^&]*)/.exec(location.hash);
  if (m) {
    setToken(decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search + '#/');
    return;
  }
  token = sessionStorage.getItem(tokenKey) || '';
}

export function setToken(t) {
  token = t;
  if (t) sessionStorage.setItem(tokenKey, t);
  else sessionStorage.removeItem(tokenKey);
}

export function hasToken() { return token !== ''; }

export function onSignOut(fn) { signOutListeners.add(fn); return () => signOutListeners.delete(fn); }

export function signOut() {
  setToken('');
  for (const fn of signOutListeners) fn();
}

// APIError is an answer of the API other than 2xx: status, the error body's
// code and message.
export class APIError extends Error {
  constructor(status, code, message, etag) {
    super(message);
    this.status = status;
    this.code = code;
    this.etag = etag;
  }
}

// headers are a request's headers with the bearer token.
export function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  if (token) h.Authorization = 'Bearer ' + token;
  return h;
}

// api fetches path and returns its JSON body, or throws an APIError.
export async function api(path, { method = 'GET', body, signal, raw } = {}) {
  const init = { method, headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }), signal, credentials: 'omit', cache: 'no-store' };
  if (body !== undefined) init.body = JSON.stringify(body);
  const resp = await fetch(path, init);
  if (raw && resp.ok) return resp.text();
  let data = null;
  const text = await resp.text();
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!resp.ok) {
    const e = (data && data.error) || {};
    if (resp.status === 401 && path !== '/api/v1/whoami') signOut();
    throw new APIError(resp.status, e.code || 'http_' + resp.status, e.message || text || resp.statusText, resp.headers.get('ETag'));
  }
  return data;
}

// blobURL fetches path with the token (an img element cannot send one) and
// returns an object URL of the answer, for an img's src.
export async function blobURL(path, signal) {
  const resp = await fetch(path, { headers: headers(), credentials: 'omit', signal });
  if (!resp.ok) throw new APIError(resp.status, 'http_' + resp.status, resp.statusText);
  return URL.createObjectURL(await resp.blob());
}

// q builds a query string from an object, leaving out empty values.
export function q(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, String(v));
  const s = u.toString();
  return s ? '?' + s : '';
}

class Retry extends Error {}

// stream follows the Server-Sent Events at path with the bearer token in a
// header (EventSource cannot send one). onOpen runs at every (re)connect,
// so the caller can list again what it may have missed; the stream
// reconnects after an error, an overflow event or the server closing it,
// until signal aborts.
export function stream(path, { onOpen, onEvent, onState, signal }) {
  return fetchEventSource(path, {
    headers: headers({ Accept: 'text/event-stream' }),
    signal,
    openWhenHidden: true, // a wall screen in a background tab stays live
    async onopen(resp) {
      if (!resp.ok) {
        if (resp.status === 401) signOut();
        throw new Retry('stream: HTTP ' + resp.status);
      }
      onState && onState('live');
      onOpen && (await onOpen());
    },
    onmessage(ev) {
      if (ev.event === 'overflow') throw new Retry('overflow');
      if (!ev.data) return;
      onEvent(ev.event, JSON.parse(ev.data));
    },
    onclose() { throw new Retry('closed'); },
    onerror() {
      onState && onState('reconnecting');
      return 2000;
    },
  });
}
