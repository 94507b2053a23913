// roles.js: what each role may do to a case, as the case loop's lifecycle
// says (cases/lifecycle.go: its rules, cases.May and the preconditions of
// its actions), so that the console offers exactly the actions the server
// would take. web/roles_test.go checks the table against cases.May.
export const roles = ['viewer', 'reporter', 'unit', 'operator', 'dispatcher', 'supervisor', 'admin'];

const centre = ['operator', 'dispatcher', 'supervisor', 'admin'];
const supervisors = ['supervisor', 'admin'];
const unitStaff = ['unit', 'admin'];
const verifiers = ['reporter', 'operator', 'dispatcher', 'supervisor', 'admin'];
const anyStaff = ['reporter', 'unit', 'operator', 'dispatcher', 'supervisor', 'admin'];
const open = ['received', 'registered', 'dispatched', 'handling', 'suspended', 'handled', 'verified'];

// rules are the lifecycle's: each action, in its order, with the statuses
// it applies from and the roles that may take it.
const rules = {
  register: [['received'], centre],
  merge: [['received', 'registered'], centre],
  void: [['received', 'registered'], centre],
  dispatch: [['registered', 'dispatched'], centre],
  sign: [['dispatched'], unitStaff],
  return: [['dispatched'], unitStaff],
  note: [open, anyStaff],
  extend_request: [['handling'], unitStaff],
  extend_approve: [['handling'], supervisors],
  extend_reject: [['handling'], supervisors],
  suspend_request: [['handling'], unitStaff],
  suspend_approve: [['handling'], supervisors],
  suspend_reject: [['handling'], supervisors],
  resume: [['suspended'], ['unit', 'dispatcher', 'supervisor', 'admin']],
  handle: [['handling'], unitStaff],
  verify_pass: [['handled'], verifiers],
  verify_fail: [['handled'], verifiers],
  close: [['verified'], centre],
  evaluate: [['closed'], verifiers],
  supervise: [open, supervisors],
};

// ready are the preconditions of the actions that need more than a
// status: a request needs none waiting, a decision its request, an
// evaluation a case not evaluated yet.
const ready = {
  extend_request: (c) => !c.pending,
  suspend_request: (c) => !c.pending,
  extend_approve: (c) => c.pending === 'extend_request',
  extend_reject: (c) => c.pending === 'extend_request',
  suspend_approve: (c) => c.pending === 'suspend_request',
  suspend_reject: (c) => c.pending === 'suspend_request',
  evaluate: (c) => !c.satisfaction,
};

// may tells whether role may ever take the action kind, on some case.
export const may = (role, kind) => !!rules[kind] && rules[kind][1].includes(role);

// reporters are the roles that may report a case (a patrol's, or the
// command centre's own).
export const canReport = (role) => verifiers.includes(role);

// allowed lists the actions me ({role, name, unit}) may take on c now: a
// unit acts only on the cases dispatched to it, a reporter only on the
// cases it reported.
export function allowed(c, me) {
  if (me.role === 'unit' && (!me.unit || me.unit !== c.unit)) return [];
  if (me.role === 'reporter' && me.name !== c.reporter) return [];
  return Object.keys(rules).filter((k) => rules[k][0].includes(c.status) && rules[k][1].includes(me.role) && (!ready[k] || ready[k](c)));
}

// needsNote names the actions that need a reason.
export const needsNote = new Set(['void', 'return', 'extend_reject', 'suspend_reject', 'verify_fail', 'extend_request', 'suspend_request', 'note']);
