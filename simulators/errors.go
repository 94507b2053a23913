// Package simulators makes load and demo traffic for gridwatch: a generated
// city of devices (city.go), their value models (models.go), a fleet that
// publishes their telemetry over MQTT (fleet.go) and a bare broker that
// counts what it receives, the baseline for benchmarks (broker.go).
package simulators

import "errors"

// Sentinel errors of the package; callers match them with errors.Is.
var (
	// ErrUnknownType means a device's type has no value model.
	ErrUnknownType = errors.New("unknown device type")
	// ErrNoDevices means there is nothing to generate or simulate.
	ErrNoDevices = errors.New("no devices")
	// ErrCityTooLarge means the device ids or grid codes would not fit
	// their fixed-width formats.
	ErrCityTooLarge = errors.New("city too large")
	// ErrQoS means a QoS other than 0 or 1 was asked for.
	ErrQoS = errors.New("qos must be 0 or 1")
	// ErrNoConnection means not one device of the fleet could connect.
	ErrNoConnection = errors.New("no device could connect")
	// ErrNoCameras means a camera farm was started without cameras.
	ErrNoCameras = errors.New("no cameras")
	// ErrBadCamera means a simulated camera's settings are invalid.
	ErrBadCamera = errors.New("invalid camera")
)
