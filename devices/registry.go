package devices

import (
	"sort"
	"sync/atomic"
)

// Registry holds the current set of devices. Lookups are lock-free: a new
// import builds a fresh snapshot and swaps it in, so the hot ingest path never
// waits on a writer and changes take effect without a restart.
type Registry struct {
	snap atomic.Pointer[map[string]Device]
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
	r.snap.Store(&m)
}

// Lookup returns the device with the given id.
func (r *Registry) Lookup(id string) (Device, bool) {
	d, ok := (*r.snap.Load())[id]
	return d, ok
}

// Len returns the number of registered devices.
func (r *Registry) Len() int { return len(*r.snap.Load()) }

// All returns every device, ordered by id.
func (r *Registry) All() []Device {
	m := *r.snap.Load()
	out := make([]Device, 0, len(m))
	for _, d := range m {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
