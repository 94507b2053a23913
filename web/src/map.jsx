// map.jsx is the grid map: the registry's district, street and cell
// polygons (GeoJSON from the API; no tile server, so it works offline;
// the city's basemap picture under them when the server has one),
// cells coloured by their open and overdue cases, devices and
// cameras as markers coloured by status and clustered (supercluster) when
// dense. Every label is set as text, never as HTML.
import L from './leaflet.js';
import Supercluster from 'supercluster';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import * as alerts from './alerts.js';
import * as cases from './cases.js';
import { api, q } from './api.js';
import { t } from './i18n.js';
import { camState } from './cameras.jsx';
import { addBasemap } from './basemap.js';

// camUpStatuses are the camera states of a camera that delivers video.
const camUpStatuses = new Set(['ok', 'degraded']);

// textNode builds an element of lines of plain text and links, for
// Leaflet popups and tooltips (which would take a string as HTML).
function textNode(lines) {
  const div = document.createElement('div');
  for (const l of lines) {
    const p = document.createElement(l.href ? 'a' : 'div');
    if (l.href) p.href = l.href;
    if (l.bold) p.className = 'b';
    p.textContent = l.text;
    div.appendChild(p);
  }
  return div;
}

async function allDevices() {
  const out = [];
  for (let offset = 0; ; offset += 10000) {
    const page = await api('/api/v1/devices' + q({ limit: 10000, offset }));
    out.push(...page.devices);
    if (out.length >= page.total || page.devices.length === 0) return out;
  }
}

function cssVar(name) { return getComputedStyle(document.documentElement).getPropertyValue(name).trim(); }

// cellCounts returns the open and overdue cases of a grid cell, or of the
// cells below a district or street.
function cellCounts(p, counts) {
  if (p.level === 'grid') return counts.byGrid.get(p.code) || { open: 0, overdue: 0 };
  let open = 0, overdue = 0;
  for (const [g, c] of counts.byGrid) if (g === p.code || (g || '').startsWith(p.code + '-')) { open += c.open; overdue += c.overdue; }
  return { open, overdue };
}

// cellStyle draws districts and streets as outlines and fills a cell by
// its worst case: overdue, open, none.
function cellStyle(f, counts) {
  const lvl = f.properties.level;
  if (lvl !== 'grid') return { color: cssVar('--fg'), weight: lvl === 'district' ? 3 : 1.5, dashArray: lvl === 'street' ? '4 4' : null, fill: false, interactive: false };
  const c = cellCounts(f.properties, counts);
  const fill = c.overdue ? cssVar('--bad') : c.open ? cssVar('--warn') : cssVar('--ok');
  return { color: fill, weight: 1, fillColor: fill, fillOpacity: c.open ? 0.35 : 0.12 };
}

