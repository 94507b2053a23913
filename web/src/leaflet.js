// leaflet.js is Leaflet as the console's maps use it. A canvas renderer
// draws a changed layer at the next animation frame; a map removed before
// that frame (a view left while one of its layers changed) has deleted the
// canvas's context, and Leaflet 1.9.4's queued redraw then throws ("Cannot
// read properties of undefined (reading 'clearRect')"). Such a frame has
// nothing left to draw.
import L from 'leaflet';

const redraw = L.Canvas.prototype._redraw;
L.Canvas.prototype._redraw = function () {
  if (this._ctx) redraw.call(this);
};

export default L;
