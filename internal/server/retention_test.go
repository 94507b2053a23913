package server

import (
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestRetentionDropsExpiredPartitions: with clickhouse.retention_days a
// running server drops the months older than the retention, on 18.16 too,
// which has no TTL, and keeps the recent ones.
func TestRetentionDropsExpiredPartitions(t *testing.T) {
	addr, database := storagetest.Database(t)
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: database, Password: storagetest.Password(t)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), ingest.TelemetrySchema)
	defer b.Release()
	for i, ts := range []time.Time{time.Date(2020, 1, 15, 0, 0, 0, 0, time.UTC), time.Now().Add(-time.Hour)} {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMilli()))
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(ts.UnixMilli()))
		b.Field(2).(*array.StringBuilder).Append("wl-1")
		b.Field(3).(*array.StringBuilder).Append("D01")
		b.Field(4).(*array.StringBuilder).Append("level_cm")
		b.Field(5).(*array.Float64Builder).Append(float64(i))
	}
	rec := b.NewRecord()
	defer rec.Release()
	if err := w.Write(t.Context(), "telemetry", "old-and-new", rec); err != nil {
		t.Fatal(err)
	}
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
