// alert.jsx is a work order's page: what fired, its deadlines, every action
// the caller's role and the order's status allow, the timeline, and the
// device's telemetry around the time it fired.
import { useMemo, useState } from 'preact/hooks';
import * as alerts from './alerts.js';
import { useAPI, useNow } from './hooks.js';
import { fmtNum, fmtTime, t } from './i18n.js';
import { Due, canAct, explain } from './queue.jsx';
import { TelemetryChart } from './chart.jsx';
import { MiniMap } from './minimap.jsx';

function deadline(due, doneAt, overdueFlag) {
  if (!due) return '—';
  const met = doneAt ? Date.parse(doneAt) <= Date.parse(due) : !overdueFlag && Date.parse(due) > Date.now();
  return (
    <span>{fmtTime(due)} {(doneAt || overdueFlag || Date.parse(due) <= Date.now()) && <span class={'pill ' + (met ? 'st-ok' : 'st-bad')}>{t(met ? 'met' : 'missed')}</span>}</span>
  );
}

function Actions({ a, me, onDone }) {
  const units = useAPI('/api/v1/units');
  const [unit, setUnit] = useState('');
  const [note, setNote] = useState('');
  const [busy, setBusy] = useState(false);
  const [msg, setMsg] = useState(null);
  if (!canAct(me)) return <p class="muted" data-testid="no-actions">{t('noActions', { role: t('roles.' + me.role) })}</p>;
  const run = async (kind) => {
    setBusy(true);
    setMsg(null);
    try {
      const extra = {};
      if (note.trim()) extra.note = note.trim();
      if (kind === 'dispatch' && unit) extra.unit = unit;
      await alerts.act(a, kind, extra);
      setNote('');
      onDone();
    } catch (e) {
      setMsg(await explain(a, e));
      onDone();
    } finally {
      setBusy(false);
    }
  };
  const kinds = alerts.allowed(a);
  return (
    <div class="actions" data-testid="actions">
      <textarea value={note} onInput={(e) => setNote(e.currentTarget.value)} placeholder={t('notePlaceholder')} data-testid="action-note" rows="2" />
      {kinds.includes('dispatch') && (
        <select value={unit} onChange={(e) => setUnit(e.currentTarget.value)} data-testid="action-unit">
          <option value="">{t('unitRouted')}{a.unit ? ` (${a.unit})` : ''}</option>
          {(units.data?.units || []).map((u) => <option value={u.code}>{u.name || u.code}</option>)}
        </select>
      )}
      <div class="buttons">
        {kinds.map((k) => (
          <button disabled={busy || (k === 'comment' && !note.trim())} onClick={() => run(k)} data-testid={'action-' + k} class={k === 'comment' ? 'ghost' : ''}>{t('actions.' + k)}</button>
        ))}
      </div>
      {msg && <p class="error" role="alert" data-testid="action-error">{msg}</p>}
    </div>
  );
}

export function AlertPage({ id, me }) {
  const res = useAPI('/api/v1/alerts/' + encodeURIComponent(id));
  const now = useNow(1000);
  const a = res.data;
  const latest = useAPI(a && a.device ? '/api/v1/devices/' + encodeURIComponent(a.device) + '/latest' : null);
  const dev = useAPI(a && a.device ? '/api/v1/devices/' + encodeURIComponent(a.device) : null);
  const [metric, setMetric] = useState('');
  const window = useMemo(() => {
    if (!a) return null;
    const fired = Date.parse(a.fired || a.pending_since || a.updated);
    return { from: fired - 3600e3, to: Math.min(Date.now(), fired + 3600e3) };
  }, [a && a.id]);
  if (res.error) return <p class="error" data-testid="alert-error">{res.error.status === 404 ? t('notFound') : res.error.message}</p>;
  if (!a) return <p class="muted pad">{t('loading')}</p>;
  const metrics = latest.data?.metrics || [];
  const chosen = metric || (metrics[0] && metrics[0].metric) || '';
  return (
    <section class="alert-page" data-testid="alert-page" data-status={a.status}>
      <p><a href="#/alerts">← {t('queue')}</a></p>
      <h2><span class={'sev pill sev-' + a.severity}>{t('severity.' + a.severity)}</span> <span data-testid="alert-summary">{a.summary || a.rule}</span></h2>
      <div class="cards">
        <div class="card">
          <dl>
            <dt>{t('filterStatus')}</dt><dd><span class={'pill st-' + a.status} data-testid="alert-status">{t('status.' + a.status)}</span> <span class="muted">{t('condition.' + a.condition)}</span></dd>
            <dt>{t('rule')}</dt><dd>{a.rule}</dd>
            {a.device && <><dt>{t('device')}</dt><dd><a href={'#/device/' + encodeURIComponent(a.device)} data-testid="alert-device">{dev.data?.name || a.device}</a>
              {dev.data?.type === 'camera' && <> · <a href={'#/camera/' + encodeURIComponent(a.device)} data-testid="alert-camera">{t('probes')}</a></>}</dd></>}
            <dt>{t('grid')}</dt><dd><a href={'#/map?grid=' + encodeURIComponent(a.grid)}>{a.grid}</a></dd>
            <dt>{t('unit')}</dt><dd data-testid="alert-unit">{a.unit || '—'}</dd>
            <dt>{t('filterCategory')}</dt><dd>{t('categories.' + a.category)}</dd>
            {a.value !== undefined && <><dt>{t('value')}</dt><dd>{fmtNum(a.value, 3)}</dd></>}
            <dt>{t('fired')}</dt><dd>{fmtTime(a.fired)}</dd>
            <dt>{t('ackDue')}</dt><dd>{deadline(a.ack_due, a.acked, a.ack_overdue)}</dd>
            <dt>{t('resolveDue')}</dt><dd>{deadline(a.resolve_due, a.resolved, a.resolve_overdue)}</dd>
            <dt></dt><dd><Due a={a} now={now} /></dd>
          </dl>
        </div>
        <div class="card">
          <Actions a={a} me={me} onDone={res.reload} />
        </div>
      </div>
      <MiniMap grid={a.grid} lat={dev.data?.lat} lon={dev.data?.lon} />
      <div class="card">
        <h3>{t('timeline')}</h3>
        <ol class="timeline" data-testid="timeline">
          {a.timeline.map((e) => (
            <li data-testid="timeline-event" data-kind={e.kind}>
              <time>{fmtTime(e.ts)}</time>
              <b>{t('events.' + e.kind)}</b>
              {e.from && e.to && e.from !== e.to && <span class="muted"> {t('status.' + e.from)} → {t('status.' + e.to)}</span>}
              <span class="actor"> · {e.actor}</span>
              {e.note && <p class="note" data-testid="timeline-note">{e.note}</p>}
            </li>
          ))}
        </ol>
      </div>
      {a.device && metrics.length > 0 && (
        <div class="card">
          <h3>{t('telemetry')}
            <select value={chosen} onChange={(e) => setMetric(e.currentTarget.value)} data-testid="alert-metric">
              {metrics.map((m) => <option value={m.metric}>{m.metric}</option>)}
            </select>
          </h3>
          <TelemetryChart device={a.device} metric={chosen} from={window.from} to={window.to} step="30s" />
        </div>
      )}
    </section>
  );
}
