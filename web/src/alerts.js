// alerts.js: the firing alerts, kept live (live.js). An alert is a
// detection record: the work it calls for is its case (a.case), which the
// case views act on.
import { liveSet } from './live.js';

const set = liveSet({
  list: '/api/v1/alerts',
  key: 'alerts',
  query: { condition: 'firing', sort: '-fired' },
  streamPath: '/api/v1/alerts/stream',
  isOpen: (a) => a.condition === 'firing',
  fromChange: (t) => t.alert,
});
export const { subscribe, stop, snapshot } = set;
