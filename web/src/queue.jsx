// queue.jsx is the alert queue: every firing alert in the token's scope,
// live from the stream, filtered and sorted in the browser, drawn through a
// virtualised list. An alert is a detection record; each row links to the
// alert and to the case it raised, where the work is done.
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as alerts from './alerts.js';
import { fmtTime, t } from './i18n.js';
import { useMedia, useVirtual } from './hooks.js';

const sevRank = { info: 0, minor: 1, major: 2, critical: 3 };

function matches(a, f) {
  if (f.severity && a.severity !== f.severity) return false;
  if (f.category && a.category !== f.category) return false;
  if (f.grid && !(a.grid === f.grid || (a.grid || '').startsWith(f.grid + '-'))) return false;
  if (f.since && !(Date.parse(a.fired) >= f.sinceMs)) return false;
  if (f.text) {
    const s = f.text.toLowerCase();
    if (![a.id, a.device, a.rule, a.summary, a.grid, a.case].some((v) => v && v.toLowerCase().includes(s))) return false;
  }
  return true;
}

const sorters = {
  fired: (a, b) => (b.fired || '').localeCompare(a.fired || '') || a.id.localeCompare(b.id),
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

// CaseLink links to the case an alert raised or joined, once it has one.
export function CaseLink({ a, testid }) {
  if (!a.case) return <span class="muted" data-testid={testid}>{t('noCaseYet')}</span>;
  return <a href={'#/case/' + encodeURIComponent(a.case)} data-testid={testid}>{t('caseOf', { id: a.case })}</a>;
}

export function Queue({ params }) {
  const [st, setSt] = useState(() => ({ ...alerts.snapshot() }));
  useEffect(() => alerts.subscribe((s) => setSt({ ...s })), []);
  const [f, setF] = useState(() => ({
    severity: '', category: '', grid: params.get('grid') || '', text: params.get('text') || '', sort: 'fired', since: '', sinceMs: 0,
  }));
  const set = (k) => (v) => setF((o) => ({ ...o, [k]: v }));
  const all = useMemo(() => [...st.byId.values()], [st.version]);
  const rows = useMemo(() => all.filter((a) => matches(a, f)).sort(sorters[f.sort]), [all, f]);
  const categories = useMemo(() => [...new Set(all.map((a) => a.category).filter(Boolean))].sort(), [all]);
  const phone = useMedia('(max-width: 720px)');
  const scrollRef = useRef(null);
  const v = useVirtual(rows.length, scrollRef, phone ? 92 : 52);
  useEffect(() => v.measure(), [phone]);
  const [showFilters, setShowFilters] = useState(false);
  const active = ['severity', 'category', 'grid', 'text', 'since'].filter((k) => f[k]).length;

  return (
    <section class="queue" data-testid="queue">
      <div class={'filters' + (showFilters ? ' open' : '')}>
        <button type="button" class="ghost small filter-toggle" onClick={() => setShowFilters(!showFilters)} data-testid="filter-toggle">{t('filters', { n: active })}</button>
        <Select label={t('filterSeverity')} value={f.severity} onChange={set('severity')} options={['critical', 'major', 'minor', 'info']} testid="filter-severity" render={(o) => t('severity.' + o)} />
        <Select label={t('filterCategory')} value={f.category} onChange={set('category')} options={categories} testid="filter-category" render={(o) => t('categories.' + o)} />
        <label class="field">{t('filterGrid')}<input value={f.grid} onInput={(e) => set('grid')(e.currentTarget.value.trim())} data-testid="filter-grid" size="12" /></label>
        <label class="field">{t('firedSince')}<input type="date" value={f.since} onInput={(e) => { const v = e.currentTarget.value; setF((o) => ({ ...o, since: v, sinceMs: v ? new Date(v + 'T00:00').getTime() : 0 })); }} data-testid="filter-since" /></label>
        <label class="field">{t('search')}<input type="search" value={f.text} onInput={(e) => set('text')(e.currentTarget.value)} data-testid="filter-text" size="14" /></label>
        <label class="field">{t('sort')}
          <select value={f.sort} onChange={(e) => set('sort')(e.currentTarget.value)} data-testid="queue-sort">
            {Object.keys(sorters).map((k) => <option value={k}>{t('sorts.' + k)}</option>)}
          </select>
        </label>
        <span class="spacer" />
        <span class={'live ' + st.live} data-testid="queue-live">{t('live.' + st.live)}</span>
        <span class="count" data-testid="queue-count">{t('shown', { n: rows.length, total: st.byId.size })}{!st.complete && st.loaded ? ' · ' + t('loadingMore', { n: st.byId.size }) : ''}</span>
      </div>
      {st.error && <p class="error" data-testid="queue-error">{t('error')}: {st.error.message}</p>}
      {!st.loaded && !st.error && <p class="muted pad">{t('loading')}</p>}
      {st.loaded && rows.length === 0 && <p class="muted pad" data-testid="queue-empty">{t('none')}</p>}
      <div class="rows" ref={scrollRef} data-testid="queue-rows">
        <div style={{ height: v.getTotalSize() + 'px', position: 'relative' }}>
          {v.getVirtualItems().map((it) => {
            const a = rows[it.index];
            return (
              <div key={a.id} class={'row alert-row sev-' + a.severity}
                style={{ transform: `translateY(${it.start}px)`, height: it.size + 'px' }}
                data-testid="queue-row" data-id={a.id} data-device={a.device || ''} data-condition={a.condition} data-rule={a.rule}>
                <span class={'sev pill sev-' + a.severity}>{t('severity.' + a.severity)}</span>
                <a class="what" href={'#/alert/' + encodeURIComponent(a.id)} data-testid="row-link">
                  <b>{a.summary || a.rule}</b>
                  <small>{a.device ? a.device + ' · ' : ''}{a.grid}</small>
                </a>
                <span class="unit">{t('categories.' + a.category)}</span>
                <CaseLink a={a} testid="row-case" />
                <span class="when muted">{fmtTime(a.fired)}</span>
              </div>
            );
          })}
        </div>
      </div>
    </section>
  );
}
