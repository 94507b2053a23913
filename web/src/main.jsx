// main.jsx starts the console: it takes a token handed over in the address
// (/#token=…) out of it before anything else, then signs in, and routes
// by the location's hash (#/, #/alert/ID, #/device/ID, #/map, #/cameras,
// #/camera/ID, #/ranking, #/ops).
import 'leaflet/dist/leaflet.css';
import 'uplot/dist/uPlot.min.css';
import './style.css';
import { render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { api, APIError, hasToken, onSignOut, setToken, signOut, takeTokenFromHash } from './api.js';
import { lang, setLang, t } from './i18n.js';
import * as alerts from './alerts.js';
import { Queue } from './queue.jsx';
import * as cases from './cases.js';
import { CaseQueue } from './casequeue.jsx';
import { lazy } from './lazy.jsx';

// The views other than the queues come in chunks of their own, loaded
// when first shown.
const CasePage = lazy(() => import('./caseviews.jsx').then((m) => m.CasePage));
const ReportForm = lazy(() => import('./caseviews.jsx').then((m) => m.ReportForm));
const AlertPage = lazy(() => import('./alert.jsx').then((m) => m.AlertPage));
const DevicePage = lazy(() => import('./device.jsx').then((m) => m.DevicePage));
const MapView = lazy(() => import('./map.jsx').then((m) => m.MapView));
const CameraWall = lazy(() => import('./cameras.jsx').then((m) => m.CameraWall));
const CameraPage = lazy(() => import('./cameras.jsx').then((m) => m.CameraPage));
const Ranking = lazy(() => import('./ranking.jsx').then((m) => m.Ranking));
const Ops = lazy(() => import('./ops.jsx').then((m) => m.Ops));

takeTokenFromHash();
// The case queue's first page is asked for beside the sign-in (whoami), not
// after it: a wall screen opening on the queue paints a round trip sooner.
if (hasToken() && route().name === 'cases') cases.prefetch();

const themeKey = 'gridwatch.theme';
function applyTheme(th) {
  if (th === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = th;
}
applyTheme(localStorage.getItem(themeKey) || 'auto');

// route parses the hash: "#/device/wl-1?x=y" → {name: "device", id: "wl-1", params}.
// #/ is the case queue, #/alerts the firing alerts.
function route() {
  const h = location.hash.replace(/^#\/?/, '');
  const [path, query = ''] = h.split('?');
  const [name, ...rest] = path.split('/');
  return { name: name || 'cases', id: rest.length ? decodeURIComponent(rest.join('/')) : '', params: new URLSearchParams(query) };
}

function useRoute() {
  const [r, setR] = useState(route());
  useEffect(() => {
    const on = () => setR(route());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return r;
}

function SignIn({ onDone, failed }) {
  const [value, setValue] = useState('');
  const [err, setErr] = useState(failed ? t('badToken') : '');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    setBusy(true);
    setToken(value.trim());
    try {
      onDone(await api('/api/v1/whoami'));
    } catch (ex) {
      setToken('');
      setErr(ex instanceof APIError && ex.status === 401 ? t('badToken') : String(ex.message));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main class="signin">
      <form onSubmit={submit} data-testid="signin-form" class="card">
        <h1>{t('brand')}</h1>
        <label>{t('token')}
          <input type="password" autocomplete="off" spellcheck={false} value={value} onInput={(e) => setValue(e.currentTarget.value)} data-testid="signin-token" required />
        </label>
        <p class="muted">{t('tokenHelp')}</p>
        {err && <p class="error" role="alert" data-testid="signin-error">{err}</p>}
        <button type="submit" disabled={busy} data-testid="signin-submit">{t('signIn')}</button>
      </form>
      <Toggles />
    </main>
  );
}

function Toggles() {
  const [theme, setTheme] = useState(localStorage.getItem(themeKey) || 'auto');
  const next = { auto: 'light', light: 'dark', dark: 'auto' };
  return (
    <span class="toggles">
      <button type="button" class="ghost" data-testid="lang-toggle" onClick={() => { setLang(lang === 'zh-CN' ? 'en' : 'zh-CN'); rerender(); }}>{t('lang')}</button>
      <button type="button" class="ghost" data-testid="theme-toggle" title={t('theme')} onClick={() => { const n = next[theme]; localStorage.setItem(themeKey, n); applyTheme(n); setTheme(n); }}>
        {t('theme')}: {t('themes.' + theme)}
      </button>
    </span>
  );
}

const nav = [['cases', '#/'], ['queue', '#/alerts'], ['report', '#/report'], ['map', '#/map'], ['cameras', '#/cameras'], ['ranking', '#/ranking'], ['ops', '#/ops']];

function Shell({ me }) {
  const r = useRoute();
  const active = { alert: 'queue', alerts: 'queue', case: 'cases', device: 'map', camera: 'cameras' }[r.name] || r.name;
  let view;
  switch (r.name) {
    case 'alert': view = <AlertPage id={r.id} />; break;
    case 'alerts': view = <Queue params={r.params} />; break;
    case 'case': view = <CasePage id={r.id} me={me} />; break;
    case 'report': view = <ReportForm me={me} />; break;
    case 'device': view = <DevicePage id={r.id} />; break;
    case 'map': view = <MapView />; break;
    case 'cameras': view = <CameraWall />; break;
    case 'camera': view = <CameraPage id={r.id} />; break;
    case 'ranking': view = <Ranking />; break;
    case 'ops': view = <Ops />; break;
    default: view = <CaseQueue me={me} params={r.params} />;
  }
  return (
    <>
      <header class="top">
        <a class="brand" href="#/">{t('brand')}</a>
        <nav data-testid="nav">
          {nav.map(([k, href]) => <a href={href} class={active === k ? 'active' : ''} data-testid={'nav-' + k}>{t(k)}</a>)}
        </nav>
        <span class="me" data-testid="whoami" title={t('signedInAs')}>
          <b data-testid="whoami-name">{me.name}</b>
          <span class="pill" data-testid="whoami-role">{t('roles.' + me.role)}</span>
          <span class="pill" data-testid="whoami-scope">{me.grid || t('wholeCity')}</span>
          {me.unit && <span class="pill" data-testid="whoami-unit">{me.unit}</span>}
        </span>
        <Toggles />
        {hasToken() && <button type="button" class="ghost" data-testid="signout" onClick={signOut}>{t('signOut')}</button>}
      </header>
      <main class="view">{view}</main>
    </>
  );
}

let bump = () => {};

function App() {
  const [me, setMe] = useState(undefined);
  const [l, setL] = useState(lang);
  bump = () => setL(lang);
  const [failed, setFailed] = useState(false);
  useEffect(() => onSignOut(() => { alerts.stop(); cases.stop(); setMe(null); }), []);
  useEffect(() => {
    api('/api/v1/whoami').then((m) => { performance.mark('gw:whoami'); setMe(m); }).catch((e) => { setFailed(e instanceof APIError && e.status === 401 && hasToken()); setToken(''); setMe(null); });
  }, []);
  if (me === undefined) return <p class="muted pad">{t('loading')}</p>;
  if (me === null) return <SignIn key={l} onDone={setMe} failed={failed} />;
  return <Shell key={l} me={me} />;
}

// rerender draws everything again, in the new language.
function rerender() { bump(); }

render(<App />, document.getElementById('app'));
