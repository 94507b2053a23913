// basemap.js lays the city's basemap (grids.basemap_file), when the
// server has one, under a Leaflet map's grid polygons: one picture and the
// box it covers, fetched once with the token (an img cannot send one) and
// shown from a blob: URL. Without one the maps show the polygons alone.
import L from './leaflet.js';
import { api, blobURL } from './api.js';

let basemap = null;

// load fetches the basemap's bounds and picture once: {url, bounds}, or
// null when the server has none.
function load() {
  basemap ||= api('/api/v1/grids/basemap.json')
    .then((info) => blobURL('/api/v1/grids/basemap').then((url) => ({ url, bounds: info.bounds })))
    .catch(() => null);
  return basemap;
}

// addBasemap puts the basemap under map's layers, once loaded, and returns
// a function that takes it off.
export function addBasemap(map) {
  let layer = null;
  let gone = false;
  load().then((b) => {
    if (!b || gone) return;
    // In the tile pane, where a basemap goes: under every overlay.
    layer = L.imageOverlay(b.url, b.bounds, { interactive: false, className: 'basemap', pane: 'tilePane' }).addTo(map);
  });
  return () => {
    gone = true;
    if (layer) layer.remove();
  };
}
