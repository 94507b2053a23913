package gb28181_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h265"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/simulators"
)

// startStreamer starts a simulated UDP device with one channel and waits
// for its catalog.
func startStreamer(t *testing.T, tr *testRegistrar, id, password, codec string, fault simulators.CameraFault) *simulators.GBDevice {
	t.Helper()
	d := tr.device(id, password, "udp")
	d.Codec, d.Fault = codec, fault
	d.Channels = []string{id[:10] + "131" + id[13:]} // type 131: a camera channel
	if err := d.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	waitFor(t, 30*time.Second, "the catalog of "+id, func() bool {
		st, ok := tr.Device(id)
		return ok && len(st.Channels) == 1
	})
	return d
}

// playFrames plays d's channel for 50 frames: they are access units of
// codec with keyframes, at 25 a second of RTP time, none lost; once Play
// returns, the device has had its BYE. It returns the stream's figures.
func playFrames(t *testing.T, tr *testRegistrar, d *simulators.GBDevice, codec string) gb28181.StreamStats {
	t.Helper()
	st, _ := tr.Device(d.ID)
	var (
		mu         sync.Mutex
		frames     int
		keyframes  int
		first, end uint32
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stats, err := tr.Play(ctx, st.Channels[0].ID, func(f gb28181.Frame) {
		mu.Lock()
		defer mu.Unlock()
		if f.Codec != codec {
			t.Errorf("codec %s, want %s", f.Codec, codec)
		}
		key := h264.IsRandomAccess(f.AU)
		if codec == simulators.CodecH265 {
			key = h265.IsRandomAccess(f.AU)
		}
		if key {
			keyframes++
		}
		if frames == 0 {
			first = f.TS
		}
		frames++
		end = f.TS
		if frames == 50 {
			cancel()
		}
	})
	if err != nil {
		t.Fatalf("play: %v (stats %+v)", err, stats)
	}
	mu.Lock()
	defer mu.Unlock()
	if frames < 50 || keyframes == 0 || stats.Frames < 50 || stats.Packets < 50 || stats.BadFrames != 0 || stats.PacketsLost != 0 {
		t.Fatalf("%d frames, %d keyframes, stats %+v", frames, keyframes, stats)
	}
	if span := end - first; span != 49*3600 { // 25 fps of 90 kHz time
		t.Fatalf("49 frame intervals span %d ticks, want %d", span, 49*3600)
	}
	waitFor(t, 30*time.Second, "the device's stream ended by BYE", func() bool { return d.Streaming() == 0 })
	return stats
}

// TestPlayTCP plays a channel with RTP over TCP, gridwatch passive: the
// device connects to the offered port and frames its packets (RFC 4571).
func TestPlayTCP(t *testing.T) {
	const password = "play-tcp-secret"
	id := simulators.GBDeviceID(realm, 1)
	tr := startRegistrar(t, []devices.Device{camera(id, password)}, func(r *gb28181.Registrar) {
		r.StreamTransport = "tcp"
	})
	d := startStreamer(t, tr, id, password, simulators.CodecH264, simulators.FaultNone)
	if st := playFrames(t, tr, d, simulators.CodecH264); st.Transport != "tcp" {
		t.Fatalf("transport %q, want tcp", st.Transport)
	}
}

// TestPlay invites a simulated device's channel to stream, in each codec:
// the frames of the farm's clip arrive as access units with keyframes, at
// 25 per second of RTP time, and once Play returns the device has had its
// BYE and streams no more; no stream is left playing. A device that never
// answers is given up after InviteTimeout with ErrNoAnswer, one that is
// not registered with ErrNoChannel; each is counted.
func TestPlay(t *testing.T) {
	const password = "play-secret"
	ids := []string{simulators.GBDeviceID(realm, 1), simulators.GBDeviceID(realm, 2), simulators.GBDeviceID(realm, 3),
		simulators.GBDeviceID(realm, 4)}
	var devs []devices.Device
	for _, id := range ids {
		devs = append(devs, camera(id, password))
	}
	tr := startRegistrar(t, devs, func(r *gb28181.Registrar) {
		r.InviteTimeout, r.StreamTimeout = 2*time.Second, 2*time.Second
	})
	start := func(id, codec string, fault simulators.CameraFault) *simulators.GBDevice {
		return startStreamer(t, tr, id, password, codec, fault)
	}

	for i, codec := range []string{simulators.CodecH264, simulators.CodecH265} {
		t.Run(codec, func(t *testing.T) {
			playFrames(t, tr, start(ids[i], codec, simulators.FaultNone), codec)
		})
	}

	t.Run("never answers", func(t *testing.T) {
		start(ids[2], "", simulators.FaultOffline)
		began := time.Now()
		_, err := tr.Play(context.Background(), ids[2], func(gb28181.Frame) { t.Error("a frame") })
		if !errors.Is(err, gb28181.ErrNoAnswer) {
			t.Fatalf("err %v, want ErrNoAnswer", err)
		}
		if took := time.Since(began); took < tr.InviteTimeout {
			t.Fatalf("given up after %s, before InviteTimeout %s", took, tr.InviteTimeout)
		}
		if n := tr.metric("gridwatch_gb28181_streams_total", "result", "no_answer"); n != 1 {
			t.Fatalf("no_answer counted %v times", n)
		}
	})
	t.Run("stops streaming", func(t *testing.T) {
		start(ids[3], simulators.CodecH264, simulators.FaultStall)
		frames := 0
		stats, err := tr.Play(context.Background(), ids[3], func(gb28181.Frame) { frames++ })
		if !errors.Is(err, gb28181.ErrStreamStopped) || frames == 0 || stats.Frames != uint64(frames) {
			t.Fatalf("err %v after %d frames (stats %+v), want ErrStreamStopped after some", err, frames, stats)
		}
		if n := tr.metric("gridwatch_gb28181_streams_total", "result", "stopped"); n != 1 {
			t.Fatalf("stopped counted %v times", n)
		}
	})
	t.Run("not registered", func(t *testing.T) {
		_, err := tr.Play(context.Background(), simulators.GBDeviceID(realm, 99), func(gb28181.Frame) {})
		if !errors.Is(err, gb28181.ErrNoChannel) {
			t.Fatalf("err %v, want ErrNoChannel", err)
		}
	})
	if n := tr.metric("gridwatch_gb28181_streams_total", "result", "ok"); n != 2 {
		t.Fatalf("ok streams counted %v, want 2", n)
	}
	waitFor(t, 10*time.Second, "no stream playing", func() bool {
		return tr.metric("gridwatch_gb28181_streams_playing", "", "") == 0
	})
	// Play leaves nothing running: no receiver, no RTP statistics.
	waitFor(t, 30*time.Second, "the streams' goroutines gone", func() bool {
		return streamGoroutines() == 0
	})
}

// streamGoroutines counts the goroutines of a stream's receiver.
func streamGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "rtcpreceiver.(*RTCPReceiver)") || strings.Contains(g, "gb28181.(*receiver)") ||
			strings.Contains(g, "gb28181.(*Registrar).play") {
			n++
		}
	}
	return n
}

