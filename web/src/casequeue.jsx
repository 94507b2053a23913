// casequeue.jsx: the case queue (案卷), live, filtered and sorted in the
// browser, drawn through a virtualised list, with the bulk actions; and
// what a case's page shares with it. It is in the console's first chunk,
// without the map and chart libraries, so that the queue paints first.
import { useEffect, useLayoutEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as cases from './cases.js';
import { may as roleMay } from './roles.js';
import { APIError, api } from './api.js';
import { fmtDur, fmtTime, lang, t } from './i18n.js';
import { useAPI, useMedia, useNow, useVirtual } from './hooks.js';
import { Select } from './queue.jsx';

let categoryList = null;
// useCategories returns the case categories and a code → name map.
export function useCategories() {
  const [list, setList] = useState(categoryList);
  useEffect(() => {
    if (categoryList) return;
    api('/api/v1/cases/categories').then((d) => { categoryList = d.categories; setList(d.categories); }).catch(() => setList([]));
  }, []);
  const names = useMemo(() => Object.fromEntries((list || []).map((c) => [c.code, (lang === 'zh-CN' ? c.name_zh : c.name_en) || c.name_zh || c.code])), [list]);
  const emergency = useMemo(() => new Set((list || []).filter((c) => c.emergency).map((c) => c.code)), [list]);
  return { list: list || [], names, emergency };
}

// urgency is a case's severity as the case loop knows it: its category's
// (an emergency category, such as gas, fire or flooding, runs its
// deadlines in natural hours), for a case carries no severity of its own.
const urgency = (c, cats) => (cats.emergency.has(c.category) ? 'emergency' : 'routine');

// dayStart and dayEnd are the bounds, in epoch ms, of a date input's day
// (YYYY-MM-DD) in the browser's time zone; 0 for none.
const dayStart = (d) => (d ? new Date(d + 'T00:00').getTime() : 0);
const dayEnd = (d) => (d ? new Date(d + 'T00:00').getTime() + 86400e3 : 0);

export function CaseDue({ c, now }) {
  const d = cases.due(c);
  if (!d) return <span class="muted" data-testid="row-due">{c.status === 'suspended' ? t('caseStatus.suspended') : t('noDue')}</span>;
  const left = d.at - now;
  const late = left <= 0 || cases.overdue(c, now);
  return (
    <span class={'due' + (late ? ' overdue' : left < 30 * 60e3 ? ' soon' : '')} data-testid="row-due" title={fmtTime(d.at)}>
      {late ? t('overdueBy', { t: fmtDur(-left) }) : t('dueCase.' + d.kind, { t: fmtDur(left) })}
    </span>
  );
}

// explainCase turns an action's failure into a sentence; a conflict
// reloads the case, so the next try starts from what is stored.
export async function explainCase(c, e) {
  if (e instanceof APIError && (e.status === 409 || e.status === 412)) {
    try {
      const cur = await api('/api/v1/cases/' + encodeURIComponent(c.id));
      cases.put(cur);
      return t('conflict', { id: c.id, v: cur.version });
    } catch {
      return t('conflict', { id: c.id, v: '?' });
    }
  }
  return `${c.id}: ${e.message}`;
}

const caseSorters = {
  fired: (a, b) => (b.received || '').localeCompare(a.received || '') || a.id.localeCompare(b.id),
  due: (a, b) => ((cases.due(a)?.at ?? Infinity) - (cases.due(b)?.at ?? Infinity)) || a.id.localeCompare(b.id),
};

export function CaseQueue({ me, params }) {
  const [st, setSt] = useState(() => ({ ...cases.snapshot() }));
  useEffect(() => cases.subscribe((s) => setSt({ ...s })), []);
  const cats = useCategories();
  const units = useAPI('/api/v1/units');
  const unitName = useMemo(() => Object.fromEntries((units.data?.units || []).map((u) => [u.code, u.name || u.code])), [units.data]);
  const [f, setF] = useState(() => ({ status: params.get('status') || '', source: '', category: '', urgency: '', unit: params.get('unit') || '', grid: params.get('grid') || '', overdue: params.get('overdue') === '1', from: '', to: '', text: params.get('text') || '', sort: 'fired' }));
  const set = (k) => (v) => setF((o) => ({ ...o, [k]: v }));
  const now = useNow(1000);
  const all = useMemo(() => [...st.byId.values()], [st.version]);
  const rows = useMemo(() => all.filter((c) => {
    if (f.status && c.status !== f.status) return false;
    if (f.source && c.source !== f.source) return false;
    if (f.category && c.category !== f.category) return false;
    if (f.urgency && urgency(c, cats) !== f.urgency) return false;
    if (f.unit && c.unit !== f.unit) return false;
    if (f.from && !(Date.parse(c.received) >= dayStart(f.from))) return false;
    if (f.to && !(Date.parse(c.received) < dayEnd(f.to))) return false;
    if (f.grid && !(c.grid === f.grid || (c.grid || '').startsWith(f.grid + '-'))) return false;
    if (f.overdue && !cases.overdue(c)) return false;
    if (f.text) {
      const s = f.text.toLowerCase();
      if (![c.id, c.device, c.description, c.address, c.grid, c.unit, c.reporter, cats.names[c.category]].some((v) => v && v.toLowerCase().includes(s))) return false;
    }
    return true;
  }).sort(caseSorters[f.sort]), [all, f, cats.names, cats.emergency, f.overdue ? Math.floor(now / 60e3) : 0]);
  const [sel, setSel] = useState(() => new Set());
  const [msg, setMsg] = useState(null);
  const [busy, setBusy] = useState(false);
  const [bulkUnit, setBulkUnit] = useState('');
  const [showFilters, setShowFilters] = useState(false);
  const phone = useMedia('(max-width: 720px)');
  const scrollRef = useRef(null);
  const v = useVirtual(rows.length, scrollRef, phone ? 92 : 52);
  useEffect(() => v.measure(), [phone]);
  // A mark of the page's timeline when the first rows are in the page.
  const marked = useRef(false);
  useLayoutEffect(() => {
    if (!marked.current && scrollRef.current && scrollRef.current.querySelector('[data-testid=case-row]')) {
      marked.current = true;
      performance.mark('gw:cases:first-rows');
    }
  });
  const may = (c, k) => cases.allowed(c, me).includes(k);
  const bulk = async (kind, extra) => {
    setBusy(true);
    let ok = 0;
    let skipped = 0;
    const errs = [];
    for (const id of sel) {
      // The latest state: an earlier answer or the stream may have moved it.
      const c = cases.snapshot().byId.get(id);
      if (!c) continue;
      if (!may(c, kind)) { skipped++; continue; }
      try { await cases.act(c, kind, extra); ok++; } catch (e) { errs.push(await explainCase(c, e)); }
    }
    setBusy(false);
    setSel(new Set());
    setMsg({ ok, errs, skipped });
  };
  const toggle = (id) => setSel((s) => { const n = new Set(s); n.has(id) ? n.delete(id) : n.add(id); return n; });
  const bulkSign = roleMay(me.role, 'sign');
  const bulkDispatch = roleMay(me.role, 'dispatch');
  const canBulk = bulkSign || bulkDispatch;
  return (
    <section class="queue" data-testid="case-queue">
      <div class={'filters' + (showFilters ? ' open' : '')}>
        <button type="button" class="ghost small filter-toggle" onClick={() => setShowFilters(!showFilters)} data-testid="case-filter-toggle">{t('filters', { n: ['status', 'source', 'category', 'urgency', 'unit', 'grid', 'from', 'to', 'text'].filter((k) => f[k]).length + (f.overdue ? 1 : 0) })}</button>
        <Select label={t('filterStatus')} value={f.status} onChange={set('status')} options={cases.openStatuses} testid="case-filter-status" render={(o) => t('caseStatus.' + o)} />
        <Select label={t('source')} value={f.source} onChange={set('source')} options={cases.sources} testid="case-filter-source" render={(o) => t('sources.' + o)} />
        <Select label={t('filterCategory')} value={f.category} onChange={set('category')} options={[...new Set(all.map((c) => c.category).filter(Boolean))].sort()} testid="case-filter-category" render={(o) => cats.names[o] || o} />
        <Select label={t('filterSeverity')} value={f.urgency} onChange={set('urgency')} options={['emergency', 'routine']} testid="case-filter-urgency" render={(o) => t('urgency.' + o)} />
        <Select label={t('filterUnit')} value={f.unit} onChange={set('unit')} options={Object.keys(unitName)} testid="case-filter-unit" render={(o) => unitName[o]} />
        <label class="field">{t('filterGrid')}<input value={f.grid} onInput={(e) => set('grid')(e.currentTarget.value.trim())} size="12" data-testid="case-filter-grid" /></label>
        <label class="field">{t('receivedFrom')}<input type="date" value={f.from} onInput={(e) => set('from')(e.currentTarget.value)} data-testid="case-filter-from" /></label>
        <label class="field">{t('receivedTo')}<input type="date" value={f.to} onInput={(e) => set('to')(e.currentTarget.value)} data-testid="case-filter-to" /></label>
        <label class="field">{t('search')}<input type="search" value={f.text} onInput={(e) => set('text')(e.currentTarget.value)} size="14" data-testid="case-filter-text" /></label>
        <label class="field">{t('sort')}
          <select value={f.sort} onChange={(e) => set('sort')(e.currentTarget.value)}>{Object.keys(caseSorters).map((k) => <option value={k}>{t('sorts.' + k)}</option>)}</select>
        </label>
        <label class="check"><input type="checkbox" checked={f.overdue} onChange={(e) => set('overdue')(e.currentTarget.checked)} data-testid="case-filter-overdue" />{t('filterOverdue')}</label>
        <span class="spacer" />
        {canBulk && rows.length > 0 && <button type="button" class="ghost small" onClick={() => setSel(new Set(rows.map((c) => c.id)))} data-testid="case-select-shown">{t('selectShown', { n: rows.length })}</button>}
        <span class={'live ' + st.live} data-testid="case-live">{t('live.' + st.live)}</span>
        <span class="count" data-testid="case-count">{t('shown', { n: rows.length, total: st.byId.size })}{!st.complete && st.loaded ? ' · ' + t('loadingMore', { n: st.byId.size }) : ''}</span>
      </div>
      {canBulk && sel.size > 0 && (
        <div class="bulk" data-testid="case-bulk-bar">
          <span>{t('selected', { n: sel.size })}</span>
          {bulkSign && <button disabled={busy} onClick={() => bulk('sign')} data-testid="case-bulk-sign">{t('bulkSign', { n: sel.size })}</button>}
          {bulkDispatch && <>
            <select value={bulkUnit} onChange={(e) => setBulkUnit(e.currentTarget.value)} data-testid="case-bulk-unit">
              <option value="">{t('unitRouted')}</option>
              {Object.entries(unitName).map(([c, n]) => <option value={c}>{n}</option>)}
            </select>
            <button disabled={busy} onClick={() => bulk('dispatch', bulkUnit ? { unit: bulkUnit } : {})} data-testid="case-bulk-dispatch">{t('bulkDispatch', { n: sel.size })}</button>
          </>}
          <button class="ghost" onClick={() => setSel(new Set())}>{t('clearSel')}</button>
        </div>
      )}
      {msg && (
        <div class={'notice' + (msg.errs.length ? ' bad' : '')} data-testid="case-message" role="status">
          {msg.ok > 0 && <span data-testid="case-bulk-done">{t('done', { n: msg.ok })} </span>}
          {msg.skipped > 0 && <span data-testid="case-bulk-skipped">{t('skipped', { n: msg.skipped })} </span>}
          {msg.errs.length > 0 && <span>{t('failed', { n: msg.errs.length })}: </span>}
          {msg.errs.map((e) => <div data-testid="action-error">{e}</div>)}
          <button class="ghost" onClick={() => setMsg(null)}>×</button>
        </div>
      )}
      {st.error && <p class="error">{t('error')}: {st.error.message}</p>}
      {!st.loaded && !st.error && <p class="muted pad">{t('loading')}</p>}
      {st.loaded && rows.length === 0 && <p class="muted pad" data-testid="case-empty">{t('none')}</p>}
      <div class="rows" ref={scrollRef} data-testid="case-rows">
        <div style={{ height: v.getTotalSize() + 'px', position: 'relative' }}>
          {v.getVirtualItems().map((it) => {
            const c = rows[it.index];
            const late = cases.overdue(c, now);
            return (
              <div key={c.id} class={'row case' + (late ? ' late' : '') + (c.supervised ? ' supervised' : '') + (sel.has(c.id) ? ' selected' : '')}
                style={{ transform: `translateY(${it.start}px)`, height: it.size + 'px' }}
                data-testid="case-row" data-id={c.id} data-device={c.device || ''} data-status={c.status} data-source={c.source} data-grid={c.grid || ''}>
                {canBulk ? <input type="checkbox" checked={sel.has(c.id)} onChange={() => toggle(c.id)} data-testid="case-select" aria-label={c.id} /> : <span />}
                <span class="sev pill">{t('sources.' + c.source)}</span>
                <a class="what" href={'#/case/' + encodeURIComponent(c.id)} data-testid="case-link">
                  <b>{cats.emergency.has(c.category) && <span class="pill sev-critical" data-testid="case-emergency">{t('urgency.emergency')}</span>} {cats.names[c.category] || c.category}{c.description ? ' · ' + c.description : ''}</b>
                  <small>{c.id} · {c.device ? c.device + ' · ' : ''}{c.grid}{c.address ? ' · ' + c.address : ''}</small>
                </a>
                <span class="unit">{unitName[c.unit] || c.unit || '—'}</span>
                <span class={'status pill cs-' + c.status} data-testid="case-status">{t('caseStatus.' + c.status)}</span>
                <CaseDue c={c} now={now} />
                <span class="when muted">{fmtTime(c.received)}</span>
                {may(c, 'sign') ? <button class="small" onClick={() => cases.act(c, 'sign').catch(async (e) => setMsg({ ok: 0, errs: [await explainCase(c, e)] }))} data-testid="case-row-sign">{t('caseActions.sign')}</button>
                  : may(c, 'register') ? <button class="small" onClick={() => cases.act(c, 'register').catch(async (e) => setMsg({ ok: 0, errs: [await explainCase(c, e)] }))} data-testid="case-row-register">{t('caseActions.register')}</button>
                    : <span />}
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