export function MapView() {
  const el = useRef(null);
  const mapRef = useRef(null);
  const [err, setErr] = useState(null);
  const [geo, setGeo] = useState(null);
  const [devs, setDevs] = useState(null);
  const [st, setSt] = useState(() => ({ ...alerts.snapshot() }));
  const [cs, setCs] = useState(() => ({ ...cases.snapshot() }));
  const [showDevices, setShowDevices] = useState(true);
  useEffect(() => alerts.subscribe((s) => setSt({ ...s })), []);
  useEffect(() => cases.subscribe((s) => setCs({ ...s })), []);
  // A camera's status is its probes' (it speaks RTSP, not MQTT): up while
  // it delivers video. Without camera health configured there is none.
  const [camUp, setCamUp] = useState(() => new Map());
  useEffect(() => {
    api('/api/v1/grids/export.geojson', { raw: true }).then((txt) => setGeo(JSON.parse(txt))).catch(setErr);
    allDevices().then(setDevs).catch(setErr);
    api('/api/v1/cameras').then((d) => setCamUp(new Map(d.cameras.map((c) => [c.id, camUpStatuses.has(camState(c.health, c.sample).status)])))).catch(() => {});
  }, []);
  const online = (d) => (d.type === 'camera' && camUp.has(d.id) ? camUp.get(d.id) : d.status.online);

  // Open and overdue cases per grid code; the devices with a firing alert.
  const counts = useMemo(() => {
    const byGrid = new Map();
    const alerting = new Set();
    const now = Date.now();
    for (const c of cs.byId.values()) {
      const n = byGrid.get(c.grid) || { open: 0, overdue: 0 };
      n.open++;
      if (cases.overdue(c, now)) n.overdue++;
      byGrid.set(c.grid, n);
    }
    for (const a of st.byId.values()) {
      if (a.device && a.condition === 'firing') alerting.add(a.device);
      for (const m of a.members || []) alerting.add(m);
    }
    return { byGrid, alerting };
  }, [st.version, cs.version]);

  useEffect(() => {
    // No fade or marker animation, and programmatic moves without one: an
    // animation still running when the view is left would touch the
    // removed map.
    const map = L.map(el.current, { preferCanvas: true, zoomSnap: 0.25, attributionControl: false, fadeAnimation: false, markerZoomAnimation: false });
    map.setView([30.27, 120.15], 12);
    mapRef.current = { map, cells: null, markers: L.layerGroup().addTo(map), renderer: L.canvas({ padding: 0.3 }) };
    const off = addBasemap(map);
    // Unset first: stopping a pan ends it with a moveend, whose marker
    // redraw (below) would queue a frame for a canvas about to go.
    return () => { mapRef.current = null; off(); map.stop(); map.remove(); };
  }, []);

  // The polygons: districts and streets as outlines, cells filled. They are
  // made once; the counts restyle them in place, so that a case changing
  // does not close the popup a user has open. A popup reads the counts
  // when it opens.
  const countsRef = useRef(counts);
  countsRef.current = counts;
  useEffect(() => {
    const m = mapRef.current;
    if (!geo || !m) return;
    if (m.cells) m.cells.remove();
    const order = { district: 0, street: 1, grid: 2 };
    const feats = [...geo.features].sort((a, b) => order[b.properties.level] - order[a.properties.level]);
    m.cells = L.geoJSON({ type: 'FeatureCollection', features: feats }, {
      style: (f) => cellStyle(f, countsRef.current),
      renderer: L.svg(),
      onEachFeature: (f, layer) => {
        const p = f.properties;
        layer.bindPopup(() => {
          const c = cellCounts(p, countsRef.current);
          return textNode([
            { text: p.name || p.code, bold: true }, { text: p.code },
            { text: `${t('openCases')}: ${c.open} · ${t('overdueCases')}: ${c.overdue}` },
            { text: t('openQueue'), href: '#/' + q({ grid: p.code }) },
            { text: t('queue'), href: '#/alerts' + q({ grid: p.code }) },
          ]);
        });
        layer.on('add', () => {
          const pe = layer.getElement && layer.getElement();
          if (pe && p.level === 'grid') {
            pe.setAttribute('data-testid', 'map-cell');
            pe.setAttribute('data-grid', p.code);
            pe.setAttribute('data-open', String(cellCounts(p, countsRef.current).open));
          }
        });
      },
    }).addTo(m.map);
    m.cells.bringToBack();
    if (!m.fitted) {
      const b = m.cells.getBounds();
      if (b.isValid()) m.map.fitBounds(b, { padding: [10, 10], animate: false });
      m.fitted = true;
    }
    const grid = new URLSearchParams(location.hash.split('?')[1] || '').get('grid');
    if (grid) {
      m.cells.eachLayer((l) => { if (l.feature.properties.code === grid) m.map.fitBounds(l.getBounds(), { maxZoom: 16, animate: false }); });
    }
  }, [geo]);
  useEffect(() => {
    const m = mapRef.current;
    if (!m || !m.cells) return;
    m.cells.eachLayer((l) => {
      const p = l.feature.properties;
      if (p.level !== 'grid') return;
      l.setStyle(cellStyle(l.feature, counts));
      const pe = l.getElement && l.getElement();
      if (pe) pe.setAttribute('data-open', String(cellCounts(p, counts).open));
    });
  }, [counts]);

  // The markers, clustered for the view at every move; a cluster counts
  // its alerting and offline devices, and takes the colour of the worst.
  const index = useMemo(() => {
    if (!devs) return null;
    const sc = new Supercluster({
      radius: 110, maxZoom: 16,
      map: (d) => ({ alerting: counts.alerting.has(d.id) ? 1 : 0, offline: online(d) ? 0 : 1 }),
      reduce: (acc, p) => { acc.alerting += p.alerting; acc.offline += p.offline; },
    });
    sc.load(devs.filter((d) => d.lat || d.lon).map((d) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: [d.lon, d.lat] }, properties: d })));
    return sc;
  }, [devs, counts, camUp]);
  useEffect(() => {
    const m = mapRef.current;
    if (!m || !index) return undefined;
    const colors = { alerting: cssVar('--bad'), online: cssVar('--ok'), offline: cssVar('--muted') };
    const draw = () => {
      if (mapRef.current !== m) return; // the view is being left
      m.markers.clearLayers();
      if (!showDevices) return;
      const b = m.map.getBounds();
      const z = Math.floor(m.map.getZoom());
      for (const f of index.getClusters([b.getWest(), b.getSouth(), b.getEast(), b.getNorth()], z)) {
        const [lon, lat] = f.geometry.coordinates;
        if (f.properties.cluster) {
          const { point_count: n, alerting, offline } = f.properties;
          const worst = alerting ? ' alerting' : offline === n ? ' offline' : '';
          const icon = L.divIcon({ className: 'cluster' + worst, html: String(n), iconSize: [34, 34] });
          L.marker([lat, lon], { icon, keyboard: false, title: `${n} ${t('devices')}: ${alerting} ${t('alerting')}, ${offline} ${t('offline')}` }).on('click', () => m.map.setView([lat, lon], index.getClusterExpansionZoom(f.properties.cluster_id)))
            .addTo(m.markers);
          continue;
        }
        const d = f.properties;
        const status = counts.alerting.has(d.id) ? 'alerting' : online(d) ? 'online' : 'offline';
        const cam = d.type === 'camera';
        L.circleMarker([lat, lon], { renderer: m.renderer, radius: cam ? 7 : 5, color: cam ? cssVar('--accent') : colors[status], weight: cam ? 3 : 1, fillColor: colors[status], fillOpacity: 0.9 })
          .bindPopup(() => textNode([
            { text: d.name || d.id, bold: true }, { text: `${d.id} · ${d.type}` }, { text: t(status) },
            { text: t(cam ? 'camera' : 'device'), href: (cam ? '#/camera/' : '#/device/') + encodeURIComponent(d.id) },
          ]))
          .addTo(m.markers);
      }
    };
    draw();
    m.map.on('moveend', draw);
    return () => m.map.off('moveend', draw);
  }, [index, counts, showDevices]);

  const cellCount = geo ? geo.features.filter((f) => f.properties.level === 'grid').length : 0;
  return (
    <section class="mapview">
      <div class="filters">
        <label class="check"><input type="checkbox" checked={showDevices} onChange={(e) => setShowDevices(e.currentTarget.checked)} data-testid="map-devices" />{t('showDevices')}</label>
        <span class="legend"><i class="sw ok" />{t('quiet')} <i class="sw warn" />{t('openCases')} <i class="sw bad" />{t('overdueCases')} · <i class="dot online" />{t('online')} <i class="dot alerting" />{t('alerting')} <i class="dot offline" />{t('offline')}</span>
        <span class="spacer" />
        <span class="count" data-testid="map-count">{t('grids')}: {cellCount} · {t('devices')}: {devs ? devs.length : '…'}</span>
      </div>
      {err && <p class="error">{err.message}</p>}
      <div class="map" ref={el} data-testid="map" />
    </section>
  );
}
