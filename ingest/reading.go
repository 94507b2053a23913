// Package ingest turns what devices and cameras send into rows: it decodes
// and validates payloads, and batches rows as Arrow records for storage.
package ingest

// Reading is one metric value from one device: a row of the telemetry table.
type Reading struct {
	// TS is when the value was measured, in ms since the epoch, as the device
	// said, or the server's receive time when the device did not say.
	TS int64
	// Received is when the server received the message, in ms since the epoch.
	Received int64
	Device   string
	Grid     string
	Metric   string
	Value    float64
}

// Rejection is input that could not be stored as readings, kept with its
// reason: a row of the rejected table.
type Rejection struct {
	// TS is the server's receive time, in ms since the epoch.
	TS     int64
	Device string
	Topic  string
	// Reason is a short machine-readable cause, such as "unknown_device" or
	// "malformed_json"; Detail says more for a human.
	Reason string
	Detail string
	// Payload holds the first bytes of the offending input.
	Payload []byte
}
