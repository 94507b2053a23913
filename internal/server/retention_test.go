package server

import (
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestRetentionDropsExpiredPartitions: with clickhouse.retention_days a
// running server drops the months older than the retention, on 18.16 too,
// which has no TTL, and keeps the recent ones.
func TestRetentionDropsExpiredPartitions(t *testing.T) {
	db := storagetest.Migrated(t)
	var rs []storagetest.Reading
	for i, ts := range []time.Time{time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC), time.Now().Add(-time.Hour)} {
		rs = append(rs, storagetest.Reading{TS: ts.UnixMilli(), Received: ts.UnixMilli(), Device: "wl-1", Grid: "D01", Metric: "level_cm", Value: float64(i)})
	}
	storagetest.WriteTelemetry(t, db, "old-and-new", rs)
	addr, database := storagetest.Addr(t), db.Database()
	srv := startServer(t, addr, database, e2eDevices(t, 1), func(c *Config) { c.ClickHouse.RetentionDays = 30 })
	deadline := time.Now().Add(time.Minute)
	for count(t, srv, "SELECT count() FROM {db}.telemetry") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the 2020 partition is still there a minute after the start")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := count(t, srv, "SELECT count() FROM {db}.telemetry WHERE value = 1"); n != 1 {
		t.Error("the recent row was dropped, not the 2020 one")
	}
}
