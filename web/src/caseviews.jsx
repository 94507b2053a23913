// caseviews.jsx: a case's page with its timeline and the actions the
// caller's role and the case's status allow, and the patrol report form
// (category, location from GPS or the map, description, photos). It is
// loaded when first opened (with Leaflet and uPlot).
import L from './leaflet.js';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as cases from './cases.js';
import { canReport } from './roles.js';
import { api, blobURL } from './api.js';
import { fmtTime, t } from './i18n.js';
import { useAPI, useNow } from './hooks.js';
import { CaseDue, explainCase, useCategories } from './casequeue.jsx';
import { MiniMap } from './minimap.jsx';
import { TelemetryChart } from './chart.jsx';
import { CameraHealth } from './cameras.jsx';
import { addBasemap } from './basemap.js';

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
  const units = useAPI('/api/v1/units');
  const unitName = (code) => (units.data?.units || []).find((u) => u.code === code)?.name || code || '—';
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
            <dt>{t('unit')}</dt><dd data-testid="case-unit-shown" data-unit={c.unit || ''}>{unitName(c.unit)}</dd>
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
      {c.device && (dev.data?.type === 'camera' || c.source === 'camera') && <CameraHealth id={c.device} />}
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
    const off = addBasemap(map);
    return () => { off(); map.stop(); map.remove(); };
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
