package ingest

import "errors"

// Sentinel errors of the ingest package. Callers branch on them with
// errors.Is; the broker maps them to MQTT 5 reason codes.
var (
	// ErrUnknownDevice means a message came from a device id the registry
	// does not hold. The message is kept as a rejected row.
	ErrUnknownDevice = errors.New("unknown device")
	// ErrMalformed means some or all values of a message were rejected (see
	// the rejected table for why); the good values beside them were stored.
	ErrMalformed = errors.New("malformed payload")
	// ErrOverloaded means rows were dropped because the batcher stayed full
	// until the caller's context ended.
	ErrOverloaded = errors.New("ingest overloaded")
	// ErrClosed means rows were dropped because the batcher is closed or was
	// never started.
	ErrClosed = errors.New("batcher closed or not started")
	// ErrNotStored wraps every error after which a message's readings are
	// not stored (overloaded, closed, refused while the spool is full, a
	// failed durable write): the broker then sends no PUBACK.
	ErrNotStored = errors.New("readings not stored")
)
