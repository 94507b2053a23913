package storage_test

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/storage"
)

var base = time.Date(2024, 11, 22, 8, 0, 0, 0, time.UTC)

var seriesQueryCases = []struct {
	name    string
	q       storage.SeriesQuery
	buckets int64
}{
	{"one minute steps", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(time.Hour), Step: time.Minute}, 60},
	{"last bucket partial", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(61 * time.Second), Step: time.Minute}, 2},
	{"millisecond steps", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(10 * time.Second), Step: time.Millisecond}, 10000},
	{"too many buckets", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(10*time.Second + time.Millisecond), Step: time.Millisecond}, -1},
	{"zero step", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(time.Hour)}, -1},
	{"negative step", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(time.Hour), Step: -time.Minute}, -1},
	{"sub-millisecond step", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base.Add(time.Hour), Step: 1500 * time.Microsecond}, -1},
	{"from after to", storage.SeriesQuery{Device: "d", Metric: "m", From: base.Add(time.Hour), To: base, Step: time.Minute}, -1},
	{"empty range", storage.SeriesQuery{Device: "d", Metric: "m", From: base, To: base, Step: time.Minute}, -1},
	{"no device", storage.SeriesQuery{Metric: "m", From: base, To: base.Add(time.Hour), Step: time.Minute}, -1},
	{"no metric", storage.SeriesQuery{Device: "d", From: base, To: base.Add(time.Hour), Step: time.Minute}, -1},
}

func TestSeriesQueryValidate(t *testing.T) {
	for _, c := range seriesQueryCases {
		n, err := c.q.Validate()
		switch {
		case c.buckets < 0 && !errors.Is(err, storage.ErrBadQuery):
			t.Errorf("%s: Validate = %d, %v; want ErrBadQuery", c.name, n, err)
		case c.buckets >= 0 && (err != nil || n != c.buckets):
			t.Errorf("%s: Validate = %d, %v; want %d buckets", c.name, n, err, c.buckets)
		}
	}
}

func FuzzSeriesQueryValidate(f *testing.F) {
	for _, c := range seriesQueryCases {
		f.Add(c.q.Device, c.q.From.UnixMilli(), c.q.To.UnixMilli(), int64(c.q.Step))
	}
	f.Fuzz(func(t *testing.T, device string, from, to, step int64) {
		q := storage.SeriesQuery{Device: device, Metric: "m", From: time.UnixMilli(from), To: time.UnixMilli(to), Step: time.Duration(step)}
		n, err := q.Validate()
		if err == nil && (n < 1 || n > storage.MaxBuckets) {
			t.Fatalf("Validate(%+v) = %d buckets without error", q, n)
		}
	})
}

func TestQueriesIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	rows := []reading{
		{ms(-time.Millisecond), 0, "d1", "pm25", 1000}, // before From
		{ms(123 * time.Millisecond), 0, "d1", "pm25", 10},
		{ms(30456 * time.Millisecond), 0, "d1", "pm25", 20},
		{ms(61789 * time.Millisecond), 0, "d1", "pm25", 30},
		{ms(119999 * time.Millisecond), 0, "d1", "pm25", 41},
		{ms(3 * time.Minute), 0, "d1", "pm25", 50}, // at To: excluded, but the latest
		{ms(45 * time.Second), 0, "d1", "pm10", 7},
		{ms(time.Second), 0, "d2", "pm25", 99},
	}
	w, _ := newWriter(t, db, storage.WriterOptions{})
	if err := w.Write(ctx, "telemetry", "q-1", telemetryRecord(t, rows)); err != nil {
		t.Fatal(err)
	}

	got, err := db.TelemetrySeries(ctx, storage.SeriesQuery{Device: "d1", Metric: "pm25", From: base, To: base.Add(3 * time.Minute), Step: time.Minute})
	if err != nil {
		t.Fatalf("TelemetrySeries: %v", err)
	}
	want := []storage.Bucket{
		{Start: base, Avg: 15, Min: 10, Max: 20, Count: 2},
		{Start: base.Add(time.Minute), Avg: 35.5, Min: 30, Max: 41, Count: 2},
	}
	if len(got) != len(want) {
		t.Fatalf("TelemetrySeries = %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].Start.Equal(want[i].Start) || got[i].Avg != want[i].Avg || got[i].Min != want[i].Min ||
			got[i].Max != want[i].Max || got[i].Count != want[i].Count {
			t.Errorf("bucket %d = %+v, want %+v", i, got[i], want[i])
		}
	}

	// Buckets align on From, to the millisecond.
	got, err = db.TelemetrySeries(ctx, storage.SeriesQuery{Device: "d1", Metric: "pm25",
		From: base.Add(30456 * time.Millisecond), To: base.Add(119999 * time.Millisecond), Step: 31333 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	// [30.456s, 61.789s) holds 20; [61.789s, 93.122s) holds 30; 119.999s is To, excluded.
	if len(got) != 2 || !got[0].Start.Equal(base.Add(30456*time.Millisecond)) || got[0].Count != 1 || got[0].Max != 20 ||
		!got[1].Start.Equal(base.Add(61789*time.Millisecond)) || got[1].Count != 1 || got[1].Max != 30 {
		t.Errorf("from-aligned series = %+v, want buckets at 30.456s (20) and 61.789s (30)", got)
	}

	if _, err := db.TelemetrySeries(ctx, storage.SeriesQuery{Device: "d1", Metric: "pm25", From: base, To: base, Step: time.Minute}); !errors.Is(err, storage.ErrBadQuery) {
		t.Errorf("TelemetrySeries of an empty range = %v, want ErrBadQuery", err)
	}
	// Device and metric are bound, never spliced into the SQL.
	injected, err := db.TelemetrySeries(ctx, storage.SeriesQuery{Device: "d1' OR '1'='1", Metric: "pm25", From: base, To: base.Add(time.Hour), Step: time.Minute})
	if err != nil || len(injected) != 0 {
		t.Errorf("TelemetrySeries with a quote in the device = %+v, %v; want nothing", injected, err)
	}

	latest, err := db.LatestTelemetry(ctx, "d1")
	if err != nil {
		t.Fatalf("LatestTelemetry: %v", err)
	}
	wantLatest := []storage.Latest{
		{Metric: "pm10", TS: base.Add(45 * time.Second), Value: 7},
		{Metric: "pm25", TS: base.Add(3 * time.Minute), Value: 50},
	}
	if len(latest) != len(wantLatest) {
		t.Fatalf("LatestTelemetry = %+v, want %+v", latest, wantLatest)
	}
	for i := range wantLatest {
		if latest[i].Metric != wantLatest[i].Metric || !latest[i].TS.Equal(wantLatest[i].TS) || latest[i].Value != wantLatest[i].Value {
			t.Errorf("latest %d = %+v, want %+v", i, latest[i], wantLatest[i])
		}
	}
	// Milliseconds survive: a second write 1 ms later becomes the latest.
	if err := w.Write(ctx, "telemetry", "q-2", telemetryRecord(t, []reading{{ms(3*time.Minute + time.Millisecond), 0, "d1", "pm25", 51}})); err != nil {
		t.Fatal(err)
	}
	latest, err = db.LatestTelemetry(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	if l := latest[1]; !l.TS.Equal(base.Add(3*time.Minute+time.Millisecond)) || l.Value != 51 {
		t.Errorf("latest pm25 = %+v, want 51 at +3m0.001s", l)
	}
	if none, err := db.LatestTelemetry(ctx, "nobody"); err != nil || len(none) != 0 {
		t.Errorf("LatestTelemetry of an unknown device = %+v, %v", none, err)
	}

	// StoredReadings finds rows by device and millisecond, whatever the metric.
	stored, err := db.StoredReadings(ctx, "d1", []int64{ms(123 * time.Millisecond), ms(124 * time.Millisecond), ms(45 * time.Second), ms(time.Second)})
	if err != nil {
		t.Fatalf("StoredReadings: %v", err)
	}
	wantStored := map[storage.ReadingKey]bool{{TS: ms(123 * time.Millisecond), Metric: "pm25"}: true, {TS: ms(45 * time.Second), Metric: "pm10"}: true}
	if !maps.Equal(stored, wantStored) {
		t.Errorf("StoredReadings = %v, want %v", stored, wantStored)
	}
}

// TestLastHeardIntegration: LastHeard tells, of the devices asked, when
// the latest of their readings received at or after since arrived, in
// chunks of devices (here two), leaving out a reading received before
// since, one stamped more than HeardLate before since, and devices none
// stored; a device id is bound, not spliced into the SQL.
func TestLastHeardIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	ms := func(d time.Duration) int64 { return base.Add(d).UnixMilli() }
	rows := []reading{
		{ms(time.Minute), ms(time.Minute), "d1", "level_cm", 1},
		{ms(2 * time.Minute), ms(2*time.Minute + 150*time.Millisecond), "d1", "level_cm", 2},
		{ms(30 * time.Second), ms(30 * time.Second), "d2", "level_cm", 3},                  // received before since
		{ms(-storage.HeardLate - time.Minute), ms(5 * time.Minute), "d3", "level_cm", 4},   // stamped too long before
		{ms(4 * time.Hour), ms(3 * time.Minute), "d5", "level_cm", 5},                      // stamped ahead
		{ms(-storage.HeardLate + 2*time.Minute), ms(4 * time.Minute), "d6", "level_cm", 6}, // stamped late, within HeardLate
	}
	w, _ := newWriter(t, db, storage.WriterOptions{})
	if err := w.Write(ctx, "telemetry", "h-1", telemetryRecord(t, rows)); err != nil {
		t.Fatal(err)
	}
	ask := []string{"d1", "d2", "d3", "d4", "d1' OR '1'='1", "d6"}
	for i := range 1200 {
		ask = append(ask, fmt.Sprintf("none-%d", i))
	}
	ask = append(ask, "d5")
	got, err := db.LastHeard(ctx, ask, base.Add(45*time.Second))
	if err != nil {
		t.Fatalf("LastHeard: %v", err)
	}
	want := map[string]time.Time{
		"d1": base.Add(2*time.Minute + 150*time.Millisecond),
		"d5": base.Add(3 * time.Minute),
		"d6": base.Add(4 * time.Minute),
	}
	if !maps.EqualFunc(got, want, time.Time.Equal) {
		t.Errorf("LastHeard = %v, want %v", got, want)
	}
	if none, err := db.LastHeard(ctx, []string{"d1"}, base.Add(3*time.Minute)); err != nil || len(none) != 0 {
		t.Errorf("LastHeard of d1 since after its last reading = %v, %v; want none", none, err)
	}
}

func TestUpsertDevicesIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	const secret = "plaintext-secret-42"
	devs := []devices.Device{
		{ID: "mh-001", Type: "manhole_cover", Grid: "g-0101", Lat: 39.9042, Lon: 116.4074, Name: "Manhole, 12 Xinhua Rd", Secret: secret},
		{ID: "wl-007", Type: "water_level", Grid: "g-0102", Secret: secret},
	}
	if err := db.UpsertDevices(ctx, devs); err != nil {
		t.Fatalf("UpsertDevices: %v", err)
	}
	devs[0].Name, devs[0].Grid = "Manhole, 14 Xinhua Rd", "g-0103"
	if err := db.UpsertDevices(ctx, devs[:1]); err != nil {
		t.Fatal(err)
	}
	rows, err := db.Conn().Query(ctx, "SELECT id, type, grid, lat, lon, name FROM `"+db.Database()+"`.devices FINAL ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var got []devices.Device
	for rows.Next() {
		var d devices.Device
		if err := rows.Scan(&d.ID, &d.Type, &d.Grid, &d.Lat, &d.Lon, &d.Name); err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	if len(got) != 2 {
		t.Fatalf("devices = %+v, want 2", got)
	}
	for i := range got {
		want := devs[i]
		want.Secret = ""
		if got[i] != want {
			t.Errorf("device %d = %+v, want %+v", i, got[i], want)
		}
	}
	var leaks uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+db.Database()+"`.devices WHERE position(concat(id, type, grid, name), ?) > 0", secret).Scan(&leaks); err != nil {
		t.Fatal(err)
	}
	if leaks != 0 {
		t.Errorf("the device secret was stored in %d rows", leaks)
	}
	if err := db.UpsertDevices(ctx, nil); err != nil {
		t.Errorf("UpsertDevices(nil): %v", err)
	}
}

func TestDropExpiredIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{RetentionDays: 30})
	ctx := t.Context()
	now := time.Date(2024, 11, 22, 12, 0, 0, 0, time.UTC)
	old := time.Date(2024, 9, 30, 23, 59, 59, 999e6, time.UTC) // September ends 53 days before now
	recent := time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC)     // October holds rows 52 days old, kept
	w, _ := newWriter(t, db, storage.WriterOptions{})
	if err := w.Write(ctx, "telemetry", "old", telemetryRecord(t, []reading{
		{old.UnixMilli(), 0, "d", "m", 1},
		{recent.UnixMilli(), 0, "d", "m", 2},
		{now.UnixMilli(), 0, "d", "m", 3},
	})); err != nil {
		t.Fatal(err)
	}
	cams := array.NewRecordBuilder(memory.NewGoAllocator(), rtsp.Schema)
	defer cams.Release()
	rtsp.AppendRecord(cams, rtsp.HealthRecord{TS: old.UnixMilli(), Camera: "c", Kind: rtsp.KindLiveness, Status: rtsp.StatusOK})
	rtsp.AppendRecord(cams, rtsp.HealthRecord{TS: now.UnixMilli(), Camera: "c", Kind: rtsp.KindLiveness, Status: rtsp.StatusOK})
	camRec := cams.NewRecord()
	defer camRec.Release()
	if err := w.Write(ctx, rtsp.Table, "cams", camRec); err != nil {
		t.Fatal(err)
	}
	n, err := db.DropExpired(ctx, now)
	if err != nil {
		t.Fatalf("DropExpired: %v", err)
	}
	if n != 2 {
		t.Errorf("DropExpired dropped %d partitions, want 2 (September of telemetry and camera_health)", n)
	}
	var camsLeft uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count() FROM `"+db.Database()+"`.camera_health").Scan(&camsLeft); err != nil || camsLeft != 1 {
		t.Errorf("camera_health rows left = %d, %v; want 1", camsLeft, err)
	}
	var left []float64
	rows, err := db.Conn().Query(ctx, "SELECT value FROM `"+db.Database()+"`.telemetry ORDER BY value")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var v float64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		left = append(left, v)
	}
	rows.Close()
	if fmt.Sprint(left) != "[2 3]" {
		t.Errorf("rows left = %v, want [2 3]", left)
	}
	if n, err := db.DropExpired(ctx, now); err != nil || n != 0 {
		t.Errorf("second DropExpired = %d, %v; want 0", n, err)
	}

	keep := openMigrated(t, storage.Options{})
	if n, err := keep.DropExpired(ctx, now.AddDate(10, 0, 0)); err != nil || n != 0 {
		t.Errorf("DropExpired without retention = %d, %v; want 0", n, err)
	}
}

func TestTelemetryMessagesIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	t1, t2 := base.UnixMilli()+1, base.UnixMilli()+2
	w, _ := newWriter(t, db, storage.WriterOptions{})
	// Two batch ids: the second insert is not deduplicated but stores
	// d1's message at t1 a second time.
	for i, rs := range [][]reading{
		{{t1, 0, "d1", "pm25", 1}, {t1, 0, "d1", "pm10", 2}, {t2, 0, "d1", "pm25", 3}, {t1, 0, "d2", "pm25", 4}},
		{{t1, 0, "d1", "pm25", 1}, {t1, 0, "d1", "pm10", 2}},
	} {
		if err := w.Write(ctx, "telemetry", fmt.Sprintf("m-%d", i), telemetryRecord(t, rs)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.TelemetryMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[int64]storage.MessageRows{
		"d1": {t1: {Rows: 4, Repeated: 2}, t2: {Rows: 1}},
		"d2": {t1: {Rows: 1}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("TelemetryMessages = %v, want %v", got, want)
	}
}
