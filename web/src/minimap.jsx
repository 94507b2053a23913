// minimap.jsx shows where something is: its grid cell's polygon and, when
// known, its point, on a small Leaflet map without tiles (over the city's
// basemap when the server has one).
import L from './leaflet.js';
import { useEffect, useRef } from 'preact/hooks';
import { useAPI } from './hooks.js';
import { t } from './i18n.js';
import { addBasemap } from './basemap.js';

export function MiniMap({ grid, lat, lon }) {
  const el = useRef(null);
  const g = useAPI(grid ? '/api/v1/grids/' + encodeURIComponent(grid) : null);
  const geometry = g.data && g.data.geometry;
  const point = lat || lon ? [lat, lon] : null;
  useEffect(() => {
    if (!el.current || (!geometry && !point)) return undefined;
    const css = getComputedStyle(document.documentElement);
    const map = L.map(el.current, { attributionControl: false, zoomControl: false, dragging: false, scrollWheelZoom: false, doubleClickZoom: false, boxZoom: false, keyboard: false, fadeAnimation: false, zoomAnimation: false });
    // The view first: a layer added to a map without one has nothing to
    // clip against. The bounds are made by hand, as a circle marker has
    // none before it is drawn.
    const cell = geometry && L.geoJSON(geometry, { style: { color: css.getPropertyValue('--accent').trim(), weight: 2, fillOpacity: 0.15 } });
    const b = L.latLngBounds([]);
    if (cell) b.extend(cell.getBounds());
    if (point) b.extend(point);
    map.fitBounds(b, { padding: [12, 12], maxZoom: 17, animate: false });
    if (cell) cell.addTo(map);
    if (point) L.circleMarker(point, { radius: 7, color: css.getPropertyValue('--bad').trim(), fillOpacity: 0.9 }).addTo(map);
    const off = addBasemap(map);
    return () => { off(); map.remove(); };
  }, [geometry, point && point[0], point && point[1]]);
  if (!geometry && !point) return null;
  return (
    <div class="card">
      <h3>{t('whereIs')} <small class="muted">{grid}</small></h3>
      <div class="minimap" ref={el} data-testid="minimap" />
    </div>
  );
}
