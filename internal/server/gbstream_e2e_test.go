package server

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/ingest/rtsp/rtsptest"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// gbSample is one camera_health sample row of a GB/T 28181 camera.
type gbSample struct {
	camera, status, detail, errText string
	pictures                        uint32
	conditions                      []rtsp.Condition
}

// gbSamples reads the sample rows of the cameras, oldest first.
func gbSamples(t *testing.T, srv *Server) []gbSample {
	t.Helper()
	cols := []string{"frozen"}
	for _, c := range rtsp.Conditions {
		if c != rtsp.CondFrozen {
			cols = append(cols, string(c))
		}
	}
	q := fmt.Sprintf("SELECT camera, status, detail, error, pictures, toUInt8(%s) FROM %s.camera_health WHERE kind = 'sample' ORDER BY ts",
		strings.Join(cols, "), toUInt8("), srv.Config.ClickHouse.Database)
	rows, err := srv.DB().Conn().Query(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	defer rows.Close()
	var out []gbSample
	for rows.Next() {
		var s gbSample
		flags := make([]uint8, len(cols))
		dest := []any{&s.camera, &s.status, &s.detail, &s.errText, &s.pictures}
		for i := range flags {
			dest = append(dest, &flags[i])
		}
		if err := rows.Scan(dest...); err != nil {
			t.Fatal(err)
		}
		for _, c := range rtsp.Conditions { // in the order records list them
			if flags[slices.Index(cols, string(c))] == 1 {
				s.conditions = append(s.conditions, c)
			}
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGB28181StreamSampleGroundTruth attacks the README's promise that a
// camera known only by its GB/T 28181 id is sampled and diagnosed like an
// RTSP one: simulated devices without a stream URL — healthy ones and
// picture faults in H.264 and H.265, and one that never answers an
// INVITE — register with gridwatch, are invited on the prober's schedule,
// stream PS over RTP, and their camera_health rows in ClickHouse carry the
// right condition each (the confusion table is printed); the silent one is
// unreachable with the reason, counted. When gridwatch stops, every
// stream has had its BYE.
func TestGB28181StreamSampleGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs ClickHouse")
	}
	addr, database := storagetest.Database(t)
	const password = "gb-stream-secret"
	cams := []struct {
		fault simulators.CameraFault
		codec string
	}{
		{simulators.FaultNone, simulators.CodecH264}, {simulators.FaultNone, simulators.CodecH265},
		{simulators.FaultBlack, simulators.CodecH264}, {simulators.FaultBlurred, simulators.CodecH265},
		{simulators.FaultFrozen, simulators.CodecH264}, {simulators.FaultTinted, simulators.CodecH265},
		{simulators.FaultCovered, simulators.CodecH264}, {simulators.FaultNoisy, simulators.CodecH264},
		{simulators.FaultOffline, simulators.CodecH264}, // never answers INVITE
	}
	var devs []devices.Device
	truth := map[string]string{}
	for i, c := range cams {
		id := simulators.GBDeviceID(gb28181.DefaultRealm, i+1)
		devs = append(devs, devices.Device{ID: id, Type: "camera", Grid: "D01-S01-G01", SIPPassword: password})
		truth[id] = rtsptest.Healthy
		if c.fault != simulators.FaultNone {
			truth[id] = simulators.PictureFaults[c.fault]
		}
	}
	silent := devs[len(devs)-1].ID
	srv := startServer(t, addr, database, devs, func(c *Config) {
		c.GB28181.UDPListen = "127.0.0.1:0"
		c.GB28181.InviteTimeout = 3 * time.Second
		c.Cameras.Enabled = true
		c.Cameras.SampleInterval = 4 * time.Second
		// 2.2 s holds three keyframes at the farm's one a second.
		c.Cameras.SampleDuration = 2200 * time.Millisecond
	})
	var sims []*simulators.GBDevice
	for i, c := range cams {
		d := &simulators.GBDevice{ID: devs[i].ID, Password: password, Server: srv.GB28181UDPAddr(), Transport: "udp",
			Fault: c.fault, Codec: c.codec}
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		sims = append(sims, d)
	}

	// Each answering camera delivers two samples of video (a loaded
	// machine may stall one, which says nothing of the diagnosis), the
	// silent one is found unreachable.
	const want = 2
	var rows []gbSample
	deadline := time.Now().Add(3 * time.Minute)
	for {
		rows = gbSamples(t, srv)
		up := map[string]int{}
		for _, r := range rows {
			if rtsp.Status(r.status).Up() || r.camera == silent && r.status == string(rtsp.StatusUnreachable) {
				up[r.camera]++
			}
		}
		done := true
		for _, d := range devs {
			done = done && up[d.ID] >= want
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 3 minutes, samples with video per camera: %v (want %d each)", up, want)
		}
		time.Sleep(500 * time.Millisecond)
	}

	table := rtsptest.Confusion{}
	for _, r := range rows {
		switch {
		case r.camera == silent:
			if r.status != string(rtsp.StatusUnreachable) || !strings.Contains(r.errText, "no answer to INVITE") {
				t.Errorf("silent camera: status %s, error %q; want unreachable, no answer to INVITE", r.status, r.errText)
			}
		case !rtsp.Status(r.status).Up():
			t.Logf("%s: status %s %q (%s) on this loaded machine; not judged", r.camera, r.status, r.detail, r.errText)
		default:
			want := truth[r.camera]
			if !table.Add(want, r.conditions) {
				t.Errorf("%s: conditions %v, want %s (status %s %q, %d pictures)", r.camera, r.conditions, want, r.status, r.detail, r.pictures)
			}
			if r.pictures < 2 {
				t.Errorf("%s: %d pictures decoded, want the sample's keyframes", r.camera, r.pictures)
			}
			if st := rtsp.Status(r.status); want == rtsptest.Healthy && st != rtsp.StatusOK || want != rtsptest.Healthy && st != rtsp.StatusDegraded {
				t.Errorf("%s: status %s %q for truth %s", r.camera, r.status, r.detail, want)
			}
		}
	}
	t.Logf("picture diagnosis of GB/T 28181 cameras sampled by INVITE:\n%s", table.Table())
	waitMetric(t, srv, `gridwatch_gb28181_streams_total{result="no_answer"}`)
	waitMetric(t, srv, `gridwatch_gb28181_streams_total{result="ok"}`)

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, d := range sims {
		waitFor(t, 60*time.Second, func() bool { return d.Streaming() == 0 })
		if d.ID != silent && d.Invites() < want {
			t.Errorf("%s answered %d invites, want at least %d", d.ID, d.Invites(), want)
		}
	}
}
