// cameras.jsx is the camera wall (a tile per camera with its latest probe
// and availability) and a camera's page (its probe history).
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { blobURL } from './api.js';
import { useAPI } from './hooks.js';
import { fmtNum, fmtTime, t } from './i18n.js';
import { Chart } from './chart.jsx';

const healthy = (h) => h && (h.status === 'ok');

// camState is what a camera's tile says: its latest probe's status, unless
// that is a liveness probe's "ok" after a stream sample that found a fault
// (a liveness probe cannot see a low frame rate or a frozen picture): then
// the sample's, until the next sample. It is "never" before any probe.
export function camState(h, sample) {
  if (!h) return { status: 'never', detail: '' };
  if (healthy(h) && sample && !healthy(sample)) return { status: sample.status, detail: sample.detail || '', bySample: true };
  return { status: h.status, detail: h.detail || '' };
}

const tone = (status) => (status === 'ok' ? 'ok' : status === 'degraded' ? 'warn' : status === 'never' ? 'none' : 'bad');

// Measures are the figures a stream sample measured: codec, size, fps,
// bitrate (from the latest probe when it has them, else the sample's).
function Measures({ h, sample }) {
  const m = h && h.fps ? h : sample || h;
  if (!m) return null;
  return (
    <>
      <span data-testid="camera-codec">{m.codec || '—'} {m.width ? `${m.width}×${m.height}` : ''}</span>
      <span data-testid="camera-fps">{m.fps ? `${fmtNum(m.fps)} ${t('fps')} · ${fmtNum(m.bitrate_kbps, 0)} kbit/s` : '—'}{m.loss_pct ? ` · ${t('loss')} ${fmtNum(m.loss_pct)}%` : ''}</span>
    </>
  );
}

// StatusPill shows a camera's state, with why when degraded.
function StatusPill({ st }) {
  return (
    <span class={'pill cam-pill ' + tone(st.status)} data-testid="camera-status" title={st.bySample ? t('bySample') : ''}>
      {st.status === 'never' ? t('never') : t('camStatus.' + st.status)}{st.detail ? ' · ' + st.detail : ''}
    </span>
  );
}

// CameraHealth is a camera's health on the page of a case about it: its
// still, its state, what the latest sample measured and when it was last
// probed, with a link to its probe history.
export function CameraHealth({ id }) {
  const res = useAPI('/api/v1/cameras/' + encodeURIComponent(id) + '/health?limit=50');
  // Kept current, as the probes go on (and past a failed request).
  useEffect(() => {
    const timer = setInterval(res.reload, healthEvery);
    return () => clearInterval(timer);
  }, [id]);
  const probes = res.data?.probes || [];
  const h = probes[0];
  const sample = probes.find((p) => p.kind === 'sample');
  const st = camState(h, sample);
  return (
    <div class="card camera-health" data-testid="case-camera" data-status={st.status}>
      <h3>{t('cameraHealth')} <a class="small" href={'#/camera/' + encodeURIComponent(id)}>{t('probes')}</a></h3>
      {res.error ? <p class="error">{res.error.message}</p> : (
        <div class="camera-health-body">
          <Still id={id} />
          <div class="tile-facts">
            <StatusPill st={st} />
            <Measures h={h} sample={sample} />
            <small class="muted">{t('lastProbe')}: {h ? fmtTime(h.time) : '—'}</small>
            {sample && <small class="muted">{t('lastSample')}: {fmtTime(sample.time)}</small>}
            {h && h.error && <small class="error">{h.error}</small>}
          </div>
        </div>
      )}
    </div>
  );
}

// healthEvery is how often a camera's health on a case's or device's page
// is asked for again.
const healthEvery = 10e3;

// stillEvery is how often a still in view is fetched again: the prober
// keeps a camera's last good picture, taken at each stream sample.
const stillEvery = 60e3;

// Still shows a camera's last good picture (GET /api/v1/cameras/{id}/still),
// fetched with the token in a header (an img cannot send one) once the
// tile scrolls into view, and again every stillEvery while it stays there.
export function Still({ id, big }) {
  const el = useRef(null);
  const [src, setSrc] = useState(null);
  const [missing, setMissing] = useState(false);
  useEffect(() => {
    let url = null;
    let timer = 0;
    let ctl = null;
    const load = () => {
      ctl = new AbortController();
      blobURL('/api/v1/cameras/' + encodeURIComponent(id) + '/still', ctl.signal).then((u) => {
        if (url) URL.revokeObjectURL(url);
        url = u;
        setSrc(u);
        setMissing(false);
      }).catch((e) => { if (e.name !== 'AbortError') setMissing(true); });
    };
    const seen = new IntersectionObserver(([e]) => {
      clearInterval(timer);
      if (!e.isIntersecting) return;
      load();
      timer = setInterval(load, stillEvery);
    });
    seen.observe(el.current);
    return () => { seen.disconnect(); clearInterval(timer); if (ctl) ctl.abort(); if (url) URL.revokeObjectURL(url); };
  }, [id]);
  return (
    <div class={'still' + (big ? ' big' : '')} ref={el}>
      {src ? <img src={src} alt={id} data-testid="camera-still" /> : <span class="muted">{missing ? t('noStill') : t('loading')}</span>}
    </div>
  );
}

