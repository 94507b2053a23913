// queue.jsx is the work-order queue: every open work order in the token's
// scope, live from the stream, filtered and sorted in the browser, drawn
// through a virtualised list, with sign-for and dispatch one by one or in
// bulk.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as alerts from './alerts.js';
import { APIError, api } from './api.js';
import { fmtDur, fmtTime, t } from './i18n.js';
import { useAPI, useMedia, useNow, useVirtual } from './hooks.js';

const sevRank = { info: 0, minor: 1, major: 2, critical: 3 };
// canAct tells whether the role may act on alert work orders (operator and up).
export const canAct = (me) => ['operator', 'dispatcher', 'supervisor', 'admin'].includes(me.role);

// Due shows the deadline that counts now as a countdown, overdue in red.
export function Due({ a, now }) {
  const d = alerts.due(a);
  if (!d) return <span class="muted" data-testid="row-due">{t('noDue')}</span>;
  const left = d.at - now;
  const late = left <= 0 || alerts.overdue(a, now);
  return (
    <span class={'due' + (late ? ' overdue' : left < 10 * 60e3 ? ' soon' : '')} data-testid="row-due" title={fmtTime(d.at)}>
      {late ? t('overdueBy', { t: fmtDur(-left) }) : t(d.kind === 'ack' ? 'dueAck' : 'dueResolve', { t: fmtDur(left) })}
    </span>
  );
}

// explain turns an action's failure into a sentence; a conflict reloads the
// work order, so the next try starts from what is stored.
export async function explain(a, e) {
  if (e instanceof APIError && e.status === 409) {
    try {
      const cur = await api('/api/v1/alerts/' + encodeURIComponent(a.id));
      alerts.put(cur);
      return t('conflict', { id: a.id, v: cur.version });
    } catch {
      return t('conflict', { id: a.id, v: e.etag || '?' });
    }
  }
  return `${a.id}: ${e.message}`;
}

function matches(a, f, now) {
  if (f.status && a.status !== f.status) return false;
  if (f.severity && a.severity !== f.severity) return false;
  if (f.category && a.category !== f.category) return false;
  if (f.unit && a.unit !== f.unit) return false;
  if (f.grid && !(a.grid === f.grid || (a.grid || '').startsWith(f.grid + '-'))) return false;
  if (f.overdue && !alerts.overdue(a, now)) return false;
  if (f.since && !(Date.parse(a.fired) >= f.sinceMs)) return false;
  if (f.text) {
    const s = f.text.toLowerCase();
    if (![a.id, a.device, a.rule, a.summary, a.grid, a.unit].some((v) => v && v.toLowerCase().includes(s))) return false;
  }
  return true;
}

const sorters = {
  fired: (a, b) => (b.fired || '').localeCompare(a.fired || '') || a.id.localeCompare(b.id),
  due: (a, b) => ((alerts.due(a)?.at ?? Infinity) - (alerts.due(b)?.at ?? Infinity)) || a.id.localeCompare(b.id),
  severity: (a, b) => (sevRank[b.severity] - sevRank[a.severity]) || sorters.fired(a, b),
};

export function Select({ label, value, onChange, options, testid, render = (o) => o }) {
  return (
    <label class="field">{label}
      <select value={value} onChange={(e) => onChange(e.currentTarget.value)} data-testid={testid}>
        <option value="">{t('all')}</option>
        {options.map((o) => <option value={o}>{render(o)}</option>)}
      </select>
    </label>
  );
}

