// alerts.js: the open alert work orders (not closed), kept live (live.js),
// and what their status and deadlines allow.
import { api } from './api.js';
import { liveSet } from './live.js';

export const openStatuses = ['new', 'acknowledged', 'dispatched', 'resolved', 'reopened'];

const set = liveSet({
  list: '/api/v1/alerts',
  key: 'alerts',
  query: { status: openStatuses.join(','), sort: '-fired' },
  streamPath: '/api/v1/alerts/stream',
  isOpen: (a) => a.status !== 'closed',
  fromChange: (t) => t.alert,
});
export const { subscribe, stop, snapshot, put } = set;

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
