package alerts

import (
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
)

// Metrics of GB/T 28181 alarm notifications, read by the camera_alarm rule
// and, through m, by rules of their own.
const (
	// MetricAlarm is 1 for each alarm a device sends.
	MetricAlarm = "alarm"
	// MetricAlarmPriority is the alarm's priority: 1 (highest) to 4, 0 when
	// the device did not say.
	MetricAlarmPriority = "alarm_priority"
	// MetricAlarmMethod and MetricAlarmType are the alarm's method (2
	// device, 5 video analysis, 6 device fault…) and type within it, as
	// GB/T 28181 codes them.
	MetricAlarmMethod = "alarm_method"
	MetricAlarmType   = "alarm_type"
)

// GB28181AlarmObservations turns an alarm about device d, received at now,
// into observations. The codes come first, so that a rule on alarm reads
// them in m.
func GB28181AlarmObservations(d devices.Device, a gb28181.Alarm, now time.Time) []Observation {
	obs := func(metric string, v float64) Observation {
		return Observation{Device: d.ID, Type: d.Type, Grid: d.Grid, Metric: metric, Value: v, TS: now.UnixMilli()}
	}
	return []Observation{
		obs(MetricAlarmPriority, float64(a.Priority)),
		obs(MetricAlarmMethod, float64(a.Method)),
		obs(MetricAlarmType, float64(a.Type)),
		obs(MetricAlarm, 1),
	}
}
