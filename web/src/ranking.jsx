// ranking.jsx is the evaluation: units (or grids) ranked by score over a
// period, with on-time rates and the call-in line (flagged).
import { useMemo, useState } from 'preact/hooks';
import { useEffect } from 'preact/hooks';
import { api, q } from './api.js';
import { useAPI } from './hooks.js';
import { Chart } from './chart.jsx';
import { fmtDur, fmtNum, t } from './i18n.js';

function period(p) {
  const now = new Date();
  if (p === 'thisMonth') return { from: new Date(now.getFullYear(), now.getMonth(), 1).getTime(), to: now.getTime() };
  if (p === 'lastMonth') return { from: new Date(now.getFullYear(), now.getMonth() - 1, 1).getTime(), to: new Date(now.getFullYear(), now.getMonth(), 1).getTime() };
  return { from: now.getTime() - 30 * 86400e3, to: now.getTime() };
}

const pctOf = (n, d) => (d ? fmtNum((100 * n) / d) + '%' : '—');

// Trend draws each unit's (or grid's) score per month over the last six
// calendar months, one stats request a month.
function Trend({ by, names }) {
  const [data, setData] = useState(null);
  useEffect(() => {
    const now = new Date();
    const months = [...Array(6)].map((_, i) => {
      const from = new Date(now.getFullYear(), now.getMonth() - 5 + i, 1);
      const to = new Date(now.getFullYear(), now.getMonth() - 4 + i, 1);
      return { from: from.getTime(), to: Math.min(to.getTime(), now.getTime()) };
    });
    const ctl = new AbortController();
    Promise.all(months.map((m) => api(`/api/v1/stats/${by}` + q(m), { signal: ctl.signal })))
      .then((res) => setData({ months, res }))
      .catch(() => {});
    return () => ctl.abort();
  }, [by]);
  if (!data) return null;
  const keys = [...new Set(data.res.flatMap((r) => r.stats.map((s) => s.key)))].slice(0, 8);
  const x = data.months.map((m) => m.from / 1000);
  const series = keys.map((k) => ({ label: names[k] || k, values: data.res.map((r) => r.stats.find((s) => s.key === k)?.score ?? null) }));
  return (
    <div class="card" data-testid="ranking-trend">
      <h3>{t('trend')}</h3>
      <Chart x={x} series={series} height={220} testid="trend-chart" />
    </div>
  );
}

export function Ranking() {
  const [by, setBy] = useState('units');
  const [p, setP] = useState('last30');
  const range = useMemo(() => period(p), [p]);
  const res = useAPI(`/api/v1/stats/${by}` + q(range));
  const units = useAPI('/api/v1/units');
  const names = useMemo(() => Object.fromEntries((units.data?.units || []).map((u) => [u.code, u.name || u.code])), [units.data]);
  return (
    <section data-testid="ranking">
      <div class="filters">
        <span class="seg">
          {['units', 'grids'].map((k) => <button class={'ghost small' + (by === k ? ' on' : '')} onClick={() => setBy(k)} data-testid={'ranking-' + k}>{t(k)}</button>)}
        </span>
        <label class="field">{t('period')}
          <select value={p} onChange={(e) => setP(e.currentTarget.value)} data-testid="ranking-period">
            {['last30', 'thisMonth', 'lastMonth'].map((k) => <option value={k}>{t(k)}</option>)}
          </select>
        </label>
      </div>
      {res.error && <p class="error">{res.error.message}</p>}
      {res.data && (
        <div class="scroll card">
          <table class="ranking" data-testid="ranking-table">
            <thead><tr><th>{t('rank')}</th><th>{t(by === 'units' ? 'unit' : 'grid')}</th><th>{t('score')}</th><th>{t('received')}</th><th>{t('ackOnTime')}</th><th>{t('resolveOnTime')}</th><th>{t('overdueTotal')}</th><th>{t('overdueNow')}</th><th>{t('mtta')}</th><th>{t('mttr')}</th></tr></thead>
            <tbody>
              {res.data.stats.length === 0 && <tr><td colspan="10" class="muted">{t('none')}</td></tr>}
              {res.data.stats.map((s) => (
                <tr class={s.flagged ? 'flagged' : ''} data-testid="ranking-row">
                  <td>{s.rank}</td>
                  <td>{names[s.key] || s.key || '—'} {s.flagged && <span class="pill st-bad">{t('callIn')}</span>}</td>
                  <td class="num"><b>{fmtNum(s.score)}</b></td>
                  <td class="num">{s.received}</td>
                  <td class="num">{pctOf(s.acked_on_time, s.received)}</td>
                  <td class="num">{pctOf(s.resolved_on_time, s.received)}</td>
                  <td class="num">{s.overdue}</td>
                  <td class="num">{s.overdue_now}</td>
                  <td class="num">{s.mtta_seconds ? fmtDur(s.mtta_seconds * 1000) : '—'}</td>
                  <td class="num">{s.mttr_seconds ? fmtDur(s.mttr_seconds * 1000) : '—'}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <Trend by={by} names={names} />
    </section>
  );
}
