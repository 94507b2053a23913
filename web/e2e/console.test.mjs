// console.test.mjs: the console's promises, in a real browser against a
// real gridwatch (started by web/e2e_test.go).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { base, call, env, launch, publish, shot, signIn, tokens, watch } from './lib.mjs';

let browser;
const problems = [];
let page;
let breachCase = ''; // the case the breach raised, for the screenshots
let cameraCase = ''; // the offline camera's case

before(async () => {
  browser = await launch();
  page = watch(await browser.ctx.newPage(), problems);
});
after(async () => {
  await browser.close();
  assert.deepEqual(problems, [], 'the pages ran no injected script, broke no CSP rule and threw nothing');
});

// bulkOutcome waits for the notice a bulk action leaves once every case
// was answered, however long a loaded server takes, and returns its text.
async function bulkOutcome(p) {
  const notice = p.getByTestId('case-message');
  await notice.waitFor({ timeout: 120000 });
  return (await notice.textContent()).trim();
}

describe('console', () => {
  test('sign-in with a pasted token shows role and scope, and keeps the token out of localStorage', async () => {
    await page.goto(base + '/');
    await page.getByTestId('signin-form').waitFor();
    await page.getByTestId('signin-token').fill('gwt_not-a-token');
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('signin-error').waitFor();
    await shot(page, 'en-signin');
    await page.getByTestId('signin-token').fill(tokens.dispatcher);
    await page.getByTestId('signin-submit').click();
    await page.getByTestId('whoami').waitFor();
    assert.equal(await page.getByTestId('whoami-name').textContent(), 'dispatcher');
    assert.equal(await page.getByTestId('whoami-role').textContent(), 'dispatcher');
    assert.equal(await page.getByTestId('whoami-scope').textContent(), 'whole city');
    const store = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: sessionStorage.getItem('gridwatch.token'), href: location.href }));
    assert.ok(!store.local.includes(tokens.dispatcher), 'no token in localStorage');
    assert.equal(store.session, tokens.dispatcher);
    assert.ok(!store.href.includes(tokens.dispatcher));
  });

  test('a breach appears in the alert queue and as a case, without a reload', async () => {
    await page.getByTestId('nav-queue').click();
    await page.getByTestId('queue-row').first().waitFor();
    const ids = () => page.getByTestId('queue-row').evaluateAll((rows) => rows.map((r) => r.dataset.id));
    const before = await ids();
    const t0 = Date.now();
    await publish(env.live, { level_cm: 64 });
    const row = page.locator(`[data-testid=queue-row][data-device="${env.live.id}"]`);
    await row.waitFor({ timeout: 30000 });
    console.log(`live update: ${Date.now() - t0} ms from mosquitto_pub to the row on screen`);
    // The breach is one row, added to those listed (others may arrive
    // meanwhile: the queue is live); none listed before went.
    assert.equal(await row.count(), 1, "the live device's breach is listed once");
    const now = await ids();
    assert.deepEqual(before.filter((id) => !now.includes(id)), [], 'the rows listed before the breach are still listed');
    assert.equal(await page.getByTestId('queue-live').textContent(), 'live');
    await shot(page, 'en-queue');
    await page.getByTestId('nav-cases').click();
    const t1 = Date.now();
    await page.locator(`[data-testid=case-row][data-device="${env.live.id}"]`).waitFor({ timeout: 30000 });
    console.log(`the case is on screen ${Date.now() - t1} ms after the alert queue showed the alert`);
    await shot(page, 'en-cases');
  });

  test("the breach's case: the unit signs for and handles it with a photo, the dispatcher verifies and closes it; the timeline shows each step", async () => {
    const row = page.locator(`[data-testid=case-row][data-device="${env.live.id}"]`);
    const id = await row.getAttribute('data-id');
    breachCase = id;
    let c = (await call(tokens.dispatcher, '/api/v1/cases/' + id)).body;
    if (c.status === 'received') {
      await page.goto(base + '/#/case/' + id);
      await page.getByTestId('case-action-register').click();
      await page.locator('[data-testid=case-page][data-status=registered]').waitFor();
    }
    c = (await call(tokens.dispatcher, '/api/v1/cases/' + id)).body;
    if (c.status === 'registered') {
      await page.goto(base + '/#/case/' + id);
      await page.getByTestId('case-unit').selectOption('chengguan-d01');
      await page.getByTestId('case-action-dispatch').click();
      await page.locator('[data-testid=case-page][data-status=dispatched]').waitFor();
    }
    // The unit's crew, on its own phone.
    const crew = watch(await browser.ctx.newPage(), problems);
    await crew.setViewportSize({ width: 390, height: 844 });
    await signIn(crew, tokens.crew);
    assert.equal(await crew.getByTestId('whoami-unit').textContent(), 'chengguan-d01');
    await crew.locator(`[data-testid=case-row][data-id="${id}"]`).getByTestId('case-row-sign').click();
    await crew.locator(`[data-testid=case-row][data-id="${id}"][data-status=handling]`).waitFor();
    await crew.goto(base + '/#/case/' + id);
    await crew.getByTestId('case-page').waitFor();
    await crew.getByTestId('case-photo').setInputFiles(env.photo);
    await crew.getByTestId('case-photo-count').getByText(/1/).waitFor();
    await crew.getByTestId('case-note').fill('Pumped out; drain cleared <script>alert(2)</script>');
    await crew.getByTestId('case-action-handle').click();
    await crew.locator('[data-testid=case-page][data-status=handled]').waitFor();
    await crew.getByTestId('evidence-photo').first().waitFor();
    await shot(crew, 'en-phone-case-handled');
    await crew.close();
    // The dispatcher's page follows the case live, then verifies and closes it.
    await page.goto(base + '/#/case/' + id);
    await page.locator('[data-testid=case-page][data-status=handled]').waitFor();
    await page.getByTestId('case-action-verify_pass').click();
    await page.locator('[data-testid=case-page][data-status=verified]').waitFor();
    await page.getByTestId('case-action-close').click();
    await page.locator('[data-testid=case-page][data-status=closed]').waitFor();
    const kinds = await page.getByTestId('timeline-event').evaluateAll((els) => els.map((e) => e.dataset.kind));
    for (const k of ['receive', 'dispatch', 'sign', 'handle', 'verify_pass', 'close']) assert.ok(kinds.includes(k), `timeline has ${k}: ${kinds}`);
    const notes = await page.getByTestId('timeline-note').allTextContents();
    assert.ok(notes.some((n) => n.includes('<script>alert(2)</script>')), `the note reads as typed: ${notes}`);
    assert.ok(await page.getByTestId('event-deadline').count() > 0, 'deadlines met or missed are shown');
    await page.getByTestId('evidence-photo').first().waitFor();
    await page.getByTestId('telemetry-chart').waitFor();
    assert.equal(await page.locator('[data-testid=case-page] dt:empty').count(), 0, 'every line of the case card has its label');
    await shot(page, 'en-case');
  });

  test('filters, then bulk dispatch by the dispatcher and bulk sign-for by the unit', async () => {
    const ids = [];
    for (const n of [1, 2, 3]) {
      const r = await call(tokens.dispatcher, '/api/v1/cases', { method: 'POST', body: { category: 'C0101', description: `bulk test ${n}`, grid: env.live.grid } });
      assert.equal(r.status, 201, JSON.stringify(r.body));
      if (n < 3) {
        const reg = await call(tokens.dispatcher, `/api/v1/cases/${r.body.id}/register`, { method: 'POST', body: { version: r.body.version, force: true } });
        assert.equal(reg.status, 200, JSON.stringify(reg.body));
      }
      ids.push(r.body.id);
    }
    await page.goto(base + '/#/');
    const rowOf = (p, id, status) => p.locator(`[data-testid=case-row][data-id="${id}"]` + (status ? `[data-status=${status}]` : ''));
    await rowOf(page, ids[1], 'registered').waitFor();
    await page.getByTestId('case-filter-text').fill('bulk test');
    await page.getByTestId('case-count').getByText(/^3 of/).waitFor();
    // The date filter: received today, not tomorrow.
    const day = (d) => new Date(Date.now() + d * 86400e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 10);
    await page.getByTestId('case-filter-from').fill(day(0));
    await page.getByTestId('case-filter-to').fill(day(0));
    await page.getByTestId('case-count').getByText(/^3 of/).waitFor();
    await page.getByTestId('case-filter-from').fill(day(1));
    await page.getByTestId('case-empty').waitFor();
    await page.getByTestId('case-filter-from').fill('');
    await page.getByTestId('case-filter-to').fill('');
    // Severity: none of these is an emergency (gas, fire, flooding).
    await page.getByTestId('case-filter-urgency').selectOption('emergency');
    await page.getByTestId('case-empty').waitFor();
    await page.getByTestId('case-filter-urgency').selectOption('routine');
    await page.getByTestId('case-filter-status').selectOption('registered');
    await page.getByTestId('case-count').getByText(/^2 of/).waitFor();
    await page.getByTestId('case-filter-status').selectOption('');
    await page.getByTestId('case-count').getByText(/^3 of/).waitFor();
    // Every one shown is selected; the received one cannot be dispatched
    // and is skipped, the others go to the D01 unit.
    await page.getByTestId('case-select-shown').click();
    await page.getByTestId('case-bulk-bar').getByText('3 selected').waitFor();
    await page.getByTestId('case-bulk-unit').selectOption('chengguan-d01');
    await shot(page, 'en-cases-bulk');
    await page.getByTestId('case-bulk-dispatch').click();
    assert.match(await bulkOutcome(page), /^2 done\s+1 skipped \(not allowed in their status\)\s*×$/);
    await rowOf(page, ids[0], 'dispatched').waitFor();
    await rowOf(page, ids[1], 'dispatched').waitFor();
    await rowOf(page, ids[2], 'received').waitFor();
    await shot(page, 'en-cases-bulk-done');
    // The unit's crew signs for both at once.
    const crew = watch(await browser.ctx.newPage(), problems);
    await signIn(crew, tokens.crew);
    await rowOf(crew, ids[0], 'dispatched').waitFor();
    await rowOf(crew, ids[1], 'dispatched').waitFor();
    await crew.getByTestId('case-filter-text').fill('bulk test');
    await crew.getByTestId('case-count').getByText(/^2 of/).waitFor();
    assert.equal(await crew.getByTestId('case-bulk-dispatch').count(), 0, 'a unit does not dispatch');
    await crew.getByTestId('case-select-shown').click();
    await crew.getByTestId('case-bulk-sign').click();
    const signed = await bulkOutcome(crew);
    if (!/^2 done\s*×$/.test(signed)) {
      // A change the crew's copy had not caught up with (a reminder due
      // under load) is refused plainly, the case reloaded: the crew does
      // as told and signs for it again.
      assert.match(signed, /^1 done 1 failed: Case \S+ was changed by someone else meanwhile \(now version \d+\); it was reloaded: look again and retry\.×$/);
      await crew.getByTestId('case-message').getByRole('button').click();
      await crew.getByTestId('case-select-shown').click();
      await crew.getByTestId('case-bulk-sign').click();
      assert.match(await bulkOutcome(crew), /^1 done 1 skipped \(not allowed in their status\)\s*×$/);
    }
    await rowOf(crew, ids[0], 'handling').waitFor();
    await rowOf(crew, ids[1], 'handling').waitFor();
    await shot(crew, 'en-cases-bulk-signed');
    await crew.close();
    // The dispatcher's queue follows live.
    await rowOf(page, ids[1], 'handling').waitFor();
    await page.getByTestId('case-filter-text').fill('');
  });

  test("a camera's case shows the camera's health", async () => {
    let id = '';
    for (let i = 0; i < 120 && !id; i++) {
      const r = await call(tokens.dispatcher, '/api/v1/cases?limit=1000&status=' + ['received', 'registered', 'dispatched', 'handling', 'handled', 'verified'].join(','));
      id = (r.body.cases || []).find((c) => c.device === 'cam-bridge')?.id || '';
      if (!id) await new Promise((ok) => setTimeout(ok, 500));
    }
    assert.ok(id, 'the offline camera raised a case');
    cameraCase = id;
    await page.goto(base + '/#/case/' + id);
    // Unreachable or refused, as the probe found it (the card asks again
    // every 10 s).
    try {
      await page.locator('[data-testid=case-camera]:not([data-status=ok]):not([data-status=never])').waitFor({ timeout: 60000 });
    } catch (e) {
      await shot(page, 'en-case-camera-failed');
      throw e;
    }
    await page.getByTestId('case-camera').getByTestId('camera-status').waitFor();
    await shot(page, 'en-case-camera');
  });

  test('a patrol report with a photo becomes a case', async () => {
    const patrol = await launch();
    try {
      await patrol.ctx.grantPermissions(['geolocation'], { origin: base });
      await patrol.ctx.setGeolocation({ latitude: Number(env.live.lat), longitude: Number(env.live.lon) });
      const p = watch(await patrol.ctx.newPage(), problems);
      await p.setViewportSize({ width: 390, height: 844 });
      await signIn(p, tokens.patrol);
      await p.getByTestId('nav-report').click();
      await p.getByTestId('report-form').waitFor();
      await p.getByTestId('report-category').selectOption({ index: 1 });
      await p.getByTestId('report-description').fill('Manhole cover missing <img src=x onerror=alert(3)>');
      await p.getByTestId('report-gps').click();
      await p.getByTestId('report-point').getByText(/\d+\.\d+, \d+\.\d+/).waitFor();
      await p.getByTestId('report-photo').setInputFiles(env.photo);
      await p.getByTestId('report-photo-count').getByText(/1/).waitFor();
      await shot(p, 'en-phone-report');
      await p.getByTestId('report-submit').click();
      await p.getByTestId('case-page').waitFor();
      assert.equal(await p.getByTestId('case-description').textContent(), 'Manhole cover missing <img src=x onerror=alert(3)>');
      assert.equal(await p.locator('img[src=x]').count(), 0);
      await p.getByTestId('evidence-photo').first().waitFor();
      const id = (await p.locator('small.muted').first().textContent()).trim();
      const c = await call(tokens.dispatcher, '/api/v1/cases/' + id);
      assert.equal(c.status, 200);
      assert.equal(c.body.source, 'patrol');
      assert.equal(c.body.evidence.length, 1);
      assert.ok(c.body.grid.startsWith('D01-'), `located in D01: ${c.body.grid}`);
      await shot(p, 'en-phone-report-case');
    } finally {
      await patrol.close();
    }
  });

  test("the alert's page: what fired, the case it raised, the timeline and the telemetry; the alert's old work-order actions are gone", async () => {
    await page.goto(base + '/#/alerts');
    const row = page.locator(`[data-testid=queue-row][data-device="${env.live.id}"]`);
    const id = await row.getAttribute('data-id');
    // The row links to the case the alert raised, once the case loop answered.
    await row.locator('a[data-testid=row-case]').waitFor({ timeout: 30000 });
    await row.getByTestId('row-link').click();
    await page.locator('[data-testid=alert-page][data-condition=firing]').waitFor();
    const a = (await call(tokens.dispatcher, '/api/v1/alerts/' + id)).body;
    assert.ok(a.case, `the alert names its case: ${JSON.stringify(a)}`);
    assert.equal(await page.getByTestId('alert-case').getAttribute('href'), '#/case/' + encodeURIComponent(a.case));
    const kinds = await page.getByTestId('timeline-event').evaluateAll((els) => els.map((e) => e.dataset.kind));
    for (const k of ['fire', 'case']) assert.ok(kinds.includes(k), `timeline has ${k}: ${kinds}`);
    await page.getByTestId('telemetry-chart').waitFor();
    await page.getByTestId('minimap').waitFor();
    await shot(page, 'en-alert');
    // No action on the alert's page: the work is its case's, where the link leads.
    assert.equal(await page.locator('[data-testid^=action-]').count(), 0);
    const gone = await call(tokens.dispatcher, `/api/v1/alerts/${id}/ack`, { method: 'POST', body: { version: a.version } });
    assert.equal(gone.status, 410);
    await page.getByTestId('alert-case').click();
    await page.locator('[data-testid=case-page]').waitFor();
    assert.ok(page.url().endsWith('#/case/' + encodeURIComponent(a.case)), page.url());
  });

  test('a case changed by someone else meanwhile: the action is refused plainly, the case reloaded, and the retry taken', async () => {
    const r = await call(tokens.dispatcher, '/api/v1/cases', { method: 'POST', body: { category: 'C0101', description: 'conflict test', grid: env.live.grid } });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const id = r.body.id;
    await page.goto(base + '/#/case/' + id);
    await page.locator('[data-testid=case-page][data-status=received]').waitFor();
    // Another client notes the case just before the page's register
    // reaches the server: the page's version is stale by then.
    const pattern = `**/api/v1/cases/${id}/register`;
    await page.route(pattern, async (route) => {
      const cur = await call(tokens.dispatcher, '/api/v1/cases/' + id);
      const other = await call(tokens.dispatcher, `/api/v1/cases/${id}/note`, { method: 'POST', body: { version: cur.body.version, note: 'seen from the hotline' } });
      assert.equal(other.status, 200, JSON.stringify(other.body));
      await route.continue();
    }, { times: 1 });
    await page.getByTestId('case-action-register').click();
    const err = page.getByTestId('action-error');
    await err.waitFor();
    assert.match(await err.textContent(), /changed by someone else/);
    await shot(page, 'en-conflict');
    await page.unroute(pattern);
    await page.getByTestId('case-action-register').click();
    await page.locator('[data-testid=case-page][data-status=registered]').waitFor();
  });

  test('a device named as HTML renders as text', async () => {
    await page.goto(base + '/#/device/' + env.xss.id);
    await page.getByTestId('device-page').waitFor();
    assert.equal(await page.getByTestId('device-name').textContent(), env.xss.name);
    assert.equal(await page.locator('img[src=x]').count(), 0);
    await shot(page, 'en-device-xss');
    // On the map too: its popup is text.
    await page.goto(base + '/#/map');
    await page.getByTestId('map-cell').first().waitFor();
    assert.equal(await page.locator('img[src=x]').count(), 0);
  });

  test("a device's chart over a chosen range; a map cell's popup opens its cases", async () => {
    await page.goto(base + '/#/device/' + env.live.id);
    await page.getByTestId('telemetry-chart').waitFor();
    await page.getByTestId('range-24h').click();
    await page.locator('[data-testid=range-24h].on').waitFor();
    await page.getByTestId('telemetry-chart').waitFor();
    await page.goto(base + '/#/map');
    const cell = page.locator(`[data-testid=map-cell][data-grid="${env.live.grid}"]`);
    await cell.waitFor();
    assert.ok(Number(await cell.getAttribute('data-open')) > 0, 'the cell counts its open cases');
    // The city's basemap (grids.basemap_file) lies under the polygons, fetched with the token.
    const basemap = page.locator('img.basemap');
    await basemap.waitFor();
    assert.match(await basemap.getAttribute('src'), /^blob:/);
    await page.waitForFunction(() => { const i = document.querySelector('img.basemap'); return i && i.complete && i.naturalWidth === 512; });
    // Through Leaflet, whatever marker lies on top of the polygon.
    await cell.dispatchEvent('click');
    // Dispatched too: a click by position can land beside the link while
    // the popup pans the map into view (a fresh-clone run under load waited
    // 30 s for the queue after such a click).
    await page.locator('.leaflet-popup a', { hasText: 'Open its cases' }).dispatchEvent('click');
    await page.getByTestId('case-queue').waitFor();
    await page.getByTestId('case-row').first().waitFor();
    const grids = await page.getByTestId('case-row').evaluateAll((els) => els.map((e) => e.dataset.grid));
    assert.ok(grids.length > 0 && grids.every((g) => g === env.live.grid), `the cell's cases only: ${grids}`);
  });

  test('every view, in en and zh-CN, light and dark', async () => {
    const tid = (id) => `[data-testid=${id}]`;
    const views = [
      ['cases', '#/', tid('case-row')], ['queue', '#/alerts', tid('queue-row')], ['report', '#/report', tid('report-map')], ['map', '#/map', tid('map-cell')], ['cameras', '#/cameras', tid('camera-tile')],
      ['case', '#/case/' + breachCase, tid('telemetry-chart')], ['case-camera', '#/case/' + cameraCase, tid('case-camera') + ' ' + tid('camera-status')],
      ['camera', '#/camera/cam-gate', tid('camera-probes')], ['device', '#/device/' + env.live.id, tid('telemetry-chart')],
      ['ranking', '#/ranking', tid('trend-chart')], ['ops', '#/ops', tid('ops-rates') + '[data-ready]'],
    ];
    for (const lang of ['en', 'zh']) {
      for (const [name, hash, ready] of views) {
        await page.goto(base + '/' + hash);
        await page.locator(ready).first().waitFor();
        if (name === 'map') await page.waitForTimeout(300); // the markers follow the polygons
        await shot(page, `${lang}-${name}`);
      }
      if (lang === 'en') {
        await page.getByTestId('lang-toggle').click();
        await page.getByTestId('nav-cases').getByText('案卷队列').waitFor();
      }
    }
    assert.equal(await page.evaluate(() => document.documentElement.lang), 'zh-CN');
    // A new tab has no session (sessionStorage is a tab's): the sign-in, in
    // the language chosen.
    const fresh = watch(await browser.ctx.newPage(), problems);
    await fresh.goto(base + '/');
    await fresh.getByTestId('signin-form').getByText('登录').first().waitFor();
    await shot(fresh, 'zh-signin');
    await fresh.close();
    // The public ranking page (bilingual, printable), as the console's
    // button fetches it with the token.
    const pub = watch(await browser.ctx.newPage(), problems);
    await pub.setExtraHTTPHeaders({ Authorization: 'Bearer ' + tokens.dispatcher });
    await pub.goto(base + '/api/v1/stats/cases/ranking.html');
    await pub.getByTestId('ranking').waitFor();
    const waterRow = await pub.locator('tr', { hasText: 'Water' }).textContent();
    assert.ok(!waterRow.includes('0.0%'), `the printed ranking shows no rate for what is not due yet: ${waterRow}`);
    await shot(pub, 'public-ranking');
    await pub.close();
    await page.getByTestId('theme-toggle').click(); // auto → light
    await page.getByTestId('theme-toggle').click(); // light → dark
    await page.goto(base + '/#/alerts');
    await page.getByTestId('queue-row').first().waitFor();
    assert.equal(await page.evaluate(() => document.documentElement.dataset.theme), 'dark');
    await shot(page, 'zh-queue-dark');
    await page.getByTestId('lang-toggle').click();
    await page.getByTestId('nav-queue').getByText('Alerts').waitFor();
    await shot(page, 'en-queue-dark');
  });

  test('the evaluation ranks the units by their cases', async () => {
    await page.goto(base + '/#/ranking');
    await page.getByTestId('ranking-table').waitFor();
    await page.locator('[data-testid=ranking-row]', { hasText: '城管 D01' }).waitFor();
    await shot(page, 'en-ranking-units');
    assert.equal(await page.locator('[data-testid^=ranking-alert]').count(), 0, 'the alert work-order statistics are gone');
    // The water unit's only case waits, dispatched, within its sign-for
    // deadline: its on-time rates are pending, not 0%.
    const water = page.locator('[data-testid=ranking-row]', { hasText: '水务局 Water' });
    await water.waitFor();
    assert.ok(await water.getByTestId('rate-pending').count() >= 1, 'pending rates show as —');
    assert.ok(!(await water.textContent()).includes('0%'), `no 0% for what is not due yet: ${await water.textContent()}`);
    await shot(page, 'en-ranking-pending');
  });

  test('the camera wall filters to the faulty', async () => {
    await page.goto(base + '/#/cameras');
    await page.getByTestId('camera-tile').first().waitFor();
    await page.locator('[data-testid=camera-tile][data-status]:not([data-status=never])').first().waitFor();
    // The healthy camera's still, fetched with the token in a header: the
    // wall fetches it again every minute, so a reload shows a newer one.
    const still = page.locator('[data-testid=camera-tile][data-id=cam-gate] [data-testid=camera-still]');
    for (let i = 0; i < 30 && !(await still.count()); i++) { await page.waitForTimeout(1000); await page.reload(); await page.getByTestId('camera-tile').first().waitFor(); }
    await still.waitFor();
    assert.ok(await still.evaluate((img) => img.complete && img.naturalWidth > 0), 'the still is a picture');
    assert.match(await still.getAttribute('src'), /^blob:/, 'the still comes from a fetch with the token, not a URL carrying it');
    // The low-frame-rate camera is degraded by its stream samples, whatever
    // the liveness probes between them say; its tile shows the fps measured.
    const market = page.locator('[data-testid=camera-tile][data-id=cam-market]');
    for (let i = 0; i < 30 && (await market.getAttribute('data-status')) !== 'degraded'; i++) { await page.waitForTimeout(1000); await page.reload(); await market.waitFor(); }
    assert.equal(await market.getAttribute('data-status'), 'degraded');
    assert.match(await market.getByTestId('camera-status').textContent(), /low_fps/);
    assert.match(await market.getByTestId('camera-fps').textContent(), /\d fps/);
    await shot(page, 'en-cameras-stills');
    await page.getByTestId('camera-faulty').check();
    const statuses = await page.getByTestId('camera-tile').evaluateAll((els) => els.map((e) => e.dataset.id + ':' + e.dataset.status));
    assert.deepEqual(statuses.sort(), ['cam-bridge:unreachable', 'cam-market:degraded'], `faulty only: ${statuses}`);
    await shot(page, 'en-cameras-faulty');
  });

  test('operations: readiness, ingest, ClickHouse, spool and losses', async () => {
    await page.goto(base + '/#/ops');
    await page.locator('[data-testid=ops-rates][data-ready]').waitFor();
    assert.match(await page.getByTestId('ops-clickhouse').textContent(), /ok/);
    await page.getByTestId('ops-losses').waitFor();
  });

  test('on a phone', async () => {
    const phone = watch(await browser.ctx.newPage(), problems);
    await phone.setViewportSize({ width: 390, height: 844 });
    await signIn(phone, tokens.dispatcher); // sessionStorage belongs to a tab
    await phone.goto(base + '/#/alerts');
    await phone.getByTestId('queue-row').first().waitFor();
    const box = await phone.getByTestId('queue-row').first().boundingBox();
    assert.ok(box.width <= 390, `a row fits the phone: ${box.width}`);
    await shot(phone, 'en-phone-queue');
    for (const [name, hash, ready] of [['cases', '#/', 'case-row'], ['map', '#/map', 'map-cell'], ['cameras', '#/cameras', 'camera-tile'], ['case', '#/case/' + breachCase, 'timeline'], ['ranking', '#/ranking', 'ranking-table']]) {
      await phone.goto(base + '/' + hash);
      await phone.getByTestId(ready).first().waitFor();
      const wide = await phone.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(name === 'ranking' || wide <= 390, `${name} fits the phone's width: ${wide}`);
      await shot(phone, 'en-phone-' + name);
    }
    await phone.close();
  });
});

