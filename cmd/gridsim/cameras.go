package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/simulators"
)

// camerasCmd serves a camera farm until interrupted.
func camerasCmd(logger *slog.Logger) *cobra.Command {
	var (
		count                   int
		resolution, codec, grid string
		fps                     float64
		faults, csvPath         string
		farm                    = simulators.CameraFarm{Logger: logger}
	)
	cmd := &cobra.Command{
		Use:   "cameras",
		Short: "Serve simulated RTSP cameras with injectable faults",
		Long: `Serve --count simulated cameras from one RTSP server: real H.264 or H.265
test-pattern video (--codec h264, h265, or mixed: every second camera H.265),
looped, under rtsp://ADDR/camNNNNN. --faults gives faults to the first
cameras, as fault=count pairs (offline, refusing, auth, wrong_auth, not_found,
stall, low_fps, loss, codec_change, no_video, slow, and the picture faults frozen,
black, blurred, tinted, noisy, covered, dark, bright, moved, at 320x240). --csv writes a devices
CSV of the cameras (type camera, rtsp_url with credentials) for 'gridwatch
devices import' or devices.file. It runs until SIGINT/SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cams, err := farmCameras(count, resolution, codec, fps, faults)
			if err != nil {
				return err
			}
			farm.Cameras = cams
			if err := farm.Start(cmd.Context()); err != nil {
				return err
			}
			defer farm.Close()
			if csvPath != "" {
				if err := writeCameraCSV(csvPath, &farm, grid); err != nil {
					return err
				}
			}
			fmt.Fprintf(os.Stderr, "serving %d cameras on rtsp://%s/ (e.g. %s)\n", len(cams), farm.Addr(), farm.URL(0))
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 10, "number of cameras")
	f.StringVar(&farm.Listen, "listen", "127.0.0.1:8554", "RTSP listen address")
	f.BoolVar(&farm.UDP, "udp", false, "serve the UDP transport too, from two ports next to --listen")
	f.StringVar(&resolution, "resolution", "320x240", "picture size: 320x240 or 640x360")
	f.StringVar(&codec, "codec", "h264", "video codec: h264, h265, or mixed (every second camera H.265)")
	f.Float64Var(&fps, "fps", 25, "frame rate")
	f.StringVar(&faults, "faults", "", "faults of the first cameras, such as offline=2,stall=1")
	f.StringVar(&csvPath, "csv", "", "write the cameras as a devices CSV to this file")
	f.StringVar(&grid, "grid", "G0001", "grid code of the cameras in the CSV")
	return cmd
}

// farmCameras makes count cameras, the first ones with the given faults.
func farmCameras(count int, resolution, codec string, fps float64, faults string) ([]simulators.Camera, error) {
	codecOf := func(int) string { return simulators.CodecH264 }
	switch codec {
	case "h264":
	case "h265":
		codecOf = func(int) string { return simulators.CodecH265 }
	case "mixed":
		codecOf = func(i int) string { return []string{simulators.CodecH264, simulators.CodecH265}[i%2] }
	default:
		return nil, fmt.Errorf("--codec must be h264, h265 or mixed, not %q", codec)
	}
	var fs []simulators.CameraFault
	if faults != "" {
		for _, pair := range strings.Split(faults, ",") {
			name, n, ok := strings.Cut(pair, "=")
			k, err := strconv.Atoi(n)
			if !ok || err != nil || k < 0 {
				return nil, fmt.Errorf("--faults: %q is not fault=count", pair)
			}
			for range k {
				fs = append(fs, simulators.CameraFault(name))
			}
		}
	}
	if count < len(fs) {
		return nil, fmt.Errorf("--count %d is less than the %d faulty cameras", count, len(fs))
	}
	cams := make([]simulators.Camera, count)
	for i := range cams {
		cams[i] = simulators.Camera{Path: fmt.Sprintf("cam%05d", i+1), Resolution: resolution, Codec: codecOf(i), FPS: fps}
		if i < len(fs) {
			cams[i].Fault = fs[i]
		}
	}
	return cams, nil
}

// writeCameraCSV writes the farm's cameras as devices.
func writeCameraCSV(path string, farm *simulators.CameraFarm, grid string) error {
	devs, err := farm.Devices("", grid, func(c simulators.Camera) string { return "Simulated camera " + c.Path })
	if err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--csv: %w", err)
	}
	if err := devices.WriteCSV(f, devs); err != nil {
		f.Close()
		return fmt.Errorf("--csv %s: %w", path, err)
	}
	return f.Close()
}

// probeCmd runs one prober sweep over the cameras of a devices CSV.
func probeCmd(logger *slog.Logger) *cobra.Command {
	var (
		csvPath, kind string
		p             = rtsp.Prober{Logger: logger}
	)
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Probe the cameras of a devices CSV once and print the sweep's figures",
		Long: `Probe every camera of --csv once (--kind liveness or sample), as gridwatch's
prober does, picture diagnosis included unless --no-diagnosis, and print one
JSON line: cameras, sweep time, probes per second, the count per status and
per picture condition, and the Go heap. The camera benchmark
(deploy/bench-cameras.sh) runs it beside ffprobe.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := os.Open(csvPath)
			if err != nil {
				return fmt.Errorf("--csv: %w", err)
			}
			devs, err := devices.ReadCSV(f)
			f.Close()
			if err != nil {
				return fmt.Errorf("--csv %s: %w", csvPath, err)
			}
			targets := rtsp.Targets(devs)
			p.Targets = func() []rtsp.Target { return targets }
			start := time.Now()
			recs := p.Sweep(cmd.Context(), rtsp.Kind(kind))
			took := time.Since(start)
			statuses, conditions, diagnosed := map[string]int{}, map[string]int{}, 0
			for _, r := range recs {
				statuses[string(r.Status)]++
				if r.Diagnosed() {
					diagnosed++
				}
				for _, c := range r.Conditions {
					conditions[string(c)]++
				}
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			out := struct {
				Cameras     int            `json:"cameras"`
				Kind        string         `json:"kind"`
				SweepS      float64        `json:"sweep_s"`
				ProbesPerS  float64        `json:"probes_per_s"`
				Statuses    map[string]int `json:"statuses"`
				Diagnosed   int            `json:"diagnosed"`
				Conditions  map[string]int `json:"conditions"`
				HeapSysMiB  float64        `json:"heap_sys_mib"`
				Concurrency int            `json:"concurrency"`
			}{len(recs), kind, took.Seconds(), float64(len(recs)) / took.Seconds(), statuses, diagnosed, conditions,
				float64(ms.HeapSys) / (1 << 20), p.Concurrency}
			return json.NewEncoder(os.Stdout).Encode(out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&csvPath, "csv", "cameras.csv", "devices CSV with the cameras")
	fl.StringVar(&kind, "kind", "sample", "probe kind: liveness or sample")
	fl.IntVar(&p.Concurrency, "concurrency", 200, "probes in flight")
	fl.DurationVar(&p.SampleDuration, "sample-duration", 2*time.Second, "how long a sample plays")
	fl.DurationVar(&p.Timeout, "timeout", 5*time.Second, "connection and request timeout")
	fl.StringVar(&p.Transport, "transport", "tcp", "sample transport: tcp or udp")
	fl.BoolVar(&p.Diagnosis.Disabled, "no-diagnosis", false, "sample without the picture diagnosis")
	return cmd
}
