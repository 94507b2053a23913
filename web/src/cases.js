// cases.js: the open cases (案卷: neither closed nor voided), kept live
// (live.js), and what their status, deadlines and the caller's role allow.
import { api, headers } from './api.js';
import { liveSet } from './live.js';

export const openStatuses = ['received', 'registered', 'dispatched', 'handling', 'suspended', 'handled', 'verified'];
export const sources = ['alert', 'camera', 'patrol', 'hotline', 'operator'];

const set = liveSet({
  list: '/api/v1/cases',
  key: 'cases',
  query: { status: openStatuses.join(',') },
  streamPath: '/api/v1/cases/stream',
  isOpen: (c) => c.status !== 'closed' && c.status !== 'voided',
  fromChange: (ch) => ch.case,
});
export const { subscribe, stop, snapshot, put, prefetch } = set;

// due returns the deadline that counts now (the one the lifecycle's
// deadline loop watches first): closing once registered, sign-for once
// dispatched, handling while handled, closing after; none while received
// or suspended.
export function due(c) {
  const at = { registered: c.close_due, dispatched: c.sign_due, handling: c.handle_due, handled: c.close_due, verified: c.close_due }[c.status];
  return at ? { kind: { dispatched: 'sign', handling: 'handle' }[c.status] || 'close', at: Date.parse(at) } : null;
}

export function overdue(c, now = Date.now()) {
  if (c.overdue && c.overdue.length) return true;
  const d = due(c);
  return !!d && d.at <= now;
}

export { allowed, needsNote } from './roles.js';

// act posts an action with the version seen and applies the answer.
export async function act(c, kind, extra = {}) {
  const updated = await api(`/api/v1/cases/${encodeURIComponent(c.id)}/${kind}`, { method: 'POST', body: { version: c.version, ...extra } });
  put(updated);
  return updated;
}

// uploadPhoto stores a picture and returns its hash, for evidence.
export async function uploadPhoto(file) {
  const resp = await fetch('/api/v1/cases/photos', { method: 'POST', headers: headers({ 'Content-Type': file.type || 'application/octet-stream' }), body: file, credentials: 'omit' });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error((body.error && body.error.message) || 'HTTP ' + resp.status);
  return body.hash;
}

