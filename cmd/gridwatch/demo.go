package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/rtsp"
	"github.com/gridwatch/gridwatch/internal/server"
	"github.com/gridwatch/gridwatch/simulators"
)

func demoCommand() *cobra.Command {
	var city simulators.City
	var rate float64
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the server with a simulated city: a managed ClickHouse, generated devices and a fleet publishing telemetry",
		Long: `Run gridwatch with a simulated city in one command: a private ClickHouse under
data_dir, a generated city of devices in grid cells (written to
<data_dir>/demo-devices.csv unless devices.file is given), units that alerts
are routed to (<data_dir>/demo-units.yaml unless units.file is given), the server, and a
fleet of simulated devices publishing telemetry to it over MQTT.
` + configHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, logger, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			return runDemo(cmd.Context(), cfg, logger, city, rate, cmd.OutOrStdout())
		},
	}
	cmd.Flags().IntVar(&city.Devices, "devices", 300, "devices in the simulated city")
	cmd.Flags().IntVar(&city.Grids, "grids", 30, "grid cells in the simulated city")
	cmd.Flags().Float64Var(&rate, "rate", 100, "messages per second the whole fleet publishes")
	server.AddFlags(cmd.Flags())
	return cmd
}

// runDemo runs the server and a fleet until ctx ends.
func runDemo(ctx context.Context, cfg server.Config, logger *slog.Logger, city simulators.City, rate float64, out io.Writer) error {
	started := time.Now()
	// The whole simulated city connects from 127.0.0.1, which the per-address
	// connection limit would take for a flood.
	cfg.MQTT.ConnRatePerIP = -1
	// The camera wall shows each camera's still, taken at a stream sample:
	// the demo's dozen cameras on loopback are sampled every minute rather
	// than every 15, unless cameras.sample_interval says otherwise.
	if cfg.Cameras.SampleInterval == rtsp.DefaultSampleInterval {
		cfg.Cameras.SampleInterval = time.Minute
	}
	farm, cameras, err := startDemoCameras(ctx, logger, 12, "demo-cameras")
	if err != nil {
		return err
	}
	defer farm.Close()
	devs, err := demoDevices(&cfg, city, cameras)
	if err != nil {
		return err
	}
	if err := demoUnits(&cfg, devs); err != nil {
		return fmt.Errorf("demo units: %w", err)
	}
	srv := &server.Server{Config: cfg, Logger: logger}
	if err := srv.Start(ctx); err != nil {
		return err
	}
	defer srv.Close()

	_, mqttPort, _ := net.SplitHostPort(srv.MQTTAddr())
	fleet := &simulators.Fleet{Broker: "tcp://127.0.0.1:" + mqttPort, Devices: devs, Rate: rate, Logger: logger}
	fleetDone := make(chan error, 1)
	go func() {
		stats, err := fleet.Run(ctx)
		logger.Info("demo fleet stopped", "stats", stats.String())
		fleetDone <- err
	}()
	// The city's staff work the cases the alerts raise, so that every step
	// of the case loop and the rankings have something to show.
	_, httpPort, _ := net.SplitHostPort(srv.HTTPAddr())
	staff := &simulators.Staff{URL: "http://127.0.0.1:" + httpPort, Token: cfg.API.AdminToken, At: cases.Point{Lat: devs[0].Lat, Lon: devs[0].Lon}, Logger: logger}
	staffCtx, stopStaff := context.WithCancel(ctx)
	staffDone := make(chan struct{})
	go func() {
		defer close(staffDone)
		_ = staff.Run(staffCtx)
	}()
	defer func() { stopStaff(); <-staffDone }()
	printDemoBanner(out, srv, devs, time.Since(started))

	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := <-fleetDone; err != nil && !errors.Is(err, context.Canceled) {
				logger.Warn("demo fleet", "err", err)
			}
			return srv.Close()
		case err := <-fleetDone:
			return fmt.Errorf("demo fleet: %w", err)
		case <-tick.C:
			var rows uint64
			q := "SELECT count() FROM " + cfg.ClickHouse.Database + ".telemetry"
			if err := srv.DB().Conn().QueryRow(ctx, q).Scan(&rows); err == nil {
				logger.Info("demo running", "telemetry_rows", rows)
			}
		}
	}
}

