package devices

import (
	"sort"
	"time"
)

// Metric is one quantity a device type reports.
type Metric struct {
	// Name is the metric's key in telemetry payloads, such as "pm25".
	Name string
	// Unit is its unit, such as "ug/m3"; "bool" for 0/1 states.
	Unit string
	// Min and Max bound the physically possible values.
	Min, Max float64
}

// Type is a kind of field device.
type Type struct {
	// ID is the type id used in registry files, such as "air_quality".
	ID string
	// Metrics are the quantities the type reports.
	Metrics []Metric
	// Interval is how often a healthy device reports.
	Interval time.Duration
	// Category decides which unit (department) handles its alerts.
	Category string
}

// MetricNames returns the names of t's metrics, in catalog order.
func (t Type) MetricNames() []string {
	out := make([]string, len(t.Metrics))
	for i, m := range t.Metrics {
		out[i] = m.Name
	}
	return out
}

// catalog holds the device types gridwatch knows. The type ids and metric
// names are part of the external contract: devices publish them, import
// files, rules and queries name them, so they never change.
var catalog = map[string]Type{
	"manhole_cover": {ID: "manhole_cover", Category: "municipal", Interval: 5 * time.Minute, Metrics: []Metric{
		{"tilt_deg", "deg", 0, 90}, {"water_level_cm", "cm", 0, 500}, {"battery_pct", "%", 0, 100}}},
	"water_level": {ID: "water_level", Category: "water", Interval: time.Minute, Metrics: []Metric{
		{"level_cm", "cm", 0, 1000}}},
	"air_quality": {ID: "air_quality", Category: "environment", Interval: time.Minute, Metrics: []Metric{
		{"pm25", "ug/m3", 0, 1000}, {"pm10", "ug/m3", 0, 2000}, {"no2", "ug/m3", 0, 2000}}},
	"noise": {ID: "noise", Category: "environment", Interval: time.Minute, Metrics: []Metric{
		{"noise_db", "dB(A)", 0, 150}}},
	"streetlight": {ID: "streetlight", Category: "lighting", Interval: 5 * time.Minute, Metrics: []Metric{
		{"current_a", "A", 0, 50}, {"voltage_v", "V", 0, 400}, {"lamp_on", "bool", 0, 1}}},
	"waste_bin": {ID: "waste_bin", Category: "sanitation", Interval: 15 * time.Minute, Metrics: []Metric{
		{"fill_pct", "%", 0, 100}, {"temp_c", "C", -40, 120}}},
	"heating_pipe": {ID: "heating_pipe", Category: "heating", Interval: time.Minute, Metrics: []Metric{
		{"supply_temp_c", "C", -20, 200}, {"return_temp_c", "C", -20, 200}, {"pressure_mpa", "MPa", 0, 4}}},
	"bridge": {ID: "bridge", Category: "construction", Interval: time.Minute, Metrics: []Metric{
		{"tilt_deg", "deg", 0, 90}, {"vibration_mm_s", "mm/s", 0, 500}}},
	"gas": {ID: "gas", Category: "gas", Interval: 30 * time.Second, Metrics: []Metric{
		{"ch4_ppm", "ppm", 0, 100000}}},
	"hydrant": {ID: "hydrant", Category: "fire", Interval: 5 * time.Minute, Metrics: []Metric{
		{"pressure_mpa", "MPa", 0, 4}}},
	"camera": {ID: "camera", Category: "video", Interval: time.Minute}, // probed over RTSP, not published
}

// LookupType returns the catalog entry for a type id.
func LookupType(id string) (Type, bool) {
	t, ok := catalog[id]
	return t, ok
}

// Types returns every catalog entry, ordered by id.
func Types() []Type {
	out := make([]Type, 0, len(catalog))
	for _, t := range catalog {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}
