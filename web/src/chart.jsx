// chart.jsx draws time series with uPlot: small, fast on canvas, and
// without inline styles that the CSP would refuse.
import uPlot from 'uplot';
import { useEffect, useMemo, useRef } from 'preact/hooks';
import { useAPI } from './hooks.js';
import { fmtMonth, fmtTick, fmtTime, t } from './i18n.js';
import { q } from './api.js';

function cssVar(name, fallback) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim() || fallback;
}

// Chart draws series over x (epoch seconds): series is [{label, values,
// color?}]. With months, x are the starts of months, and the axis names
// them. span ([from, to], epoch seconds), when given, is the x axis,
// whatever part of it has data.
export function Chart({ x, series, height = 260, testid = 'chart', months = false, span }) {
  const el = useRef(null);
  useEffect(() => {
    const node = el.current;
    if (!node || !x.length) return undefined;
    const fg = cssVar('--fg', '#222');
    const grid = cssVar('--line', '#ddd');
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const palette = [cssVar('--accent', '#2563eb'), cssVar('--warn', '#d97706'), cssVar('--bad', '#dc2626'), cssVar('--ok', '#16a34a')];
    const opts = {
      width: node.clientWidth || 600,
      height,
      scales: { x: span ? { time: true, auto: false, range: () => span } : { time: true } },
      axes: [months ? { ...axis, splits: () => x, values: (u, v) => v.map((sec) => fmtMonth(sec * 1000)) }
        : { ...axis, values: (u, v) => v.map((sec) => fmtTick(sec * 1000, 1000 * (u.scales.x.max - u.scales.x.min))) }, { ...axis, size: 60 }],
      series: [{ label: t('chartTime'), value: (u, v) => (v == null ? '—' : months ? fmtMonth(v * 1000) : fmtTime(v * 1000)) }, ...series.map((s, i) => ({ label: s.label, stroke: s.color || palette[i % palette.length], width: s.width || 1.5, dash: s.dash, spanGaps: false, points: { show: x.length < 80 } }))],
      legend: { live: true },
    };
    const plot = new uPlot(opts, [x, ...series.map((s) => s.values)], node);
    const ro = new ResizeObserver(() => plot.setSize({ width: node.clientWidth, height }));
    ro.observe(node);
    return () => { ro.disconnect(); plot.destroy(); };
  }, [x, series, height, months, span && span[0], span && span[1]]);
  if (!x.length) return <p class="muted" data-testid={testid + '-empty'}>{t('noData')}</p>;
  return <div class="chart" ref={el} data-testid={testid} />;
}

// ranges are the chart's choices, with the bucket width of each (about
// 360 buckets).
export const ranges = { '1h': [3600e3, '10s'], '6h': [6 * 3600e3, '1m'], '24h': [24 * 3600e3, '5m'], '7d': [7 * 86400e3, '30m'] };

// TelemetryChart shows one metric of a device between from and to (epoch
// ms): average with min and max.
export function TelemetryChart({ device, metric, from, to, step }) {
  const path = metric ? `/api/v1/devices/${encodeURIComponent(device)}/telemetry` + q({ metric, from: Math.floor(from), to: Math.floor(to), step }) : null;
  const res = useAPI(path);
  // Made once per answer: a page that redraws every second (a countdown)
  // must not make the chart anew each time.
  const { x, series } = useMemo(() => {
    const b = res.data?.buckets || [];
    return {
      x: b.map((v) => v.ts / 1000),
      series: [
        { label: t('stat.avg'), values: b.map((v) => v.avg), width: 2 },
        { label: t('stat.min'), values: b.map((v) => v.min), dash: [4, 4], width: 1 },
        { label: t('stat.max'), values: b.map((v) => v.max), dash: [4, 4], width: 1 },
      ],
    };
  }, [res.data]);
  if (!metric) return null;
  if (res.loading && !res.data) return <p class="muted">{t('loading')}</p>;
  if (res.error) return <p class="error">{res.error.message}</p>;
  return <Chart x={x} series={series} testid="telemetry-chart" span={[Math.floor(from / 1000), Math.ceil(to / 1000)]} />;
}