// demoDevices loads devices.file, or generates the city and points
// devices.file at it.
// The generated file also lists cameras, which the fleet does not run.
func demoDevices(cfg *server.Config, city simulators.City, cameras []devices.Device) ([]devices.Device, error) {
	if cfg.Devices.File != "" {
		f, err := os.Open(cfg.Devices.File)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		return devices.ReadCSV(f)
	}
	devs, err := city.Generate()
	if err != nil {
		return nil, fmt.Errorf("generate city: %w", err)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, err
	}
	// The cameras stand beside devices of the city, so that the map shows
	// them in its cells.
	cameras = slices.Clone(cameras)
	for i := range cameras {
		d := devs[(i*len(devs)/max(len(cameras), 1))%len(devs)]
		cameras[i].Grid, cameras[i].Lat, cameras[i].Lon = d.Grid, d.Lat+0.0004, d.Lon+0.0004
	}
	if cfg.Grids.File == "" {
		if err := demoGrids(cfg, city); err != nil {
			return nil, err
		}
	}
	cfg.Devices.File = filepath.Join(cfg.DataDir, "demo-devices.csv")
	f, err := os.OpenFile(cfg.Devices.File, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600) // it holds device secrets
	if err != nil {
		return nil, err
	}
	if err := devices.WriteCSV(f, append(devs[:len(devs):len(devs)], cameras...)); err != nil {
		f.Close()
		return nil, err
	}
	return devs, f.Close()
}

// demoGrids writes the generated city's areas (districts, streets and
// cells with their polygons) to data_dir/demo-grids.geojson and points
// grids.file at it, for the console's map.
func demoGrids(cfg *server.Config, city simulators.City) error {
	areas, err := city.Areas()
	if err != nil {
		return fmt.Errorf("demo grids: %w", err)
	}
	cfg.Grids.File = filepath.Join(cfg.DataDir, "demo-grids.geojson")
	f, err := os.Create(cfg.Grids.File)
	if err != nil {
		return err
	}
	if err := devices.WriteGeoJSON(f, areas); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func printDemoBanner(out io.Writer, srv *server.Server, devs []devices.Device, took time.Duration) {
	_, httpPort, _ := net.SplitHostPort(srv.HTTPAddr())
	base := "http://127.0.0.1:" + httpPort
	var d devices.Device
	var metric string
	for _, d = range devs {
		if typ, ok := devices.LookupType(d.Type); ok && len(typ.Metrics) > 0 {
			metric = typ.Metrics[0].Name
			break
		}
	}
	db := srv.Config.ClickHouse.Database
	fmt.Fprintf(out, `
gridwatch demo is up (%s): %d simulated devices publishing to %s

  The console (cases, alerts, grid map, camera wall, evaluation, operations):
    %s/

  Latest values of a device:
    curl -s '%s/api/v1/devices/%s/latest'
  Its %s over the last hour, per minute:
    curl -s '%s/api/v1/devices/%s/telemetry?metric=%s&step=1m'
  Firing alerts, their live stream, and the cameras' health:
    curl -s '%s/api/v1/alerts?condition=firing'
    curl -sN %s/api/v1/alerts/stream
    curl -s %s/api/v1/cameras
  The cases the alerts raised, dispatched to their units, and their live stream:
    curl -s '%s/api/v1/cases?status=dispatched'
    curl -sN %s/api/v1/cases/stream
    gridwatch cases list --server %s
  Health, readiness and metrics:
    curl -s %s/readyz ; curl -s %s/metrics | grep gridwatch_
  Rows in ClickHouse, per device type:
    clickhouse-client %s -q "SELECT d.type, count() FROM %s.telemetry t ANY LEFT JOIN (SELECT id AS device, type FROM %s.devices) d USING device GROUP BY d.type"
  Devices (with their secrets, for mosquitto_pub): %s

Press Ctrl-C to stop; what is buffered is flushed into ClickHouse first.

`, took.Round(100*time.Millisecond), len(devs), srv.MQTTAddr(), base,
		base, d.ID, metric, base, d.ID, metric, base, base, base, base, base, base, base, base, srv.ClickHouseClient(), db, db, srv.Config.Devices.File)
}