describe('a scoped token on a wall screen', () => {
  test('opens /#token=…, drops it from the address, and sees only its grid', async () => {
    const wall = await launch();
    try {
      const p = watch(await wall.ctx.newPage(), problems);
      await p.setViewportSize({ width: 1920, height: 1080 });
      await signIn(p, tokens.d01);
      const st = await p.evaluate(() => ({ href: location.href, local: JSON.stringify(localStorage), session: sessionStorage.getItem('gridwatch.token'), hist: history.length }));
      assert.ok(!st.href.includes('token'), `the address keeps no token: ${st.href}`);
      assert.ok(!st.local.includes(tokens.d01));
      assert.equal(st.session, tokens.d01);
      assert.equal(await p.getByTestId('whoami-scope').textContent(), 'D01');
      await p.locator('[data-testid=case-row], [data-testid=case-empty]').first().waitFor();
      const caseGrids = await p.getByTestId('case-row').evaluateAll((els) => els.map((e) => e.dataset.grid));
      assert.ok(caseGrids.every((g) => g.startsWith('D01')), `only D01 cases: ${caseGrids}`);
      await shot(p, 'en-wall-cases');
      await p.goto(base + '/#/cameras');
      await p.getByTestId('camera-tile').first().waitFor();
      await shot(p, 'en-wall-cameras');
      await p.goto(base + '/#/alerts');
      await p.locator('[data-testid=queue-row], [data-testid=queue-empty]').first().waitFor();
      const grids = await p.getByTestId('queue-row').evaluateAll((els) => els.map((e) => e.dataset.device));
      assert.ok(!grids.includes(env.other.id), `the D02 alert stays out of sight: ${grids}`);
      await p.goto(base + '/#/map');
      await p.getByTestId('map-cell').first().waitFor();
      const cells = await p.getByTestId('map-cell').evaluateAll((els) => els.map((e) => e.dataset.grid));
      assert.ok(cells.length > 0 && cells.every((g) => g.startsWith('D01-')), `only D01 cells: ${cells}`);
      await p.waitForTimeout(300); // the markers follow the polygons
      await shot(p, 'en-wall-scoped-map');
      const device = await call(tokens.d01, '/api/v1/devices/' + env.other.id);
      assert.equal(device.status, 404);
      await p.goto(base + '/#/device/' + env.other.id);
      await p.getByTestId('device-error').waitFor();
      // A reload stays signed in (sessionStorage), as a wall screen must.
      await p.reload();
      await p.getByTestId('whoami').waitFor();
    } finally {
      await wall.close();
    }
  });
});
