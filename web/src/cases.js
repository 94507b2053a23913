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

// due returns the deadline that counts now: sign-for once dispatched,
// handling while handled, closing after; none while suspended.
export function due(c) {
  const at = { dispatched: c.sign_due, handling: c.handle_due, handled: c.close_due, verified: c.close_due }[c.status];
  return at ? { kind: { dispatched: 'sign', handling: 'handle' }[c.status] || 'close', at: Date.parse(at) } : null;
}

export function overdue(c, now = Date.now()) {
  if (c.overdue && c.overdue.length) return true;
  const d = due(c);
  return !!d && d.at <= now;
}

const staff = ['operator', 'dispatcher', 'supervisor', 'admin'];
const unitRoles = ['unit', 'admin'];
const supervisors = ['supervisor', 'admin'];
const verifiers = ['reporter', 'operator', 'dispatcher', 'supervisor', 'admin'];

// byStatus lists the actions of each status with the roles that may take
// them (cases.May decides for good: a refusal is shown as the API says).
const byStatus = {
  received: [['register', staff], ['merge', staff], ['void', staff]],
  registered: [['dispatch', staff], ['merge', staff], ['void', staff]],
  dispatched: [['sign', unitRoles], ['return', unitRoles], ['dispatch', staff]],
  handling: [['handle', unitRoles], ['extend_request', unitRoles], ['suspend_request', unitRoles]],
  suspended: [['resume', ['unit', 'dispatcher', 'supervisor', 'admin']]],
  handled: [['verify_pass', verifiers], ['verify_fail', verifiers]],
  verified: [['close', staff]],
  closed: [['evaluate', verifiers]],
};

// allowed lists the actions the caller may try on c.
export function allowed(c, role) {
  const out = (byStatus[c.status] || []).filter(([, roles]) => roles.includes(role)).map(([k]) => k);
  if (c.pending === 'extend_request' && supervisors.includes(role)) out.push('extend_approve', 'extend_reject');
  if (c.pending === 'suspend_request' && supervisors.includes(role)) out.push('suspend_approve', 'suspend_reject');
  if (c.status !== 'closed' && c.status !== 'voided') {
    if (supervisors.includes(role) && !c.supervised) out.push('supervise');
    if (role !== 'viewer') out.push('note');
  }
  return out;
}

// needsNote names the actions that need a reason.
export const needsNote = new Set(['void', 'return', 'extend_reject', 'suspend_reject', 'verify_fail', 'extend_request', 'suspend_request', 'note']);

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

