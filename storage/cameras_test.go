package storage_test

import (
	"reflect"
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
		{TS: day.Add(time.Hour).UnixMilli(), Camera: "cam1", Grid: "g1", Kind: rtsp.KindSample, Status: rtsp.StatusDegraded, FPS: 25, Width: 320, Height: 240, Codec: "H264",
			Detail: "blur,noise", Pictures: 3, Conditions: []rtsp.Condition{rtsp.CondBlur, rtsp.CondNoise}, Luma: 120, Contrast: 40, Sharpness: 12.5,
			NoiseSigma: 3.5, CastRatio: 0.1, FrameDiff: 4.2, Referenced: true, RefCorrelation: 0.93, OccludedPct: 5},
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
	// The latest health is the latest probe's; its picture, the latest
	// diagnosed sample's, stored with every figure.
	wantPic := storage.PictureHealth{TS: day.Add(time.Hour), Pictures: 3, Conditions: []string{"blur", "noise"}, Luma: 120, Contrast: 40,
		Sharpness: 12.5, NoiseSigma: 3.5, CastRatio: 0.1, FrameDiff: 4.2, RefCorrelation: 0.93, OccludedPct: 5, Referenced: true}
	if pic := latest[0].Picture; pic == nil || !reflect.DeepEqual(*pic, wantPic) {
		t.Errorf("latest picture of cam1 = %+v, want %+v", pic, wantPic)
	}
	if latest[1].Picture != nil {
		t.Errorf("cam2 was never diagnosed, yet has picture %+v", latest[1].Picture)
	}
	// Beside it the latest stream sample, with what only a sample measures.
	if s := latest[0].Sample; s == nil || s.Kind != "sample" || s.Status != "degraded" || s.FPS != 25 || !s.TS.Equal(day.Add(time.Hour)) || s.Picture != nil {
		t.Errorf("latest sample of cam1 = %+v", s)
	}
	if latest[1].Sample != nil {
		t.Errorf("cam2 was never sampled, yet has sample %+v", latest[1].Sample)
	}
	hist, err := db.CameraHistory(ctx, "cam1", day, day.Add(48*time.Hour), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != 2 || hist[0].Status != "degraded" || hist[1].Error != "request timed out" || hist[0].Picture != nil {
		t.Fatalf("history = %+v", hist)
	}
	if all, err := db.CameraHistory(ctx, "cam1", day, day.Add(48*time.Hour), 10); err != nil || len(all) != 3 ||
		all[2].Picture == nil || !reflect.DeepEqual(*all[2].Picture, wantPic) {
		t.Errorf("history of cam1 = %+v (%v), want its sample's picture %+v", all, err, wantPic)
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
