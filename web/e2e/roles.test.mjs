// roles.test.mjs: the console's table of who may do what to a case
// (src/roles.js) against the lifecycle's answers, which web/roles_test.go
// computes with cases.May and hands over as GW_ROLES (a JSON file).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { allowed, roles } from '../src/roles.js';

const { roles: apiRoles, table } = JSON.parse(readFileSync(process.env.GW_ROLES, 'utf8'));

test('the console knows every role of the API', () => {
  assert.deepEqual(roles, apiRoles);
});

test('the console offers exactly the actions the lifecycle takes', () => {
  const wrong = [];
  for (const line of table) {
    const c = { status: line.status, reporter: line.own ? 'me' : 'someone', unit: line.own ? 'my-unit' : 'other-unit', pending: line.pending, satisfaction: line.evaluated ? 4 : 0 };
    const me = { role: line.role, name: 'me', unit: line.role === 'unit' ? 'my-unit' : '' };
    const got = allowed(c, me);
    if (JSON.stringify(got) !== JSON.stringify(line.actions)) wrong.push(`${JSON.stringify({ ...line, actions: undefined })}: console ${got}, lifecycle ${line.actions}`);
  }
  assert.deepEqual(wrong, []);
});