export function CameraWall() {
  const cams = useAPI('/api/v1/cameras');
  const avail = useAPI('/api/v1/cameras/availability?by=camera');
  const [faulty, setFaulty] = useState(false);
  const pct = useMemo(() => {
    const acc = {};
    for (const d of avail.data?.days || []) {
      const a = (acc[d.key] ||= { probes: 0, up: 0 });
      a.probes += d.probes;
      a.up += d.up;
    }
    return acc;
  }, [avail.data]);
  if (cams.error) return <p class="error" data-testid="cameras-error">{cams.error.message}</p>;
  if (!cams.data) return <p class="muted pad">{t('loading')}</p>;
  const list = cams.data.cameras.filter((c) => !faulty || camState(c.health, c.sample).status !== 'ok');
  return (
    <section data-testid="camera-wall">
      <div class="filters">
        <label class="check"><input type="checkbox" checked={faulty} onChange={(e) => setFaulty(e.currentTarget.checked)} data-testid="camera-faulty" />{t('faultyOnly')}</label>
        <span class="spacer" />
        <span class="count" data-testid="camera-count">{list.length} / {cams.data.cameras.length}</span>
        <button class="ghost small" onClick={cams.reload}>{t('retry')}</button>
      </div>
      {list.length === 0 && <p class="muted pad">{t('none')}</p>}
      <div class="wall">
        {list.map((c) => {
          const h = c.health;
          const a = pct[c.id];
          const st = camState(h, c.sample);
          return (
            <a class={'tile cam-' + tone(st.status)} href={'#/camera/' + encodeURIComponent(c.id)} data-testid="camera-tile" data-id={c.id} data-status={st.status}>
              <Still id={c.id} />
              <b class="name">{c.name || c.id}</b>
              <small class="muted">{c.id} · {c.grid}</small>
              <StatusPill st={st} />
              <Measures h={h} sample={c.sample} />
              <small class="muted">{t('lastProbe')}: {h ? fmtTime(h.time) : '—'}</small>
              <small>{t('availability')}: {a && a.probes ? fmtNum((100 * a.up) / a.probes) + '%' : '—'}</small>
            </a>
          );
        })}
      </div>
    </section>
  );
}

export function CameraPage({ id }) {
  const res = useAPI('/api/v1/cameras/' + encodeURIComponent(id) + '/health?limit=500');
  if (res.error) return <p class="error">{res.error.status === 404 ? t('notFound') : res.error.message}</p>;
  if (!res.data) return <p class="muted pad">{t('loading')}</p>;
  const probes = res.data.probes;
  const sample = [...probes].filter((p) => p.kind === 'sample' || p.fps).reverse();
  const x = sample.map((p) => Date.parse(p.time) / 1000);
  return (
    <section data-testid="camera-page">
      <p><a href="#/cameras">← {t('cameras')}</a></p>
      <h2>{t('camera')} <span data-testid="camera-id">{id}</span> <a class="small" href={'#/device/' + encodeURIComponent(id)}>{t('device')}</a></h2>
      <Still id={id} big />
      <div class="card">
        <h3>{t('fps')} / {t('bitrate')}</h3>
        <Chart x={x} series={[{ label: t('fps'), values: sample.map((p) => p.fps ?? null) }, { label: 'kbit/s ÷ 100', values: sample.map((p) => (p.bitrate_kbps ?? 0) / 100) }]} testid="camera-chart" />
      </div>
      <div class="card">
        <h3>{t('probes')}</h3>
        <div class="scroll">
          <table data-testid="camera-probes">
            <thead><tr><th>{t('lastProbe')}</th><th>kind</th><th>{t('filterStatus')}</th><th>{t('codec')}</th><th>{t('resolution')}</th><th>{t('fps')}</th><th>{t('bitrate')}</th><th>loss %</th><th>{t('error')}</th></tr></thead>
            <tbody>{probes.map((p) => (
              <tr class={p.status === 'ok' ? '' : 'bad'}>
                <td>{fmtTime(p.time)}</td><td>{p.kind}</td><td>{t('camStatus.' + p.status)}</td><td>{p.codec || '—'}</td>
                <td>{p.width ? `${p.width}×${p.height}` : '—'}</td><td class="num">{fmtNum(p.fps)}</td><td class="num">{fmtNum(p.bitrate_kbps, 0)}</td>
                <td class="num">{fmtNum(p.loss_pct)}</td><td>{p.error || p.detail || ''}</td>
              </tr>))}
            </tbody>
          </table>
        </div>
      </div>
    </section>
  );
}
