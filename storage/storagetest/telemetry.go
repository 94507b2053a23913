package storagetest

import (
	"testing"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/ingest"
	"github.com/gridwatch/gridwatch/storage"
)

// Migrated opens a fresh database (see Database) migrated to the latest
// schema, closed when t ends.
func Migrated(t testing.TB) *storage.DB {
	t.Helper()
	addr, name := Database(t)
	db, err := storage.Open(t.Context(), storage.Options{Addr: addr, Database: name, Password: Password(t)}, nil)
	if err != nil {
		t.Fatalf("storagetest: open %s: %v", name, err)
	}
	t.Cleanup(func() { _ = db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("storagetest: migrate %s: %v", name, err)
	}
	return db
}

// Reading is one telemetry row; times are ms since the epoch.
type Reading struct {
	TS, Received         int64
	Device, Grid, Metric string
	Value                float64
}

// WriteTelemetry stores rs in db's telemetry table as one batch, as ingest
// would, through a storage.Writer.
func WriteTelemetry(t testing.TB, db *storage.DB, batch string, rs []Reading) {
	t.Helper()
	w, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), ingest.TelemetrySchema)
	defer b.Release()
	for _, r := range rs {
		b.Field(0).(*array.TimestampBuilder).Append(arrow.Timestamp(r.TS))
		b.Field(1).(*array.TimestampBuilder).Append(arrow.Timestamp(r.Received))
		b.Field(2).(*array.StringBuilder).Append(r.Device)
		b.Field(3).(*array.StringBuilder).Append(r.Grid)
		b.Field(4).(*array.StringBuilder).Append(r.Metric)
		b.Field(5).(*array.Float64Builder).Append(r.Value)
	}
	rec := b.NewRecord()
	defer rec.Release()
	if err := w.Write(t.Context(), "telemetry", batch, rec); err != nil {
		t.Fatalf("storagetest: write %d readings: %v", len(rs), err)
	}
}
