// cameras.jsx is the camera wall (a tile per camera with its latest probe
// and availability) and a camera's page (its probe history).
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { blobURL } from './api.js';
import { useAPI } from './hooks.js';
import { fmtNum, fmtTime, t } from './i18n.js';
import { Chart } from './chart.jsx';

const healthy = (h) => h && (h.status === 'ok');

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
  const list = cams.data.cameras.filter((c) => !faulty || !healthy(c.health));
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
          const st = h ? h.status : 'never';
          return (
            <a class={'tile cam-' + (h ? (healthy(h) ? 'ok' : h.status === 'degraded' ? 'warn' : 'bad') : 'none')} href={'#/camera/' + encodeURIComponent(c.id)} data-testid="camera-tile" data-id={c.id} data-status={st}>
              <Still id={c.id} />
              <b class="name">{c.name || c.id}</b>
              <small class="muted">{c.id} · {c.grid}</small>
              <span class="pill">{h ? t('camStatus.' + h.status) : t('never')}</span>
              {h && <span>{h.codec || '—'} {h.width ? `${h.width}×${h.height}` : ''}</span>}
              {h && h.fps ? <span>{fmtNum(h.fps)} {t('fps')} · {fmtNum(h.bitrate_kbps, 0)} kbit/s</span> : null}
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
