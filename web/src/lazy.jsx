// lazy.jsx loads a view's code when the view is first shown: the map,
// chart and camera views bring Leaflet and uPlot, which the case queue, the
// first paint of a wall screen, does without.
import { useEffect, useState } from 'preact/hooks';
import { t } from './i18n.js';

// lazy returns a component that shows the component load resolves to,
// once loaded (load is called once, at first use).
export function lazy(load) {
  let Loaded = null;
  let loading = null;
  return function Lazy(props) {
    const [, setReady] = useState(false);
    const [err, setErr] = useState(null);
    useEffect(() => {
      if (Loaded) return undefined;
      let live = true;
      loading ||= load().then((c) => { Loaded = c; });
      loading.then(() => live && setReady(true), (e) => { loading = null; if (live) setErr(e); });
      return () => { live = false; };
    }, []);
    if (Loaded) return <Loaded {...props} />;
    if (err) return <p class="error pad" data-testid="view-error">{t('error')}: {err.message}</p>;
    return <p class="muted pad">{t('loading')}</p>;
  };
}
