// ops.jsx is the operations view: /readyz (each check, the spool, every
// series of data not stored), ClickHouse (its check, batches stored,
// the mean INSERT time, retries and batches given up) and rates computed
// from /metrics.
import { useEffect, useRef, useState } from 'preact/hooks';
import { api } from './api.js';
import { fmtBytes, fmtNum, t } from './i18n.js';

// sums adds up the samples of the named counters in a Prometheus text
// exposition (all label sets of each).
export function sums(text, names) {
  const out = Object.fromEntries(names.map((n) => [n, 0]));
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] in out) out[m[1]] += Number(m[3]);
  }
  return out;
}

const counters = ['gridwatch_ingest_messages_total', 'gridwatch_ingest_readings_total', 'gridwatch_storage_rows_written_total', 'gridwatch_api_stream_clients',
  'gridwatch_storage_batches_written_total', 'gridwatch_storage_batches_failed_total', 'gridwatch_storage_insert_retries_total',
  'gridwatch_storage_insert_duration_seconds_sum', 'gridwatch_storage_insert_duration_seconds_count'];

// gauges are the names above that are levels, not counters; totals, the
// counters shown as they stand rather than as rates.
const gauges = new Set(['gridwatch_api_stream_clients']);
const totals = ['gridwatch_storage_batches_failed_total', 'gridwatch_storage_insert_retries_total'];

export function Ops() {
  const [ready, setReady] = useState(null);
  const [rates, setRates] = useState(null);
  const [err, setErr] = useState(null);
  const prev = useRef(null);
  useEffect(() => {
    let stop = false;
    const poll = async () => {
      try {
        // /readyz answers 503 with the same body when not ready.
        const resp = await fetch('/readyz', { cache: 'no-store' });
        const body = await resp.json();
        const text = await api('/metrics', { raw: true });
        const now = performance.now();
        const cur = sums(text, counters);
        if (prev.current) {
          const dt = (now - prev.current.at) / 1000;
          const d = (c) => cur[c] - prev.current.v[c];
          setRates({
            ...Object.fromEntries(counters.map((c) => [c, gauges.has(c) ? cur[c] : d(c) / dt])),
            ...Object.fromEntries(totals.map((c) => [c + ':total', cur[c]])),
            // The mean INSERT time over the last period; null without one.
            insertMs: d('gridwatch_storage_insert_duration_seconds_count') > 0 ? (1000 * d('gridwatch_storage_insert_duration_seconds_sum')) / d('gridwatch_storage_insert_duration_seconds_count') : null,
          });
        }
        prev.current = { at: now, v: cur };
        if (!stop) { setReady(body); setErr(null); }
      } catch (e) {
        if (!stop) setErr(e);
      }
    };
    // A second sample soon, so the rates show without waiting a period.
    poll().then(() => setTimeout(() => !stop && poll(), 1000));
    const id = setInterval(poll, 5000);
    return () => { stop = true; clearInterval(id); };
  }, []);
  if (err && !ready) return <p class="error">{err.message}</p>;
  if (!ready) return <p class="muted pad">{t('loading')}</p>;
  const spool = ready.detail?.spool || {};
  const losses = Object.entries(ready.detail?.losses || {});
  return (
    <section class="ops" data-testid="ops">
      <h2><span class={'pill ' + (ready.status === 'ready' ? 'st-ok' : 'st-bad')} data-testid="ops-status">{t(ready.status === 'ready' ? 'ready' : 'notReady')}</span></h2>
      <div class="cards">
        <div class="card">
          <h3>{t('checks')}</h3>
          <table data-testid="ops-checks"><tbody>
            {Object.entries(ready.checks).map(([k, v]) => <tr class={v === 'ok' ? '' : 'bad'}><th>{k}</th><td>{v}</td></tr>)}
          </tbody></table>
        </div>
        <div class="card">
          <h3>{t('ingestRate')}</h3>
          <table data-testid="ops-rates" data-ready={rates ? '1' : undefined}><tbody>
            <tr><th>{t('messages')}</th><td class="num">{rates ? t('perSecond', { n: fmtNum(rates.gridwatch_ingest_messages_total) }) : '…'}</td></tr>
            <tr><th>{t('readings')}</th><td class="num">{rates ? t('perSecond', { n: fmtNum(rates.gridwatch_storage_rows_written_total) }) : '…'}</td></tr>
            <tr><th>SSE</th><td class="num">{rates ? fmtNum(rates.gridwatch_api_stream_clients, 0) : '…'}</td></tr>
          </tbody></table>
        </div>
        <div class="card">
          <h3>ClickHouse</h3>
          <table data-testid="ops-clickhouse"><tbody>
            <tr class={ready.checks.clickhouse && ready.checks.clickhouse !== 'ok' ? 'bad' : ''}><th>{t('chState')}</th><td>{ready.checks.clickhouse || '—'}</td></tr>
            <tr><th>{t('chBatches')}</th><td class="num">{rates ? t('perSecond', { n: fmtNum(rates.gridwatch_storage_batches_written_total) }) : '…'}</td></tr>
            <tr><th>{t('chInsert')}</th><td class="num">{rates && rates.insertMs !== null ? fmtNum(rates.insertMs, 1) + ' ms' : '—'}</td></tr>
            <tr class={rates && rates['gridwatch_storage_insert_retries_total:total'] ? 'bad' : ''}><th>{t('chRetries')}</th><td class="num">{rates ? fmtNum(rates['gridwatch_storage_insert_retries_total:total'], 0) : '…'}</td></tr>
            <tr class={rates && rates['gridwatch_storage_batches_failed_total:total'] ? 'bad' : ''}><th>{t('chFailed')}</th><td class="num">{rates ? fmtNum(rates['gridwatch_storage_batches_failed_total:total'], 0) : '…'}</td></tr>
          </tbody></table>
        </div>
        <div class="card">
          <h3>{t('spool')}</h3>
          <table data-testid="ops-spool"><tbody>
            {Object.entries(spool).map(([k, v]) => <tr><th>{t('spoolKeys.' + k)}</th><td class="num">{/bytes$/.test(k) ? fmtBytes(v) : fmtNum(v, 2)}</td></tr>)}
          </tbody></table>
        </div>
        <div class="card">
          <h3>{t('losses')}</h3>
          {losses.length === 0 ? <p class="muted" data-testid="ops-losses">{t('noLosses')}</p> : (
            <table data-testid="ops-losses"><tbody>
              {losses.map(([k, v]) => <tr class="bad"><th><code>{k}</code></th><td class="num">{fmtNum(v, 0)}</td></tr>)}
            </tbody></table>
          )}
        </div>
      </div>
    </section>
  );
}
