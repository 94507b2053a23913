package devices

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Registry holds the current set of devices. Lookups are lock-free: a new
// import builds a fresh snapshot and swaps it in, so the hot ingest path never
// waits on a writer and changes take effect without a restart.
type Registry struct {
	snap atomic.Pointer[snapshot]
}

// snapshot is one import's devices, never changed once stored; byType
// caches OfType's answers for it.
type snapshot struct {
	byID   map[string]Device
	mu     sync.Mutex
	byType map[string][]Device
}

// NewRegistry returns a registry holding devs.
func NewRegistry(devs []Device) *Registry {
	r := &Registry{}
	r.Replace(devs)
	return r
}

// Replace swaps in devs as the whole registry.
func (r *Registry) Replace(devs []Device) {
	m := make(map[string]Device, len(devs))
	for _, d := range devs {
		m[d.ID] = d
	}
	r.snap.Store(&snapshot{byID: m})
}

// Lookup returns the device with the given id.
func (r *Registry) Lookup(id string) (Device, bool) {
	d, ok := r.snap.Load().byID[id]
	return d, ok
}

// Len returns the number of registered devices.
func (r *Registry) Len() int { return len(r.snap.Load().byID) }

// All returns every device, ordered by id.
func (r *Registry) All() []Device {
	return sorted(r.snap.Load().byID, func(Device) bool { return true })
}

// OfType returns the devices of type typ, ordered by id. It scans the
// registry once per import and type, so that a caller asking again and
// again (the camera prober, at every tick) neither sorts nor copies a
// large registry each time.
func (r *Registry) OfType(typ string) []Device {
	s := r.snap.Load()
	s.mu.Lock()
	defer s.mu.Unlock()
	devs, ok := s.byType[typ]
	if !ok {
		devs = sorted(s.byID, func(d Device) bool { return d.Type == typ })
		if s.byType == nil {
			s.byType = map[string][]Device{}
		}
		s.byType[typ] = devs
	}
	return append([]Device(nil), devs...)
}

// sorted returns the devices of m that keep selects, ordered by id.
func sorted(m map[string]Device, keep func(Device) bool) []Device {
	var out []Device
	for _, d := range m {
		if keep(d) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
