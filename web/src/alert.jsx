// alert.jsx is an alert's page: what fired and when it cleared, the case it
// raised (where the work is done), the timeline, and the device's telemetry
// around the time it fired.
import { useMemo, useState } from 'preact/hooks';
import { useAPI } from './hooks.js';
import { fmtNum, fmtTime, t } from './i18n.js';
import { CaseLink } from './queue.jsx';
import { TelemetryChart } from './chart.jsx';
import { MiniMap } from './minimap.jsx';

// change says what an event changed: the case it was taken in as,
// conditions for fire and clear, severities for escalations.
function change(e) {
  if (e.kind === 'case') return <> <a href={'#/case/' + encodeURIComponent(e.to)}>{t('caseOf', { id: e.to })}</a></>;
  if (!e.from || !e.to || e.from === e.to) return null;
  const name = e.kind === 'escalate' || e.kind === 'deescalate' ? (s) => t('severity.' + s) : (c) => t('condition.' + c);
  return <span class="muted"> {name(e.from)} → {name(e.to)}</span>;
}

export function AlertPage({ id }) {
  const res = useAPI('/api/v1/alerts/' + encodeURIComponent(id));
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
    <section class="alert-page" data-testid="alert-page" data-condition={a.condition}>
      <p><a href="#/alerts">← {t('queue')}</a></p>
      <h2><span class={'sev pill sev-' + a.severity}>{t('severity.' + a.severity)}</span> <span data-testid="alert-summary">{a.summary || a.rule}</span></h2>
      <div class="cards">
        <div class="card">
          <dl>
            <dt>{t('conditionLabel')}</dt><dd><span class={'pill cond-' + a.condition} data-testid="alert-condition">{t('condition.' + a.condition)}</span>{a.escalated && <span class="muted"> · {t('escalated')}</span>}</dd>
            <dt>{t('case')}</dt><dd><CaseLink a={a} testid="alert-case" /></dd>
            <dt>{t('rule')}</dt><dd>{a.rule}</dd>
            {a.device && <><dt>{t('device')}</dt><dd><a href={'#/device/' + encodeURIComponent(a.device)} data-testid="alert-device">{dev.data?.name || a.device}</a>
              {dev.data?.type === 'camera' && <> · <a href={'#/camera/' + encodeURIComponent(a.device)} data-testid="alert-camera">{t('probes')}</a></>}</dd></>}
            {a.members && <><dt>{t('members')}</dt><dd>{a.members.join(', ')}</dd></>}
            <dt>{t('grid')}</dt><dd><a href={'#/map?grid=' + encodeURIComponent(a.grid)}>{a.grid}</a></dd>
            <dt>{t('filterCategory')}</dt><dd>{t('categories.' + a.category)}</dd>
            {a.value !== undefined && <><dt>{t('value')}</dt><dd>{fmtNum(a.value, 3)}</dd></>}
            <dt>{t('fired')}</dt><dd>{fmtTime(a.fired)}</dd>
            {a.cleared && <><dt>{t('clearedAt')}</dt><dd data-testid="alert-cleared">{fmtTime(a.cleared)}</dd></>}
          </dl>
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
              {change(e)}
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
