package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/simulators"
)

// defaultFleetDevices is the size of the city a fleet generates when no
// devices file is given.
const defaultFleetDevices = 100

func fleetCmd(logger *slog.Logger) *cobra.Command {
	var (
		f      = simulators.Fleet{Logger: logger}
		n      int
		file   string
		qos    uint8
		seed   int64
		asJSON bool
		quiet  bool
		acks   string
	)
	cmd := &cobra.Command{
		Use:   "fleet",
		Short: "Run simulated devices publishing telemetry to a broker",
		Long: `Run simulated devices publishing telemetry to a broker: one MQTT connection
per device (username and client id the device id, password its secret), each
message a JSON object on devices/{id}/telemetry. It stops when --messages are
sent, --duration has passed or on SIGINT/SIGTERM, waits for the publishes in
flight, prints a summary on standard error and, with --json, the statistics
on standard output. It exits non-zero when a device could not connect or a
publish failed.

With --acks every message counted as sent (at QoS 1: every PUBACK) is written
to a file as device,ts,readings; 'gridsim check' compares it with the
telemetry in ClickHouse afterwards: acknowledged means stored, exactly once.

With --devices-file the first --devices devices of that file are used (all by
default); without it a city is generated, whose secrets are fresh random
values: use that against a bare broker ('gridsim broker') or another broker
that admits any device.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, err := fleetDevices(file, n, seed)
			if err != nil {
				return err
			}
			f.Devices = devs
			f.QoS = qos
			f.Models.Seed = seed
			if !quiet {
				f.Progress = os.Stderr
			}
			var log *ackFile
			if acks != "" {
				if log, err = createAckFile(acks); err != nil {
					return err
				}
				f.OnSent = log.Add
			}
			s, err := f.Run(cmd.Context())
			if log != nil {
				if cerr := log.Close(); err == nil {
					err = cerr
				}
			}
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					simulators.Stats
					ElapsedS     float64 `json:"elapsed_s"`
					MessagesPerS float64 `json:"messages_per_s"`
					ReadingsPerS float64 `json:"readings_per_s"`
				}{s, s.Elapsed.Seconds(), s.MessagesPerSecond(), s.ReadingsPerSecond()}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(out); err != nil {
					return fmt.Errorf("write stats: %w", err)
				}
			}
			if s.ConnectErrors > 0 || s.Errors > 0 {
				return fmt.Errorf("%d of %d devices could not connect, %d publishes failed", s.ConnectErrors, s.Devices, s.Errors)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&n, "devices", 0, fmt.Sprintf("number of devices (default 0: all of --devices-file, or %d generated)", defaultFleetDevices))
	fl.StringVar(&file, "devices-file", "", "devices CSV to simulate, as written by 'gridsim city' (default empty: generate a city)")
	fl.Int64Var(&seed, "seed", 1, "seed of the generated city and of the value models")
	fl.StringVar(&f.Broker, "broker", simulators.DefaultBroker, "broker URL")
	fl.Float64Var(&f.Rate, "rate", 100, "total messages per second across the fleet (0: as fast as possible)")
	fl.Uint8Var(&qos, "qos", 0, "publish QoS, 0 or 1 (default 0); with 1 a message counts as sent when its PUBACK arrives")
	fl.IntVar(&f.Messages, "messages", 0, "total messages to send (default 0: until --duration or a signal)")
	fl.DurationVar(&f.Duration, "duration", 0, "how long to publish (default 0: until --messages or a signal)")
	fl.IntVar(&f.ConnectConcurrency, "connect-concurrency", simulators.DefaultConnectConcurrency, "connection attempts in progress at once")
	fl.DurationVar(&f.ConnectTimeout, "connect-timeout", simulators.DefaultConnectTimeout, "time allowed for one connection attempt")
	fl.IntVar(&f.InFlight, "inflight", simulators.DefaultInFlight, "publishes per device not yet completed (QoS 1: unacknowledged)")
	fl.DurationVar(&f.AckTimeout, "ack-timeout", simulators.DefaultAckTimeout, "time allowed for a publish to complete before it counts as failed")
	fl.BoolVar(&asJSON, "json", false, "print the statistics as JSON on standard output (default false)")
	fl.StringVar(&acks, "acks", "", "write every message counted as sent (QoS 1: acknowledged) to this file, for 'gridsim check' (default empty: none)")
	fl.BoolVar(&quiet, "quiet", false, "no live progress and summary on standard error (default false)")
	return cmd
}

// fleetDevices returns the first n devices of file, or a generated city of
// n devices when file is empty.
func fleetDevices(file string, n int, seed int64) ([]devices.Device, error) {
	if file == "" {
		if n <= 0 {
			n = defaultFleetDevices
		}
		return simulators.City{Devices: n, Seed: seed}.Generate()
	}
	fh, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("read devices: %w", err)
	}
	defer fh.Close()
	devs, err := devices.ReadCSV(fh)
	if err != nil {
		return nil, fmt.Errorf("read devices from %s: %w", file, err)
	}
	if n > len(devs) {
		return nil, fmt.Errorf("--devices %d: %s holds only %d devices", n, file, len(devs))
	}
	if n > 0 {
		devs = devs[:n]
	}
	return devs, nil
}
