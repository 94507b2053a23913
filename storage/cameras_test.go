package storage_test

import (
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/storage"
)

func TestCameraQueriesIntegration(t *testing.T) {
	db := openMigrated(t, storage.Options{})
	ctx := t.Context()
	day := time.Date(2024, 11, 22, 0, 0, 0, 0, time.UTC)
	recs := []rtsp.HealthRecord{
		{TS: day.Add(time.Hour).UnixMilli(), Camera: "cam1", Grid: "g1", Kind: rtsp.KindSample, Status: rtsp.StatusOK, FPS: 25, Width: 320, Height: 240, Codec: "H264"},
		{TS: day.Add(2 * time.Hour).UnixMilli(), Camera: "cam1", Grid: "g1", Kind: rtsp.KindLiveness, Status: rtsp.StatusUnreachable, Error: "request timed out"},
		{TS: day.Add(3 * time.Hour).UnixMilli(), Camera: "cam1", Grid: "g1", Kind: rtsp.KindLiveness, Status: rtsp.StatusDegraded, Detail: "frozen", Frozen: true},
		{TS: day.Add(25 * time.Hour).UnixMilli(), Camera: "cam2", Grid: "g1", Kind: rtsp.KindLiveness, Status: rtsp.StatusAuthFailed},
	}
	b := array.NewRecordBuilder(memory.NewGoAllocator(), rtsp.Schema)
	defer b.Release()
	for _, r := range recs {
		rtsp.AppendRecord(b, r)
	}
	rec := b.NewRecord()
	defer rec.Release()
	w, err := storage.NewWriter(db, storage.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, rtsp.Table, "cameras-1", rec); err != nil {
		t.Fatalf("Write: %v", err)
	}

	latest, err := db.LatestCameraHealth(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(latest) != 2 || latest[0].Status != "degraded" || !latest[0].Frozen || latest[1].Status != "auth_failed" {
		t.Fatalf("latest = %+v", latest)
	}
	hist, err := db.CameraHistory(ctx, "cam1", day, day.Add(48*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Status != "degraded" || hist[1].Error != "request timed out" {
		t.Fatalf("history = %+v", hist)
	}
	byCam, err := db.CameraAvailability(ctx, day, day.Add(48*time.Hour), false)
	if err != nil {
		t.Fatal(err)
	}
	want := []storage.Availability{
		{Key: "cam1", Day: day, Probes: 3, Up: 2, Pct: 200.0 / 3},
		{Key: "cam2", Day: day.Add(24 * time.Hour), Probes: 1, Up: 0, Pct: 0},
	}
	if len(byCam) != len(want) {
		t.Fatalf("availability by camera = %+v, want %+v", byCam, want)
	}
	for i := range want {
		if byCam[i] != want[i] {
			t.Errorf("availability by camera [%d] = %+v, want %+v", i, byCam[i], want[i])
		}
	}
	byGrid, err := db.CameraAvailability(ctx, day, day.Add(24*time.Hour), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(byGrid) != 1 || byGrid[0].Key != "g1" || byGrid[0].Probes != 3 || byGrid[0].Up != 2 {
		t.Fatalf("availability by grid = %+v", byGrid)
	}
}
