// load.test.mjs: the case queue with 10,000 open cases and 5,000 devices
// (web/e2e_test.go TestConsoleLoad seeds them). It measures, and prints,
// the first paint of the queue (its first page of 200, the list being
// paged by cursor behind it) and the whole queue, and how long a breach
// and another client's action take to show, split into the server's part
// (stored, then pushed on the stream) and the console's (drawn); it
// asserts only that they show (waiting up to 30 s), that the first paint
// asked for one page and that the list is virtualised.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { base, call, env, launch, publish, shot, tokens, watch } from './lib.mjs';

let browser;
let page;
const problems = [];
const figures = {};

// marks, run in the page before the console, notes on the page's own
// clock (epoch ms) when each case's first change and each version arrive
// on the case stream (window.gwArrived["id"], ["id/version"]) and when
// each case row first shows, and first shows each status
// (window.gwShown["id"], ["id/status"]), so that a live update's time splits
// into the server's part (the case stored, then pushed) and the console's
// (parsed, then drawn), without a test's polling in between.
function marks() {
  const now = () => performance.timeOrigin + performance.now();
  window.gwArrived = {};
  window.gwShown = {};
  const orig = window.fetch;
  window.fetch = async (...args) => {
    const resp = await orig(...args);
    if (!String(args[0]).includes('/api/v1/cases/stream') || !resp.body) return resp;
    const dec = new TextDecoder();
    let buf = '';
    const tap = new TransformStream({
      transform(chunk, ctl) {
        const at = now();
        buf += dec.decode(chunk, { stream: true });
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const ev = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = ev.split('\n').find((l) => l.startsWith('data: '));
          if (!data) continue;
          try {
            const c = JSON.parse(data.slice(6)).case;
            if (c) { window.gwArrived[c.id] ??= at; window.gwArrived[c.id + '/' + c.version] ??= at; }
          } catch { /* not a change */ }
        }
        ctl.enqueue(chunk);
      },
    });
    return new Response(resp.body.pipeThrough(tap), { status: resp.status, statusText: resp.statusText, headers: resp.headers });
  };
  const seen = () => {
    const at = now();
    for (const el of document.querySelectorAll('[data-testid=case-row]')) { window.gwShown[el.dataset.id] ??= at; window.gwShown[el.dataset.id + '/' + el.dataset.status] ??= at; }
  };
  new MutationObserver(seen).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ['data-status', 'data-id'] });
}

before(async () => {
  browser = await launch();
  page = watch(await browser.ctx.newPage(), problems);
  await page.addInitScript(marks);
});

// split returns, for a case's change to version and status (or, without
// them, its first change) whose server stamp is at (epoch ms), the server's part (stamp to arrival in the page) and
// the console's (arrival to the row on screen), on the page's clock.
async function split(id, version, status, at) {
  const [k, v] = version ? [id + '/' + version, id + '/' + status] : [id, id];
  const m = await page.waitForFunction(([k, v]) => window.gwArrived[k] && window.gwShown[v] && [window.gwArrived[k], window.gwShown[v]], [k, v]).then((h) => h.jsonValue());
  return { server: Math.round(m[0] - at), console: Math.round(m[1] - m[0]), total: Math.round(m[1] - at) };
}
after(async () => {
  await browser.close();
  console.log('FIGURES ' + JSON.stringify(figures));
  writeFileSync(join(process.env.GW_ARTIFACTS, 'load-figures.json'), JSON.stringify(figures, null, 2) + '\n');
  assert.deepEqual(problems, []);
});

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const openStatuses = 'received,registered,dispatched,handling,suspended,handled,verified';

// firstRow waits for the queue's first row and returns when it was on
// screen, in ms since the navigation started (the page's own clock).
const firstRow = () => page.waitForFunction(() => document.querySelector('[data-testid=case-row]') && Math.round(performance.now()), null, { timeout: 60000, polling: 'raf' }).then((h) => h.jsonValue());

// allRows waits until the console holds every one of n open cases.
const allRows = (n) => page.waitForFunction((n) => {
  const el = document.querySelector('[data-testid=case-count]');
  const m = el && /^(\d+) of (\d+)$/.exec(el.textContent);
  return m && m[1] === m[2] && Number(m[2]) >= n && Math.round(performance.now());
}, n, { timeout: 120000, polling: 50 }).then((h) => h.jsonValue());

