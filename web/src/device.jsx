// device.jsx is a device's page: registry data, status (a camera's: its
// health from its probes), latest values and a telemetry chart over a
// chosen range.
import { useMemo, useState } from 'preact/hooks';
import { useAPI } from './hooks.js';
import { fmtNum, fmtTime, t } from './i18n.js';
import { TelemetryChart, ranges } from './chart.jsx';
import { MiniMap } from './minimap.jsx';
import { CameraHealth } from './cameras.jsx';

export function DevicePage({ id }) {
  const dev = useAPI('/api/v1/devices/' + encodeURIComponent(id));
  const latest = useAPI('/api/v1/devices/' + encodeURIComponent(id) + '/latest');
  const [metric, setMetric] = useState('');
  const [range, setRange] = useState('6h');
  const metrics = latest.data?.metrics || [];
  const chosen = metric || (metrics[0] && metrics[0].metric) || '';
  const [span, step] = ranges[range];
  const to = useMemo(() => Date.now(), [range, chosen]);
  if (dev.error) return <p class="error" data-testid="device-error">{dev.error.status === 404 ? t('notFound') : dev.error.message}</p>;
  if (!dev.data) return <p class="muted pad">{t('loading')}</p>;
  const d = dev.data;
  return (
    <section class="device" data-testid="device-page">
      <h2><span data-testid="device-name">{d.name || d.id}</span> <small class="muted" data-testid="device-id">{d.id}</small></h2>
      <div class="cards">
        <div class="card">
          <h3>{t('meta')}</h3>
          <dl>
            <dt>{t('type')}</dt><dd>{d.type}</dd>
            <dt>{t('filterCategory')}</dt><dd>{t('categories.' + d.category)}</dd>
            <dt>{t('grid')}</dt><dd><a href={'#/map?grid=' + encodeURIComponent(d.grid)}>{d.grid}</a></dd>
            <dt>{t('location')}</dt><dd>{d.lat || d.lon ? `${fmtNum(d.lat, 6)}, ${fmtNum(d.lon, 6)}` : '—'}</dd>
            {d.install_date && <><dt>{t('installed')}</dt><dd>{d.install_date}</dd></>}
            {d.type !== 'camera' && <><dt>{t('filterStatus')}</dt>
              <dd><span class={'pill ' + (d.status.online ? 'st-ok' : 'st-off')} data-testid="device-status">{t(d.status.online ? 'online' : 'offline')}</span>
                {d.status.since && <small class="muted"> {t('since')} {fmtTime(d.status.since)}</small>}</dd></>}
            {d.rtsp_url && <><dt>RTSP</dt><dd><a href={'#/camera/' + encodeURIComponent(d.id)}>{d.rtsp_url}</a></dd></>}
          </dl>
          <p><a href={'#/?text=' + encodeURIComponent(d.id)}>{t('openQueue')}</a></p>
        </div>
        <div class="card">
          <h3>{t('latest')}</h3>
          {metrics.length === 0 ? <p class="muted">{t('noData')}</p> : (
            <table data-testid="device-latest">
              <tbody>{metrics.map((m) => (
                <tr class={m.metric === chosen ? 'active' : ''} onClick={() => setMetric(m.metric)}>
                  <th>{m.metric}</th><td class="num">{fmtNum(m.value, 3)}</td><td class="muted">{fmtTime(m.ts)}</td>
                </tr>))}
              </tbody>
            </table>
          )}
        </div>
      </div>
      {d.type === 'camera' && <CameraHealth id={d.id} />}
      <div class="card">
        <h3>{t('telemetry')}
          <select value={chosen} onChange={(e) => setMetric(e.currentTarget.value)} data-testid="device-metric">
            {metrics.map((m) => <option value={m.metric}>{m.metric}</option>)}
          </select>
          <span class="seg">{Object.keys(ranges).map((r) => <button class={'ghost small' + (r === range ? ' on' : '')} onClick={() => setRange(r)} data-testid={'range-' + r}>{r}</button>)}</span>
        </h3>
        <TelemetryChart device={d.id} metric={chosen} from={to - span} to={to} step={step} />
      </div>
      <MiniMap grid={d.grid} lat={d.lat} lon={d.lon} />
    </section>
  );
}
