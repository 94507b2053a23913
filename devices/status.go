package devices

import (
	"sync"
	"time"
)

// Status reasons, stored with each change.
const (
	StatusConnect    = "connect"    // the device logged in
	StatusDisconnect = "disconnect" // the connection ended
	StatusReported   = "reported"   // the device published online/offline, or its will did
)

// StatusChange is one transition of a device between online and offline.
type StatusChange struct {
	Device string
	Online bool
	At     time.Time
	// Reason is StatusConnect, StatusDisconnect or StatusReported.
	Reason string
}

// StatusTracker knows which devices are online and since when. It is safe
// for concurrent use; the alert engine calls Status.
type StatusTracker struct {
	mu sync.RWMutex
	m  map[string]StatusChange
}

// NewStatusTracker returns a tracker that starts from last, the latest known
// change per device (as loaded from storage).
func NewStatusTracker(last []StatusChange) *StatusTracker {
	t := &StatusTracker{m: make(map[string]StatusChange, len(last))}
	for _, c := range last {
		t.m[c.Device] = c
	}
	return t
}

// Set records c and reports whether it changed the device's state. A change
// older than the recorded one is ignored, so a late disconnect of a replaced
// connection does not mark a reconnected device offline.
func (t *StatusTracker) Set(c StatusChange) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	cur, ok := t.m[c.Device]
	if ok && (c.At.Before(cur.At) || cur.Online == c.Online) {
		return false
	}
	t.m[c.Device] = c
	return true
}

// Status returns whether the device is online and since when; a device never
// seen is offline since the zero time.
func (t *StatusTracker) Status(id string) (online bool, since time.Time) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	c := t.m[id]
	return c.Online, c.At
}
