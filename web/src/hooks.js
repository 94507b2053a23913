// hooks.js: small Preact hooks the views share.
import { useEffect, useLayoutEffect, useMemo, useReducer, useRef, useState } from 'preact/hooks';
import { Virtualizer, elementScroll, observeElementOffset, observeElementRect } from '@tanstack/virtual-core';
import { api } from './api.js';

// useNow returns the time, refreshed every ms milliseconds.
export function useNow(ms) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const id = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(id);
  }, [ms]);
  return now;
}

// useAPI fetches path (again when it changes, or when reload is called)
// and returns {data, error, loading, reload}.
export function useAPI(path, opts) {
  const [st, setSt] = useState({ data: null, error: null, loading: true });
  const [n, reload] = useReducer((x) => x + 1, 0);
  useEffect(() => {
    if (!path) return undefined;
    const ctl = new AbortController();
    setSt((s) => ({ ...s, loading: true }));
    api(path, { ...opts, signal: ctl.signal })
      .then((data) => setSt({ data, error: null, loading: false }))
      .catch((error) => { if (!ctl.signal.aborted) setSt({ data: null, error, loading: false }); });
    return () => ctl.abort();
  }, [path, n]);
  return { ...st, reload };
}

// useVirtual drives @tanstack/virtual-core's Virtualizer over the element
// in scrollRef: only the rows in view (and overscan) are rendered, so a
// queue of tens of thousands of cases paints as fast as one of ten.
export function useVirtual(count, scrollRef, rowHeight) {
  const [, rerender] = useReducer((x) => x + 1, 0);
  const v = useMemo(() => new Virtualizer({
    count,
    getScrollElement: () => scrollRef.current,
    estimateSize: () => rowHeight,
    overscan: 8,
    observeElementRect,
    observeElementOffset,
    scrollToFn: elementScroll,
    onChange: () => rerender(),
  }), []);
  v.setOptions({ ...v.options, count, estimateSize: () => rowHeight });
  useLayoutEffect(() => v._didMount(), []);
  useLayoutEffect(() => { v._willUpdate(); });
  return v;
}

// useMedia tracks a media query.
export function useMedia(query) {
  const mq = useRef(matchMedia(query));
  const [m, setM] = useState(mq.current.matches);
  useEffect(() => {
    const on = () => setM(mq.current.matches);
    mq.current.addEventListener('change', on);
    return () => mq.current.removeEventListener('change', on);
  }, []);
  return m;
}
