// alerts.js keeps the open work orders (alerts not closed) in memory, fed by
// the list endpoint and then the live stream: the queue and the map read it.
// Every (re)connect of the stream lists again, and an alert is replaced only
// by a version at least as new, so an event and a list crossing each other
// leave the newest state.
import { api, q, stream } from './api.js';

export const openStatuses = ['new', 'acknowledged', 'dispatched', 'resolved', 'reopened'];
// The first page is small, so that the queue paints at once; the rest
// come in the largest pages the API gives.
const firstPage = 200;
const pageSize = 1000;

const state = {
  byId: new Map(),
  version: 0, // bumped at every change, for memoised views
  loaded: false, // the first page arrived
  complete: false, // every page arrived
  live: 'connecting',
  error: null,
  lastEvent: null, // {id, at} of the latest transition applied
};
const listeners = new Set();
let started = null;
let pending = false;
const touched = new Set(); // alerts an event changed since the listing began

function changed() {
  state.version++;
  if (pending) return;
  pending = true;
  // Transitions come in bursts: one render per animation frame is enough.
  requestAnimationFrame(() => {
    pending = false;
    for (const fn of listeners) fn(state);
  });
}

function upsert(a) {
  const cur = state.byId.get(a.id);
  if (cur && cur.version > a.version) return false;
  if (a.status === 'closed') state.byId.delete(a.id);
  else state.byId.set(a.id, a);
  return true;
}

// put applies an alert an action answered with.
export function put(a) { if (upsert(a)) changed(); }

const listPath = (cursor) => '/api/v1/alerts' + q({ status: openStatuses.join(','), limit: cursor ? pageSize : firstPage, sort: '-fired', cursor });

async function listAll(signal) {
  let cursor = '';
  const seen = new Set();
  do {
    const page = await api(listPath(cursor), { signal });
    if (!cursor && !state.complete) {
      // The early page may hold orders closed since: this listing decides.
      for (const id of state.byId.keys()) if (!touched.has(id)) state.byId.delete(id);
    }
    for (const a of page.alerts) { seen.add(a.id); upsert(a); }
    cursor = page.next || '';
    state.loaded = true;
    changed();
  } while (cursor);
  // An alert the list no longer holds, and no event touched since the
  // listing began, was closed while the stream was away.
  for (const id of state.byId.keys()) if (!seen.has(id) && !touched.has(id)) state.byId.delete(id);
  state.complete = true;
  state.error = null;
  changed();
}

function start() {
  const ctl = new AbortController();
  // The first page at once, for the first paint, while the stream
  // connects; only the listing that follows the stream's opening (gap-free)
  // is authoritative, and once it has begun this one is dropped.
  api(listPath(''), { signal: ctl.signal }).then((page) => {
    if (state.loaded) return;
    for (const a of page.alerts) upsert(a);
    state.loaded = true;
    changed();
  }).catch(() => {});
  stream('/api/v1/alerts/stream', {
    signal: ctl.signal,
    onState(s) { state.live = s; changed(); },
    async onOpen() {
      touched.clear();
      try { await listAll(ctl.signal); } catch (e) { if (!ctl.signal.aborted) { state.error = e; changed(); } }
    },
    onEvent(kind, t) {
      if (!t.alert) return;
      touched.add(t.alert.id);
      if (upsert(t.alert)) {
        state.lastEvent = { id: t.alert.id, kind, at: performance.now() };
        changed();
      }
    },
  });
  return ctl;
}

// subscribe calls fn with the state at every change, starting the list and
// the stream on first use; it returns the unsubscribe function.
export function subscribe(fn) {
  if (!started) started = start();
  listeners.add(fn);
  fn(state);
  return () => listeners.delete(fn);
}

// stop ends the stream and forgets everything (sign-out).
export function stop() {
  if (started) started.abort();
  started = null;
  state.byId.clear();
  state.loaded = state.complete = false;
  state.live = 'connecting';
  changed();
}

export function snapshot() { return state; }

// overdue reports whether an open alert is past a deadline.
export function overdue(a, now = Date.now()) {
  if (a.ack_overdue || a.resolve_overdue) return true;
  const awaitingAck = a.status === 'new' || a.status === 'reopened';
  if (awaitingAck && a.ack_due && Date.parse(a.ack_due) <= now) return true;
  return a.status !== 'resolved' && a.status !== 'closed' && a.resolve_due && Date.parse(a.resolve_due) <= now;
}

// due returns the deadline that counts now: signing for while it waits
// for that, resolving after.
export function due(a) {
  const awaitingAck = a.status === 'new' || a.status === 'reopened';
  if (awaitingAck && a.ack_due) return { kind: 'ack', at: Date.parse(a.ack_due) };
  if (a.status !== 'resolved' && a.status !== 'closed' && a.resolve_due) return { kind: 'resolve', at: Date.parse(a.resolve_due) };
  return null;
}

// allowed lists the actions an alert's status permits (alerts/workorder.go).
export function allowed(a) {
  switch (a.status) {
    case 'new': case 'reopened': return ['ack', 'dispatch', 'comment'];
    case 'acknowledged': return ['dispatch', 'resolve', 'comment'];
    case 'dispatched': return ['dispatch', 'resolve', 'comment'];
    case 'resolved': return ['close', 'reopen', 'comment'];
    case 'closed': return ['reopen', 'comment'];
    default: return ['comment'];
  }
}

// act posts an action with the version seen and applies the answer.
export async function act(a, kind, extra = {}) {
  const updated = await api(`/api/v1/alerts/${encodeURIComponent(a.id)}/${kind}`, { method: 'POST', body: { version: a.version, ...extra } });
  put(updated);
  return updated;
}