test('the queue of 10,000 paints its first page, then holds every open case', async () => {
  let t0 = Date.now();
  const first = await call(tokens.dispatcher, `/api/v1/cases?status=${openStatuses}&limit=200`);
  figures.api_first_page_ms = Date.now() - t0;
  assert.equal(first.body.cases.length, 200);
  assert.ok(first.body.next, 'the first page has a next cursor');
  t0 = Date.now();
  await page.goto(base + '/#token=' + encodeURIComponent(tokens.dispatcher), { waitUntil: 'commit' });
  figures.first_paint_ms = await firstRow();
  figures.first_paint_wall_ms = Date.now() - t0;
  const lists = await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/v1/cases?')).map((r) => ({ limit: new URL(r.name).searchParams.get('limit'), cursor: new URL(r.name).searchParams.get('cursor') })));
  assert.equal(lists[0].limit, '200', `the first paint asks for one page: ${JSON.stringify(lists[0])}`);
  assert.ok(!lists[0].cursor);
  // Where the first paint's time goes, on the page's clock.
  figures.first_paint_timing = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const res = performance.getEntriesByType('resource');
    const end = (part) => { const r = res.find((e) => e.name.includes(part)); return r ? Math.round(r.responseEnd) : null; };
    const mark = (name) => { const m = performance.getEntriesByName(name)[0]; return m ? Math.round(m.startTime) : null; };
    return {
      dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd), script_ms: end('/assets/app.js'), whoami_ms: end('/api/v1/whoami'), first_page_ms: end('/api/v1/cases?'),
      // The console's own marks: signed in, the first page in the case set, its rows in the page.
      signed_in_ms: mark('gw:whoami'), first_page_applied_ms: mark('gw:cases:first-page'), first_rows_ms: mark('gw:cases:first-rows'),
    };
  });
  figures.all_rows_ms = await allRows(env.open);
  figures.list_requests = (await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/v1/cases?')).length));
  figures.rows_in_dom = await page.getByTestId('case-row').count();
  assert.ok(figures.rows_in_dom < 100, `the list is virtualised: ${figures.rows_in_dom} rows in the page`);
  await shot(page, 'load-cases');
  // Again in the warm browser (its renderer started, the bundle cached),
  // as a console left open or reopened is: signed in by sessionStorage.
  await page.reload({ waitUntil: 'commit' });
  figures.first_paint_warm_ms = await firstRow();
  figures.all_rows_warm_ms = await allRows(env.open);
  // The bottom of the list renders too.
  await page.getByTestId('case-rows').evaluate((el) => { el.scrollTop = el.scrollHeight; });
  await page.waitForFunction(() => document.querySelector('[data-testid=case-rows]').scrollTop > 0 && document.querySelector('[data-testid=case-row]'));
  await shot(page, 'load-cases-bottom');
  await page.getByTestId('case-rows').evaluate((el) => { el.scrollTop = 0; });
});

test('a breach shows as a new case within moments, among 10,000', async () => {
  const pub = [];
  const ev = [];
  for (const g of env.gauges) {
    const t0 = Date.now();
    await publish(g, { level_cm: 150 });
    const row = page.locator(`[data-testid=case-row][data-device="${g.id}"]`);
    await row.waitFor({ timeout: 30000 });
    const seen = Date.now();
    pub.push(seen - t0);
    // From the case's own event (its receive, stamped by the server on
    // this machine's clock) to the row on screen, split at its arrival.
    const c = await call(tokens.dispatcher, '/api/v1/cases/' + await row.getAttribute('data-id'));
    ev.push(await split(c.body.id, 0, '', Date.parse(c.body.received)));
  }
  figures.breach_to_screen_ms = pub;
  figures.breach_to_screen_median_ms = median(pub);
  figures.case_event_to_screen_ms = ev.map((e) => e.total);
  figures.case_event_to_screen_median_ms = median(ev.map((e) => e.total));
  figures.case_event_to_stream_median_ms = median(ev.map((e) => e.server));
  figures.stream_to_screen_median_ms = median(ev.map((e) => e.console));
  await shot(page, 'load-cases-live');
});

test("another client's action shows within moments", async () => {
  const lat = [];
  const parts = [];
  const ids = await page.locator('[data-testid=case-row][data-status=received]').evaluateAll((els) => els.slice(0, 5).map((e) => e.dataset.id));
  assert.ok(ids.length > 0, 'received cases in view');
  for (const id of ids) {
    const cur = await call(tokens.dispatcher, '/api/v1/cases/' + id);
    const t0 = Date.now();
    const r = await call(tokens.dispatcher, `/api/v1/cases/${id}/register`, { method: 'POST', body: { version: cur.body.version, force: true } });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    await page.locator(`[data-testid=case-row][data-id="${id}"][data-status=registered]`).waitFor({ timeout: 30000 });
    lat.push(Date.now() - t0);
    parts.push(await split(id, r.body.version, 'registered', t0));
  }
  figures.action_to_screen_ms = lat;
  figures.action_to_screen_median_ms = median(lat);
  figures.action_to_stream_median_ms = median(parts.map((e) => e.server));
  figures.action_stream_to_screen_median_ms = median(parts.map((e) => e.console));
});

test('filtering 10,000 in the browser', async () => {
  const t0 = Date.now();
  await page.getByTestId('case-filter-status').selectOption('handled');
  await page.waitForFunction(() => /^\d+ of \d+$/.test(document.querySelector('[data-testid=case-count]').textContent) && document.querySelector('[data-testid=case-row][data-status=handled]') && !document.querySelector('[data-testid=case-row]:not([data-status=handled])'));
  figures.filter_ms = Date.now() - t0;
  figures.handled_shown = Number((await page.getByTestId('case-count').textContent()).split(' ')[0]);
  await page.getByTestId('case-filter-status').selectOption('');
});

test('the map of 5,000 devices and 100 cells', async () => {
  const t0 = Date.now();
  await page.goto(base + '/#/map');
  await page.getByTestId('map-cell').first().waitFor({ timeout: 60000 });
  await page.waitForFunction(() => /· [^…]*\d+$/.test(document.querySelector('[data-testid=map-count]').textContent) && document.querySelector('.cluster'));
  figures.map_ms = Date.now() - t0;
  assert.equal(await page.getByTestId('map-cell').count(), 100);
  await shot(page, 'load-map');
});
