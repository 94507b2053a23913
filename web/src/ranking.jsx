// ranking.jsx is the evaluation: the case evaluation (综合评价) of units,
// grids and dispatchers with scores, bands and the call-in line, each over
// a period, and the scores by month.
import { useEffect, useMemo, useState } from 'preact/hooks';
import { api, q } from './api.js';
import { useAPI } from './hooks.js';
import { Chart } from './chart.jsx';
import { fmtDur, fmtNum, t } from './i18n.js';

function period(p) {
  const now = new Date();
  if (p === 'thisMonth') return { from: new Date(now.getFullYear(), now.getMonth(), 1).getTime(), to: now.getTime() };
  if (p === 'lastMonth') return { from: new Date(now.getFullYear(), now.getMonth() - 1, 1).getTime(), to: new Date(now.getFullYear(), now.getMonth(), 1).getTime() };
  // Quarters, for the quarterly public ranking: Jan–Mar, Apr–Jun, …
  const q0 = now.getMonth() - (now.getMonth() % 3);
  if (p === 'thisQuarter') return { from: new Date(now.getFullYear(), q0, 1).getTime(), to: now.getTime() };
  if (p === 'lastQuarter') return { from: new Date(now.getFullYear(), q0 - 3, 1).getTime(), to: new Date(now.getFullYear(), q0, 1).getTime() };
  return { from: now.getTime() - 30 * 86400e3, to: now.getTime() };
}

const rate = (r) => (r === null || r === undefined ? '—' : fmtNum(100 * r) + '%');

// Rate shows a rate of a case ranking row. A rate counts only the cases
// whose outcome for it is settled (done, late, or over); the API leaves
// one out (null) when none is yet, such as a case still within its
// sign-for deadline: "—", pending.
function Rate({ r }) {
  if (r === null || r === undefined) return <td class="num muted" title={t('pending')} data-testid="rate-pending">—</td>;
  return <td class="num">{rate(r)}</td>;
}

// views are the rankings: the path of each, its rows and its columns.
const views = {
  caseUnits: { path: '/api/v1/stats/cases/units', rows: (d) => d.results, score: (s) => s.score },
  caseGrids: { path: '/api/v1/stats/cases/grids', rows: (d) => d.results, score: (s) => s.composite },
  caseDispatchers: { path: '/api/v1/stats/cases/dispatchers', rows: (d) => d.results, score: (s) => s.composite },
};

// Trend draws each key's score per month over the last six calendar
// months, one request a month.
function Trend({ view, names }) {
  const [data, setData] = useState(null);
  useEffect(() => {
    const now = new Date();
    const months = [...Array(6)].map((_, i) => ({
      from: new Date(now.getFullYear(), now.getMonth() - 5 + i, 1).getTime(),
      to: Math.min(new Date(now.getFullYear(), now.getMonth() - 4 + i, 1).getTime(), now.getTime()),
    }));
    const ctl = new AbortController();
    setData(null);
    Promise.all(months.map((m) => api(views[view].path + q(m), { signal: ctl.signal })))
      .then((res) => setData({ months, res: res.map(views[view].rows) }))
      .catch(() => {});
    return () => ctl.abort();
  }, [view]);
  if (!data) return null;
  // The eight best of the latest month first, of those with work to rank.
  const keys = [...new Set([...data.res].reverse().flatMap((r) => r.filter((s) => s.received > 0).map((s) => s.key)))].slice(0, 8);
  const x = data.months.map((m) => m.from / 1000);
  const series = keys.map((k) => ({ label: names[k] || k, values: data.res.map((r) => views[view].score(r.find((s) => s.key === k) || {}) ?? null) }));
  return (
    <div class="card" data-testid="ranking-trend">
      <h3>{t('trend')}</h3>
      <Chart x={x} series={series} height={220} testid="trend-chart" months />
    </div>
  );
}

// printRanking fetches the printable public ranking (it needs the token,
// which a link cannot carry) and saves it as a file.
async function printRanking(range) {
  const html = await api('/api/v1/stats/cases/ranking.html' + q(range), { raw: true });
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([html], { type: 'text/html' }));
  a.download = 'ranking.html';
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}

function CaseTable({ rows, names, by }) {
  return (
    <table class="ranking" data-testid="ranking-table">
      <thead><tr><th>{t('rank')}</th><th>{t(by)}</th>{by === 'units' && <><th>{t('score')}</th><th>{t('band')}</th></>}<th>{t('composite')}</th><th>{t('received')}</th><th title={t('pendingHint')}>{t('pendingCases')}</th><th>{t('ackOnTime')}</th><th>{t('handledOnTime')}</th><th>{t('closingRate')}</th><th>{t('reworkRate')}</th><th>{t('overdueTotal')}</th><th>{t('satisfaction')}</th><th>{t('mttr')}</th></tr></thead>
      <tbody>
        {rows.length === 0 && <tr><td colspan="14" class="muted">{t('none')}</td></tr>}
        {rows.map((s) => (
          <tr class={s.call_in ? 'flagged' : ''} data-testid="ranking-row">
            <td>{s.rank}</td>
            <td>{names[s.key] || s.key || '—'} {s.call_in && <span class="pill st-bad">{t('callIn')}</span>}</td>
            {by === 'units' && <><td class="num"><b>{fmtNum(s.score)}</b></td><td>{s.band || '—'}</td></>}
            <td class="num">{s.composite === null || s.composite === undefined ? '—' : fmtNum(s.composite)}</td>
            <td class="num">{s.received}</td>
            <td class="num" data-testid="ranking-pending">{s.close_pending ?? 0}</td>
            <Rate r={s.sign_on_time_rate} />
            <Rate r={s.handling_on_time_rate} />
            <Rate r={s.closing_rate} />
            <td class="num">{rate(s.rework_rate)}</td>
            <td class="num">{s.overdue}</td>
            <td class="num">{s.satisfaction ? fmtNum(s.satisfaction) : '—'}</td>
            <td class="num">{s.mttr_seconds ? fmtDur(s.mttr_seconds * 1000) : '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export function Ranking() {
  const [view, setView] = useState('caseUnits');
  const [p, setP] = useState('last30');
  const range = useMemo(() => period(p), [p]);
  const res = useAPI(views[view].path + q(range));
  const units = useAPI('/api/v1/units');
  const names = useMemo(() => Object.fromEntries((units.data?.units || []).map((u) => [u.code, u.name || u.code])), [units.data]);
  const by = { caseUnits: 'units', caseGrids: 'grids', caseDispatchers: 'dispatchers' }[view];
  const rows = res.data ? views[view].rows(res.data) || [] : [];
  return (
    <section data-testid="ranking">
      <div class="filters">
        <span class="seg">
          {Object.keys(views).map((k) => <button class={'ghost small' + (view === k ? ' on' : '')} onClick={() => setView(k)} data-testid={'ranking-' + k}>{t('views.' + k)}</button>)}
        </span>
        <label class="field">{t('period')}
          <select value={p} onChange={(e) => setP(e.currentTarget.value)} data-testid="ranking-period">
            {['last30', 'thisMonth', 'lastMonth', 'thisQuarter', 'lastQuarter'].map((k) => <option value={k}>{t(k)}</option>)}
          </select>
        </label>
        <span class="spacer" />
        <button class="ghost small" onClick={() => printRanking(range)} data-testid="ranking-print">{t('publicRanking')}</button>
      </div>
      {res.error && <p class="error">{res.error.message}</p>}
      {res.data && (
        <div class="scroll card">
          <CaseTable rows={rows} names={names} by={by} />
        </div>
      )}
      <Trend view={view} names={names} />
    </section>
  );
}
