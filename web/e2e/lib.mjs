// lib.mjs: what the browser tests share. web/e2e_test.go starts gridwatch
// and runs them with GW_* variables; Chromium is Debian's (GW_CHROMIUM),
// never a downloaded one, in a fresh empty profile.
import { chromium } from 'playwright-core';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

export const base = process.env.GW_URL;
export const env = JSON.parse(process.env.GW_ENV || '{}');
export const tokens = {
  dispatcher: process.env.GW_TOKEN_DISPATCHER,
  d01: process.env.GW_TOKEN_GRID_D01,
  watcher: process.env.GW_TOKEN_WATCHER,
  crew: process.env.GW_TOKEN_CREW_D01,
  patrol: process.env.GW_TOKEN_PATROL_D01,
};
const artifacts = process.env.GW_ARTIFACTS;

// launch starts headless Chromium in a new empty user-data-dir and
// returns it with a function that closes it and removes the profile.
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'gw-chromium-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.GW_CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    viewport: { width: 1400, height: 900 },
    locale: 'en-US',
  });
  return { ctx, close: async () => { await ctx.close(); rmSync(profile, { recursive: true, force: true }); } };
}

// watch fails the test on what a page must never do: run an injected
// script (a dialog), break the CSP, or throw.
export function watch(page, problems) {
  page.on('dialog', (d) => { problems.push('dialog: ' + d.message()); d.dismiss(); });
  page.on('pageerror', (e) => problems.push('page error: ' + e.message + ' at ' + page.url() + ' ' + (e.stack || '').split('\n').slice(1, 3).join(' ')));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) problems.push('console error: ' + m.text());
  });
  return page;
}

// shot saves the whole page (a case page's timeline runs below the fold;
// the queues and the map fill the window and scroll inside it).
export async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, name + '.png'), fullPage: true });
}

// publish sends a reading as a device with mosquitto_pub, a client other
// than the server's own libraries.
export async function publish(dev, payload) {
  await promisify(execFile)('mosquitto_pub', ['-h', '127.0.0.1', '-p', process.env.GW_MQTT_PORT, '-i', dev.id, '-u', dev.id, '-P', dev.secret,
    '-q', '1', '-t', `devices/${dev.id}/telemetry`, '-m', JSON.stringify(payload)]);
}

// call is the API as a client other than the page.
export async function call(token, path, { method = 'GET', body } = {}) {
  const resp = await fetch(base + path, { method, headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' }, body: body && JSON.stringify(body) });
  return { status: resp.status, body: await resp.json() };
}

// signIn opens the console with the token as a wall screen would.
export async function signIn(page, token) {
  await page.goto(base + '/#token=' + encodeURIComponent(token));
  await page.getByTestId('whoami').waitFor();
}