export function Queue({ me, params }) {
  const [st, setSt] = useState(() => ({ ...alerts.snapshot() }));
  useEffect(() => alerts.subscribe((s) => setSt({ ...s })), []);
  const [f, setF] = useState(() => ({
    status: params.get('status') || '', severity: '', category: '', unit: params.get('unit') || '', grid: params.get('grid') || '',
    overdue: params.get('overdue') === '1', text: params.get('text') || '', sort: 'fired', since: '', sinceMs: 0,
  }));
  const set = (k) => (v) => setF((o) => ({ ...o, [k]: v }));
  const now = useNow(1000);
  const minute = Math.floor(now / 60e3);
  const all = useMemo(() => [...st.byId.values()], [st.version]);
  const rows = useMemo(() => all.filter((a) => matches(a, f, Date.now())).sort(sorters[f.sort]), [all, f, f.overdue ? minute : 0]);
  const units = useAPI('/api/v1/units');
  const unitName = useMemo(() => Object.fromEntries((units.data?.units || []).map((u) => [u.code, u.name || u.code])), [units.data]);
  const categories = useMemo(() => [...new Set(all.map((a) => a.category).filter(Boolean))].sort(), [all]);
  const [sel, setSel] = useState(() => new Set());
  const [msg, setMsg] = useState(null);
  const [busy, setBusy] = useState(false);
  const [bulkUnit, setBulkUnit] = useState('');
  const phone = useMedia('(max-width: 720px)');
  const scrollRef = useRef(null);
  const v = useVirtual(rows.length, scrollRef, phone ? 92 : 52);
  useEffect(() => v.measure(), [phone]);
  const actor = canAct(me);
  const [showFilters, setShowFilters] = useState(false);
  const active = ['status', 'severity', 'category', 'unit', 'grid', 'text', 'since'].filter((k) => f[k]).length + (f.overdue ? 1 : 0);

  const toggle = (id) => setSel((s) => { const n = new Set(s); n.has(id) ? n.delete(id) : n.add(id); return n; });
  const bulk = async (kind, extra) => {
    setBusy(true);
    let ok = 0;
    const errs = [];
    for (const id of sel) {
      const a = st.byId.get(id);
      if (!a) continue;
      try { await alerts.act(a, kind, extra); ok++; } catch (e) { errs.push(await explain(a, e)); }
    }
    setBusy(false);
    setSel(new Set());
    setMsg({ ok, errs });
  };
  const ackOne = async (a) => {
    try { await alerts.act(a, 'ack'); setMsg({ ok: 1, errs: [] }); } catch (e) { setMsg({ ok: 0, errs: [await explain(a, e)] }); }
  };

  return (
    <section class="queue" data-testid="queue">
      <div class={'filters' + (showFilters ? ' open' : '')}>
        <button type="button" class="ghost small filter-toggle" onClick={() => setShowFilters(!showFilters)} data-testid="filter-toggle">{t('filters', { n: active })}</button>
        <Select label={t('filterStatus')} value={f.status} onChange={set('status')} options={alerts.openStatuses} testid="filter-status" render={(o) => t('status.' + o)} />
        <Select label={t('filterSeverity')} value={f.severity} onChange={set('severity')} options={['critical', 'major', 'minor', 'info']} testid="filter-severity" render={(o) => t('severity.' + o)} />
        <Select label={t('filterCategory')} value={f.category} onChange={set('category')} options={categories} testid="filter-category" render={(o) => t('categories.' + o)} />
        <Select label={t('filterUnit')} value={f.unit} onChange={set('unit')} options={Object.keys(unitName)} testid="filter-unit" render={(o) => unitName[o]} />
        <label class="field">{t('filterGrid')}<input value={f.grid} onInput={(e) => set('grid')(e.currentTarget.value.trim())} data-testid="filter-grid" size="12" /></label>
        <label class="field">{t('firedSince')}<input type="date" value={f.since} onInput={(e) => { const v = e.currentTarget.value; setF((o) => ({ ...o, since: v, sinceMs: v ? new Date(v + 'T00:00').getTime() : 0 })); }} data-testid="filter-since" /></label>
        <label class="field">{t('search')}<input type="search" value={f.text} onInput={(e) => set('text')(e.currentTarget.value)} data-testid="filter-text" size="14" /></label>
        <label class="field">{t('sort')}
          <select value={f.sort} onChange={(e) => set('sort')(e.currentTarget.value)} data-testid="queue-sort">
            {Object.keys(sorters).map((k) => <option value={k}>{t('sorts.' + k)}</option>)}
          </select>
        </label>
        <label class="check"><input type="checkbox" checked={f.overdue} onChange={(e) => set('overdue')(e.currentTarget.checked)} data-testid="filter-overdue" />{t('filterOverdue')}</label>
        <span class="spacer" />
        <span class={'live ' + st.live} data-testid="queue-live">{t('live.' + st.live)}</span>
        <span class="count" data-testid="queue-count">{t('shown', { n: rows.length, total: st.byId.size })}{!st.complete && st.loaded ? ' · ' + t('loadingMore', { n: st.byId.size }) : ''}</span>
      </div>
      {actor && sel.size > 0 && (
        <div class="bulk" data-testid="bulk-bar">
          <span>{t('selected', { n: sel.size })}</span>
          <button disabled={busy} onClick={() => bulk('ack')} data-testid="bulk-ack">{t('bulkAck', { n: sel.size })}</button>
          <select value={bulkUnit} onChange={(e) => setBulkUnit(e.currentTarget.value)} data-testid="bulk-unit">
            <option value="">{t('unitRouted')}</option>
            {Object.entries(unitName).map(([c, n]) => <option value={c}>{n}</option>)}
          </select>
          <button disabled={busy} onClick={() => bulk('dispatch', bulkUnit ? { unit: bulkUnit } : {})} data-testid="bulk-dispatch">{t('bulkDispatch', { n: sel.size })}</button>
          <button class="ghost" onClick={() => setSel(new Set())}>{t('clearSel')}</button>
        </div>
      )}
      {msg && (
        <div class={'notice' + (msg.errs.length ? ' bad' : '')} data-testid="queue-message" role="status">
          {msg.ok > 0 && <span>{t('done', { n: msg.ok })} </span>}
          {msg.errs.length > 0 && <span>{t('failed', { n: msg.errs.length })}: </span>}
          {msg.errs.map((e) => <div data-testid="action-error">{e}</div>)}
          <button class="ghost" onClick={() => setMsg(null)}>×</button>
        </div>
      )}
      {st.error && <p class="error" data-testid="queue-error">{t('error')}: {st.error.message}</p>}
      {!st.loaded && !st.error && <p class="muted pad">{t('loading')}</p>}
      {st.loaded && rows.length === 0 && <p class="muted pad" data-testid="queue-empty">{t('none')}</p>}
      <div class="rows" ref={scrollRef} data-testid="queue-rows">
        <div style={{ height: v.getTotalSize() + 'px', position: 'relative' }}>
          {v.getVirtualItems().map((it) => {
            const a = rows[it.index];
            const late = alerts.overdue(a, now);
            return (
              <div key={a.id} class={'row sev-' + a.severity + (late ? ' late' : '') + (sel.has(a.id) ? ' selected' : '')}
                style={{ transform: `translateY(${it.start}px)`, height: it.size + 'px' }}
                data-testid="queue-row" data-id={a.id} data-device={a.device || ''} data-status={a.status} data-rule={a.rule}>
                {actor && <input type="checkbox" checked={sel.has(a.id)} onChange={() => toggle(a.id)} data-testid="row-select" aria-label={a.id} />}
                <span class={'sev pill sev-' + a.severity}>{t('severity.' + a.severity)}</span>
                <a class="what" href={'#/alert/' + encodeURIComponent(a.id)} data-testid="row-link">
                  <b>{a.summary || a.rule}</b>
                  <small>{a.device ? a.device + ' · ' : ''}{a.grid}</small>
                </a>
                <span class="unit">{unitName[a.unit] || a.unit || '—'}</span>
                <span class={'status pill st-' + a.status} data-testid="row-status">{t('status.' + a.status)}</span>
                <Due a={a} now={now} />
                <span class="when muted">{fmtTime(a.fired)}</span>
                {actor && (a.status === 'new' || a.status === 'reopened')
                  ? <button class="small" onClick={() => ackOne(a)} data-testid="row-ack">{t('actions.ack')}</button>
                  : <span />}
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
