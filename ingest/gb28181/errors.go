// Package gb28181 is gridwatch's GB/T 28181 (2016/2022) registrar: devices
// and lower platforms register over SIP (UDP and TCP) with digest
// authentication, keep alive with MANSCDP Keepalive messages, answer
// Catalog and DeviceInfo queries and send alarm notifications. A device
// that misses KeepaliveMisses keepalives in a row, or whose registration
// expires, is offline. The Registrar reports each device's and catalogued
// channel's presence and each alarm through function fields; the server
// turns them into device status, camera health records and alert
// observations. SIP itself is parsed and framed by sipgo.
package gb28181

import "errors"

// Sentinel errors of the package.
var (
	// ErrBadMANSCDP means a MESSAGE body is not a MANSCDP message.
	ErrBadMANSCDP = errors.New("gb28181: malformed MANSCDP body")
	// ErrNoLookup means the Registrar has no Lookup function.
	ErrNoLookup = errors.New("gb28181: registrar has no Lookup")
	// ErrNoListener means neither a UDP nor a TCP address is set.
	ErrNoListener = errors.New("gb28181: no listen address")
	// ErrStarted means Start was called twice.
	ErrStarted = errors.New("gb28181: registrar already started")
	// ErrNotRegistered means a query names a device that is not registered.
	ErrNotRegistered = errors.New("gb28181: device not registered")
)
