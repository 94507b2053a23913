// live.js keeps a set of open items (alerts or cases) in memory, fed by a
// list endpoint and then a live stream: the queues and the map read it.
// Every (re)connect of the stream lists again, and an item is replaced
// only by a version at least as new, so an event and a list crossing each
// other leave the newest state. The first page (200) is asked for at once,
// while the stream connects, so the queue paints without waiting (prefetch
// asks for it even before sign-in is confirmed); only the listing that
// follows the stream's opening (gap-free, in pages of 1,000 after that
// first page arrived) is authoritative.
import { api, q, stream } from './api.js';

// liveSet makes such a set: list is the list endpoint, key the page's
// field holding the items, query its filters, streamPath the stream,
// isOpen whether an item stays in the set, fromChange the item an event
// carries.
export function liveSet({ list, key, query, streamPath, isOpen, fromChange }) {
  const firstPage = 200;
  const pageSize = 1000;
  const state = {
    byId: new Map(),
    version: 0, // bumped at every change, for memoised views
    loaded: false, // the first page arrived
    complete: false, // every page arrived
    live: 'connecting',
    error: null,
    lastEvent: null, // {id, at} of the latest change applied
  };
  const listeners = new Set();
  const touched = new Set(); // items an event changed since the listing began
  let started = null;
  let early = null; // the first page, asked for before the first subscriber
  let pending = false;

  function changed() {
    state.version++;
    if (pending) return;
    pending = true;
    // Changes come in bursts: one render per animation frame is enough.
    requestAnimationFrame(() => {
      pending = false;
      for (const fn of listeners) fn(state);
    });
  }

  function upsert(a) {
    const cur = state.byId.get(a.id);
    if (cur && cur.version > a.version) return false;
    if (isOpen(a)) state.byId.set(a.id, a);
    else state.byId.delete(a.id);
    return true;
  }

  const pagePath = (limit, cursor) => list + q({ ...query, limit, cursor });

  async function listAll(signal) {
    let cursor = '';
    const seen = new Set();
    do {
      const page = await api(pagePath(pageSize, cursor), { signal });
      for (const a of page[key]) { seen.add(a.id); upsert(a); }
      cursor = page.next || '';
      state.loaded = true;
      changed();
    } while (cursor);
    // An item the list no longer holds, and no event touched since the
    // listing began, left the set while the stream was away.
    for (const id of state.byId.keys()) if (!seen.has(id) && !touched.has(id)) state.byId.delete(id);
    state.complete = true;
    state.error = null;
    changed();
  }

  function start() {
    const ctl = new AbortController();
    const first = (early || api(pagePath(firstPage, ''), { signal: ctl.signal })).then((page) => {
      if (!page || state.loaded || ctl.signal.aborted) return;
      for (const a of page[key]) upsert(a);
      state.loaded = true;
      // A mark of the page's timeline (User Timing), for the load test.
      performance.mark('gw:' + key + ':first-page');
      changed();
    }).catch(() => {});
    early = null;
    stream(streamPath, {
      signal: ctl.signal,
      onState(s) { state.live = s; changed(); },
      async onOpen() {
        touched.clear();
        await first; // the first paint goes before the full listing
        try { await listAll(ctl.signal); } catch (e) { if (!ctl.signal.aborted) { state.error = e; changed(); } }
      },
      onEvent(kind, change) {
        const a = fromChange(change);
        if (!a) return;
        touched.add(a.id);
        if (upsert(a)) {
          state.lastEvent = { id: a.id, kind, at: performance.now() };
          changed();
        }
      },
    });
    return ctl;
  }

  return {
    // subscribe calls fn with the state at every change, starting the list
    // and the stream on first use; it returns the unsubscribe function.
    subscribe(fn) {
      if (!started) started = start();
      listeners.add(fn);
      fn(state);
      return () => listeners.delete(fn);
    },
    // prefetch asks for the first page before anything subscribes: the
    // console does it at start, beside its sign-in.
    prefetch() {
      if (!started && !early) early = api(pagePath(firstPage, '')).catch(() => null);
    },
    // stop ends the stream and forgets everything (sign-out).
    stop() {
      if (started) started.abort();
      started = early = null;
      state.byId.clear();
      state.loaded = state.complete = false;
      state.live = 'connecting';
      changed();
    },
    snapshot: () => state,
    // put applies an item an action answered with.
    put(a) { if (upsert(a)) changed(); },
  };
}
