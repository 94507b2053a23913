// Package devices is the registry of the city's field devices: what they are,
// where they stand (the grid cell) and how they report.
package devices

// Device is one registered field device.
type Device struct {
	// ID is the device id; it is also its MQTT username and client id.
	ID string
	// Type is a device type id from the catalog, such as "manhole_cover".
	Type string
	// Grid is the code of the grid cell the device stands in.
	Grid string
	// Lat and Lon are WGS 84 coordinates; both zero when unknown.
	Lat, Lon float64
	// Name is a human label, such as "Manhole, 12 Xinhua Rd".
	Name string
	// Secret is the device's MQTT password as read from an import file.
	// It is never logged or echoed; the broker issue replaces it with a hash.
	Secret string `json:"-"`
	// RTSPURL is a camera's main-stream URL without credentials.
	RTSPURL string
	// RTSPUser and RTSPPassword are the camera's RTSP credentials, kept
	// apart from the URL so that the URL can be shown and logged.
	RTSPUser     string `json:"-"`
	RTSPPassword string `json:"-"`
}
