// Package devices is the registry of the city's field devices: what they are,
// where they stand (the grid cell) and how they report.
package devices

import "time"

// Device is one registered field device or camera.
type Device struct {
	// ID is the device id; it is also its MQTT username and client id.
	ID string `json:"id"`
	// Type is a device type id from the catalog, such as "manhole_cover".
	Type string `json:"type"`
	// Grid is the code of the grid cell the device stands in.
	Grid string `json:"grid"`
	// Lat and Lon are WGS 84 coordinates; both zero when unknown.
	Lat float64 `json:"lat,omitempty"`
	Lon float64 `json:"lon,omitempty"`
	// Name is a human label, such as "Manhole, 12 Xinhua Rd".
	Name string `json:"name,omitempty"`
	// InstallDate is when the device was installed, as YYYY-MM-DD; empty
	// when unknown.
	InstallDate string `json:"install_date,omitempty"`
	// Secret is the device's MQTT password as read from an import file. It
	// is never logged, echoed or stored: imports replace it with SecretHash.
	Secret string `json:"-"`
	// SecretHash is the slow hash (see HashSecret) of the device's current
	// MQTT password; empty when the device has none and cannot connect.
	SecretHash string `json:"-"`
	// PrevSecretHash is the hash of the password replaced by the last
	// rotation; it stays valid until PrevSecretUntil, so devices can be
	// reconfigured without an outage.
	PrevSecretHash  string    `json:"-"`
	PrevSecretUntil time.Time `json:"-"`
	// RTSPURL is a camera's main-stream URL without credentials.
	RTSPURL string `json:"rtsp_url,omitempty"`
	// RTSPSubURL is a camera's sub-stream URL without credentials.
	RTSPSubURL string `json:"rtsp_sub_url,omitempty"`
	// RTSPUser and RTSPPassword are the camera's RTSP credentials, kept
	// apart from the URLs so that the URLs can be shown and logged. The
	// password is plain as read from an import file; the registry stores
	// and loads it sealed (SecretBox), and only the prober opens it.
	RTSPUser     string `json:"-"`
	RTSPPassword string `json:"-"`
	// SIPPassword is the GB/T 28181 device's SIP digest password, for
	// devices and lower platforms that register over SIP with the device
	// id as username. Digest authentication needs the plain text, so it is
	// sealed (SecretBox) rather than hashed: plain as read from an import
	// file, sealed in the registry, opened only by the registrar.
	SIPPassword string `json:"-"`
}

// HasSecret reports whether d has credentials a device could log in with.
func (d Device) HasSecret() bool { return d.SecretHash != "" }