// TestPlayMisbehavingDevices invites devices that answer or stream
// wrongly: each stream fails with its own error and result, counted, and
// the device has had its BYE when Play returns (or sent its own). Streams
// beyond MaxStreams wait for a slot.
func TestPlayMisbehavingDevices(t *testing.T) {
	const password = "misbehaving-secret"
	var devs []devices.Device
	for i := 1; i <= 9; i++ {
		devs = append(devs, camera(simulators.GBDeviceID(realm, i), password))
	}
	tr := startRegistrar(t, devs, func(r *gb28181.Registrar) {
		r.InviteTimeout, r.StreamTimeout, r.MaxStreams = 5*time.Second, 5*time.Second, 2
	})
	n := 0
	start := func(fault simulators.CameraFault) *simulators.GBDevice {
		n++
		return startStreamer(t, tr, simulators.GBDeviceID(realm, n), password, simulators.CodecH264, fault)
	}
	counted := func(metric, label, value string, want float64) {
		t.Helper()
		if got := tr.metric(metric, label, value); got != want {
			t.Fatalf("%s{%s=%q} = %v, want %v", metric, label, value, got, want)
		}
	}
	play := func(d *simulators.GBDevice, until func(frames int) bool) (int, gb28181.StreamStats, error) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var mu sync.Mutex
		frames := 0
		st, err := tr.Play(ctx, d.ID, func(gb28181.Frame) {
			mu.Lock()
			defer mu.Unlock()
			frames++
			if until != nil && until(frames) {
				cancel()
			}
		})
		if ctx.Err() == context.DeadlineExceeded {
			t.Fatalf("Play ran for 2 minutes: err %v", err)
		}
		mu.Lock()
		defer mu.Unlock()
		return frames, st, err
	}
	ended := func(d *simulators.GBDevice) {
		t.Helper()
		waitFor(t, 30*time.Second, "the device's dialog ended", func() bool { return d.Streaming() == 0 })
	}

	t.Run("garbage SDP", func(t *testing.T) {
		d := start(simulators.FaultBadSDP)
		if _, _, err := play(d, nil); !errors.Is(err, gb28181.ErrBadAnswer) {
			t.Fatalf("err %v, want ErrBadAnswer", err)
		}
		counted("gridwatch_gb28181_streams_total", "result", "bad_answer", 1)
		ended(d)
	})
	t.Run("no RTP", func(t *testing.T) {
		d := start(simulators.FaultNoRTP)
		if _, _, err := play(d, nil); !errors.Is(err, gb28181.ErrNoRTP) {
			t.Fatalf("err %v, want ErrNoRTP", err)
		}
		counted("gridwatch_gb28181_streams_total", "result", "no_rtp", 1)
		ended(d)
	})
	t.Run("wrong SSRC", func(t *testing.T) {
		d := start(simulators.FaultWrongSSRC)
		frames, _, err := play(d, nil)
		if !errors.Is(err, gb28181.ErrNoRTP) || !strings.Contains(err.Error(), "of another SSRC") || frames != 0 {
			t.Fatalf("err %v after %d frames, want ErrNoRTP naming the SSRC", err, frames)
		}
		counted("gridwatch_gb28181_streams_total", "result", "no_rtp", 2)
		if tr.metric("gridwatch_gb28181_stream_errors_total", "reason", "wrong_ssrc") == 0 {
			t.Fatal("wrong_ssrc not counted")
		}
		ended(d)
	})
	t.Run("hangs up", func(t *testing.T) {
		d := start(simulators.FaultHangUp)
		// The BYE ends the stream whether or not a frame was read.
		if _, _, err := play(d, nil); !errors.Is(err, gb28181.ErrHungUp) {
			t.Fatalf("err %v, want ErrHungUp", err)
		}
		counted("gridwatch_gb28181_streams_total", "result", "hung_up", 1)
		ended(d)
	})
	t.Run("drops the stream", func(t *testing.T) {
		// It answers the BYE 481: the dialog is gone, the BYE not failed.
		d := start(simulators.FaultDropsStream)
		if _, _, err := play(d, nil); !errors.Is(err, gb28181.ErrStreamStopped) {
			t.Fatalf("err %v, want ErrStreamStopped", err)
		}
		counted("gridwatch_gb28181_streams_total", "result", "stopped", 1)
		counted("gridwatch_gb28181_streams_total", "result", "bye_failed", 0)
		ended(d)
	})
	t.Run("goes offline mid-stream", func(t *testing.T) {
		d := start(simulators.FaultNone)
		frames, _, err := play(d, func(frames int) bool {
			if frames == 10 {
				go d.Close() // its power cut: no more RTP, no answer to BYE
			}
			return false
		})
		if !errors.Is(err, gb28181.ErrStreamStopped) || frames < 10 {
			t.Fatalf("err %v after %d frames, want ErrStreamStopped after 10 or more", err, frames)
		}
		counted("gridwatch_gb28181_streams_total", "result", "stopped", 2)
		counted("gridwatch_gb28181_streams_total", "result", "bye_failed", 1)
	})
	t.Run("concurrent invites", func(t *testing.T) {
		d := start(simulators.FaultNone)
		var wg sync.WaitGroup
		var mu sync.Mutex
		playing, most := 0, 0
		errs := make(chan error, 5)
		for range 5 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				frames, first := 0, true
				_, err := tr.Play(ctx, d.ID, func(gb28181.Frame) {
					frames++
					if first {
						first = false
						mu.Lock()
						playing++
						most = max(most, playing)
						mu.Unlock()
					}
					if frames == 10 {
						mu.Lock()
						playing--
						mu.Unlock()
						cancel()
					}
				})
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a concurrent stream: %v", err)
			}
		}
		if most > 2 {
			t.Fatalf("%d streams played at once, MaxStreams 2", most)
		}
		counted("gridwatch_gb28181_streams_total", "result", "ok", 5)
		ended(d)
	})
	t.Run("offline channel while every slot plays", func(t *testing.T) {
		// Its ErrNoChannel comes at once, not once a slot is free.
		d := start(simulators.FaultNone)
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range 2 { // MaxStreams
			started := make(chan struct{})
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				once := sync.OnceFunc(func() { close(started) })
				_, _ = tr.Play(ctx, d.ID, func(gb28181.Frame) {
					once()
					select {
					case <-release:
						cancel()
					default:
					}
				})
			}()
			<-started
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, err := tr.Play(ctx, simulators.GBDeviceID(realm, 99), func(gb28181.Frame) {})
		close(release)
		wg.Wait()
		if !errors.Is(err, gb28181.ErrNoChannel) {
			t.Fatalf("err %v, want ErrNoChannel at once", err)
		}
		ended(d)
	})
	t.Run("answers late", func(t *testing.T) {
		// Its 200 OK comes after InviteTimeout: it is acknowledged and hung
		// up at once, not left streaming to a closed port.
		n++
		d := tr.device(simulators.GBDeviceID(realm, n), password, "udp")
		d.Channels, d.AnswerDelay = []string{d.ID[:10] + "131" + d.ID[13:]}, tr.InviteTimeout+2*time.Second
		if err := d.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if _, _, err := play(d, nil); !errors.Is(err, gb28181.ErrNoAnswer) {
			t.Fatalf("err %v, want ErrNoAnswer", err)
		}
		waitFor(t, 30*time.Second, "the late answer hung up", func() bool { return d.Byes() == 1 })
		ended(d)
		counted("gridwatch_gb28181_streams_total", "result", "late_answer", 1)
	})
	counted("gridwatch_gb28181_streams_total", "result", "bye_failed", 1) // the device cut off only
	waitFor(t, 30*time.Second, "the streams' goroutines gone", func() bool { return streamGoroutines() == 0 })
}
