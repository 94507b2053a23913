// caseviews.jsx: the case queue (案卷), a case's page with its timeline and
// the actions the caller's role and the case's status allow, and the patrol
// report form (category, location from GPS or the map, description,
// photos).
import L from 'leaflet';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as cases from './cases.js';
import { canReport, may as roleMay } from './roles.js';
import { APIError, api, blobURL } from './api.js';
import { fmtDur, fmtTime, lang, t } from './i18n.js';
import { useAPI, useMedia, useNow, useVirtual } from './hooks.js';
import { Select } from './queue.jsx';
import { MiniMap } from './minimap.jsx';
import { TelemetryChart } from './chart.jsx';
import { CameraHealth } from './cameras.jsx';

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

function CaseDue({ c, now }) {
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
async function explainCase(c, e) {
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

// Photo shows an attached photo, fetched with the token.
function Photo({ caseId, hash }) {
  const [src, setSrc] = useState(null);
  useEffect(() => {
    const ctl = new AbortController();
    let url = null;
    blobURL(`/api/v1/cases/${encodeURIComponent(caseId)}/photos/${encodeURIComponent(hash)}`, ctl.signal).then((u) => { url = u; setSrc(u); }).catch(() => {});
    return () => { ctl.abort(); if (url) URL.revokeObjectURL(url); };
  }, [caseId, hash]);
  return src ? <a href={src} target="_blank" rel="noopener"><img class="photo" src={src} alt={hash} data-testid="evidence-photo" /></a> : <span class="muted">{t('loading')}</span>;
}

// PhotoPicker uploads the photos chosen and reports their hashes.
function PhotoPicker({ hashes, setHashes, testid }) {
  const [err, setErr] = useState(null);
  const [busy, setBusy] = useState(false);
  const pick = async (e) => {
    setBusy(true);
    setErr(null);
    try {
      const out = [...hashes];
      for (const f of e.currentTarget.files) out.push(await cases.uploadPhoto(f));
      setHashes(out);
    } catch (ex) {
      setErr(ex.message);
    } finally {
      setBusy(false);
    }
  };
  return (
    <label class="field">{t('photos')}
      <input type="file" accept="image/jpeg,image/png" capture="environment" multiple onChange={pick} disabled={busy} data-testid={testid} />
      <span class="muted" data-testid={testid + '-count'}>{t('photosAttached', { n: hashes.length })}</span>
      {err && <span class="error">{err}</span>}
    </label>
  );
}

function CaseActions({ c, me, onDone }) {
  const units = useAPI('/api/v1/units');
  const [unit, setUnit] = useState('');
  const [note, setNote] = useState('');
  const [extend, setExtend] = useState('2 working_days');
  const [sat, setSat] = useState('5');
  const [evidence, setEvidence] = useState([]);
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState(null);
  const kinds = cases.allowed(c, me);
  if (kinds.length === 0) return <p class="muted" data-testid="no-actions">{t('noActions', { role: t('roles.' + me.role) })}</p>;
  const run = async (kind) => {
    setBusy(true);
    setMsg(null);
    try {
      const extra = {};
      if (note.trim()) extra.note = note.trim();
      if (kind === 'dispatch' && unit) extra.unit = unit;
      if (kind === 'extend_request') extra.extend = extend;
      if (kind === 'evaluate') extra.satisfaction = Number(sat);
      if (evidence.length && (kind === 'handle' || kind === 'note')) extra.evidence = evidence;
      await cases.act(c, kind, extra);
      setNote('');
      setEvidence([]);
    } catch (e) {
      setMsg(await explainCase(c, e));
    } finally {
      setBusy(false);
      onDone();
    }
  };
  return (
    <div class="actions" data-testid="case-actions">
      <textarea value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder={t('reasonPlaceholder')} data-testid="case-note" rows="2" />
      {kinds.includes('dispatch') && (
        <select value={unit} onChange={(e) => setUnit(e.currentTarget.value)} data-testid="case-unit">
          <option value="">{t('unitRouted')}</option>
          {(units.data?.units || []).map((u) => <option value={u.code}>{u.name || u.code}</option>)}
        </select>
      )}
      {kinds.includes('extend_request') && <input value={extend} onInput={(e) => setExtend(e.currentTarget.value)} data-testid="case-extend" />}
      {kinds.includes('evaluate') && (
        <select value={sat} onChange={(e) => setSat(e.currentTarget.value)} data-testid="case-satisfaction">{[5, 4, 3, 2, 1].map((n) => <option value={n}>{'★'.repeat(n)}</option>)}</select>
      )}
      {(kinds.includes('handle') || kinds.includes('note')) && <PhotoPicker hashes={evidence} setHashes={setEvidence} testid="case-photo" />}
      <div class="buttons">
        {kinds.map((k) => (
          <button disabled={busy || (cases.needsNote.has(k) && !note.trim())} onClick={() => run(k)} data-testid={'case-action-' + k} class={k === 'note' || k === 'supervise' ? 'ghost' : ''}>{t('caseActions.' + k)}</button>
        ))}
      </div>
      {msg && <p class="error" role="alert" data-testid="action-error">{msg}</p>}
    </div>
  );
}

// measured are the events a deadline is measured against (sign-for,
// handling, closing); on the others (a dispatch, a registration, an
// extension) the deadline is the one the event set.
const measured = new Set(['sign', 'handle', 'close']);

function caseDeadline(e) {
  if (!e.due) return null;
  if (!measured.has(e.kind)) return <span class="pill" title={fmtTime(e.due)} data-testid="event-deadline-set">{t('deadlineSet', { t: fmtTime(e.due) })}</span>;
  const met = Date.parse(e.ts) <= Date.parse(e.due);
  return <span class={'pill ' + (met ? 'st-ok' : 'st-bad')} title={fmtTime(e.due)} data-testid="event-deadline">{t(met ? 'met' : 'missed')} {fmtTime(e.due)}</span>;
}

export function CasePage({ id, me }) {
  const res = useAPI('/api/v1/cases/' + encodeURIComponent(id));
  const cats = useCategories();
  const now = useNow(1000);
  const c = res.data;
  // The page follows the case live: a change from elsewhere reloads it.
  useEffect(() => cases.subscribe((s) => {
    const cur = s.byId.get(id);
    if (cur && res.data && cur.version > res.data.version) res.reload();
  }), [res.data && res.data.version]);
  const dev = useAPI(c && c.device ? '/api/v1/devices/' + encodeURIComponent(c.device) : null);
  const latest = useAPI(c && c.device ? '/api/v1/devices/' + encodeURIComponent(c.device) + '/latest' : null);
  const [metric, setMetric] = useState('');
  const around = useMemo(() => {
    const at = c ? Date.parse(c.received) : 0;
    return { from: at - 3600e3, to: Math.min(Date.now(), at + 3600e3) };
  }, [c && c.id]);
  if (res.error) return <p class="error" data-testid="case-error">{res.error.status === 404 ? t('notFound') : res.error.message}</p>;
  if (!c) return <p class="muted pad">{t('loading')}</p>;
  const lat = c.location?.lat ?? dev.data?.lat;
  const lon = c.location?.lon ?? dev.data?.lon;
  return (
    <section class="alert-page" data-testid="case-page" data-status={c.status}>
      <p><a href="#/">← {t('cases')}</a></p>
      <h2><span class="pill">{t('sources.' + c.source)}</span> <span data-testid="case-title">{cats.names[c.category] || c.category}</span> <small class="muted">{c.id}</small></h2>
      <div class="cards">
        <div class="card">
          <dl>
            <dt>{t('filterStatus')}</dt><dd><span class={'pill cs-' + c.status} data-testid="case-status">{t('caseStatus.' + c.status)}</span>
              {c.supervised && <span class="pill st-bad"> {t('caseActions.supervise')}</span>}
              {c.pending && <span class="pill"> {t('caseActions.' + c.pending)}</span>}</dd>
            {c.description && <><dt>{t('description')}</dt><dd data-testid="case-description">{c.description}</dd></>}
            <dt>{t('reporter')}</dt><dd>{c.reporter || '—'}{c.origin ? ` (${c.origin})` : ''}</dd>
            {c.device && <><dt>{t('device')}</dt><dd><a href={'#/device/' + encodeURIComponent(c.device)}>{dev.data?.name || c.device}</a>
              {dev.data?.type === 'camera' && <> · <a href={'#/camera/' + encodeURIComponent(c.device)}>{t('probes')}</a></>}</dd></>}
            <dt>{t('grid')}</dt><dd>{c.grid || '—'}{c.address ? ' · ' + c.address : ''}</dd>
            <dt>{t('unit')}</dt><dd data-testid="case-unit-shown">{c.unit || '—'}</dd>
            <dt>{t('receivedAt')}</dt><dd>{fmtTime(c.received)}</dd>
            {c.sign_due && <><dt>{t('dueCase.signLabel')}</dt><dd>{fmtTime(c.sign_due)}</dd></>}
            {c.handle_due && <><dt>{t('dueCase.handleLabel')}</dt><dd>{fmtTime(c.handle_due)}</dd></>}
            {c.close_due && <><dt>{t('dueCase.closeLabel')}</dt><dd>{fmtTime(c.close_due)}</dd></>}
            {c.overdue && c.overdue.length > 0 && <><dt>{t('overdueTotal')}</dt><dd class="error">{c.overdue.map((k) => t('dueCase.' + k + 'Label')).join(', ')}</dd></>}
            {cases.due(c) && <><dt>{t('dueNow')}</dt><dd><CaseDue c={c} now={now} /></dd></>}
          </dl>
        </div>
        <div class="card"><CaseActions c={c} me={me} onDone={res.reload} /></div>
      </div>
      {dev.data?.type === 'camera' && <CameraHealth id={c.device} />}
      <MiniMap grid={c.grid} lat={lat} lon={lon} />
      {c.device && (latest.data?.metrics || []).length > 0 && (
        <div class="card">
          <h3>{t('telemetry')}
            <select value={metric || latest.data.metrics[0].metric} onChange={(e) => setMetric(e.currentTarget.value)} data-testid="case-metric">
              {latest.data.metrics.map((m) => <option value={m.metric}>{m.metric}</option>)}
            </select>
          </h3>
          <TelemetryChart device={c.device} metric={metric || latest.data.metrics[0].metric} from={around.from} to={around.to} step="30s" />
        </div>
      )}
      <div class="card">
        <h3>{t('timeline')}</h3>
        <ol class="timeline" data-testid="timeline">
          {c.timeline.map((e) => (
            <li data-testid="timeline-event" data-kind={e.kind}>
              <time>{fmtTime(e.ts)}</time>
              <b>{t('caseEvents.' + e.kind)}</b>
              {e.from && e.to && e.from !== e.to && <span class="muted"> {t('caseStatus.' + e.from)} → {t('caseStatus.' + e.to)}</span>}
              <span class="actor"> · {e.actor}{e.role ? ` (${t('roles.' + e.role)})` : ''}</span>
              {e.unit && <span class="muted"> · {e.unit}</span>}
              {' '}{caseDeadline(e)}
              {e.satisfaction ? <span> {'★'.repeat(e.satisfaction)}</span> : null}
              {e.note && <p class="note" data-testid="timeline-note">{e.note}</p>}
              {e.evidence && e.evidence.length > 0 && <div class="photos">{e.evidence.map((h) => <Photo caseId={c.id} hash={h} />)}</div>}
            </li>
          ))}
        </ol>
      </div>
    </section>
  );
}

// PickMap lets the reporter click where the case is, over the grid
// polygons.
function PickMap({ point, setPoint }) {
  const el = useRef(null);
  const ref = useRef(null);
  useEffect(() => {
    const map = L.map(el.current, { attributionControl: false, fadeAnimation: false, markerZoomAnimation: false });
    map.setView([30.27, 120.15], 12);
    ref.current = { map, marker: null };
    api('/api/v1/grids/export.geojson', { raw: true }).then((txt) => {
      const layer = L.geoJSON(JSON.parse(txt), { style: (f) => ({ weight: f.properties.level === 'grid' ? 1 : 2, fillOpacity: 0.05 }), interactive: false });
      const b = layer.getBounds();
      if (b.isValid()) map.fitBounds(b, { animate: false });
      layer.addTo(map);
    }).catch(() => {});
    map.on('click', (e) => setPoint({ lat: +e.latlng.lat.toFixed(6), lon: +e.latlng.lng.toFixed(6) }));
    return () => { map.stop(); map.remove(); };
  }, []);
  useEffect(() => {
    const m = ref.current;
    if (!m || !point) return;
    if (m.marker) m.marker.setLatLng([point.lat, point.lon]);
    else m.marker = L.circleMarker([point.lat, point.lon], { radius: 8, color: '#dc2626', fillOpacity: 0.9 }).addTo(m.map);
  }, [point]);
  return <div class="minimap pick" ref={el} data-testid="report-map" />;
}

export function ReportForm({ me }) {
  const cats = useCategories();
  const [category, setCategory] = useState('');
  const [description, setDescription] = useState('');
  const [address, setAddress] = useState('');
  const [point, setPoint] = useState(null);
  const [photos, setPhotos] = useState([]);
  const [busy, setBusy] = useState(false);
  const [err, setErr] = useState(null);
  const [gpsErr, setGpsErr] = useState(null);
  if (!canReport(me.role)) return <p class="muted pad" data-testid="no-report">{t('noActions', { role: t('roles.' + me.role) })}</p>;
  const gps = () => {
    setGpsErr(null);
    if (!navigator.geolocation) { setGpsErr(t('noGPS')); return; }
    navigator.geolocation.getCurrentPosition((p) => setPoint({ lat: +p.coords.latitude.toFixed(6), lon: +p.coords.longitude.toFixed(6) }), (e) => setGpsErr(e.message), { enableHighAccuracy: true, timeout: 15000 });
  };
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      const body = { category, description: description.trim(), evidence: photos };
      if (point) body.location = point;
      if (address.trim()) body.address = address.trim();
      const c = await api('/api/v1/cases', { method: 'POST', body });
      cases.put(c);
      location.hash = '#/case/' + encodeURIComponent(c.id);
    } catch (ex) {
      setErr(ex.message);
    } finally {
      setBusy(false);
    }
  };
  const majors = [...new Set(cats.list.map((c) => c.level))];
  return (
    <form class="card report" onSubmit={submit} data-testid="report-form">
      <h2>{t('report')}</h2>
      <label class="field">{t('filterCategory')}
        <select value={category} onChange={(e) => setCategory(e.currentTarget.value)} required data-testid="report-category">
          <option value="">—</option>
          {majors.map((lvl) => (
            <optgroup label={t('levels.' + lvl)}>
              {cats.list.filter((c) => c.level === lvl).map((c) => <option value={c.code}>{c.code} {cats.names[c.code]}</option>)}
            </optgroup>
          ))}
        </select>
      </label>
      <label class="field">{t('description')}<textarea value={description} onInput={(e) => setDescription(e.currentTarget.value)} rows="3" required data-testid="report-description" /></label>
      <label class="field">{t('address')}<input value={address} onInput={(e) => setAddress(e.currentTarget.value)} data-testid="report-address" /></label>
      <div class="field">{t('location')}
        <span><button type="button" class="ghost small" onClick={gps} data-testid="report-gps">{t('useGPS')}</button> <span data-testid="report-point">{point ? `${point.lat}, ${point.lon}` : t('clickMap')}</span></span>
        {gpsErr && <span class="error">{gpsErr}</span>}
      </div>
      <PickMap point={point} setPoint={setPoint} />
      <PhotoPicker hashes={photos} setHashes={setPhotos} testid="report-photo" />
      {err && <p class="error" role="alert" data-testid="report-error">{err}</p>}
      <button type="submit" disabled={busy || !category || !point} data-testid="report-submit">{t('submitReport')}</button>
    </form>
  );
}
