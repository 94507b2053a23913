package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/simulators"
)

func loadCmd() *cobra.Command {
	var (
		l      simulators.Load
		n      int
		file   string
		qos    uint8
		seed   int64
		asJSON bool
		quiet  bool
		local  []string
	)
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Drive a broker at full speed with the devices' telemetry (benchmarks)",
		Long: `Drive a broker at full speed for benchmarks: one MQTT 3.1.1 connection per
device, logged in as the device (username and client id the device id,
password its secret), publishing its model's telemetry on
devices/{id}/telemetry. Unlike 'gridsim fleet' it writes packets on raw TCP
connections with buffered writes, so it is not the bottleneck: it drives a
bare broker well past what gridwatch stores.

All devices connect first (the connect rate is reported), then publish
--messages in all as fast as the broker reads. At QoS 0 the last message of
each connection is sent at QoS 1 and its PUBACK awaited, a fence behind which
the broker has received every earlier message. --hold keeps the connections
open afterwards as idle devices (the connection-scale benchmark). With
--local-addr the connections are spread over those source addresses
(127.0.0.2, 127.0.0.3, …: past the ~64k connections one address can open to
one port).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			devs, err := fleetDevices(file, n, seed)
			if err != nil {
				return err
			}
			for _, s := range local {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return fmt.Errorf("--local-addr: %w", err)
				}
				l.LocalAddrs = append(l.LocalAddrs, a)
			}
			l.Devices, l.QoS, l.Models.Seed = devs, qos, seed
			if !quiet {
				l.Progress = os.Stderr
			}
			s, err := l.Run(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				out := struct {
					simulators.LoadStats
					ElapsedS     float64 `json:"elapsed_s"`
					MessagesPerS float64 `json:"messages_per_s"`
					ReadingsPerS float64 `json:"readings_per_s"`
					ConnectsPerS float64 `json:"connects_per_s"`
				}{s, s.Elapsed.Seconds(), s.MessagesPerSecond(), s.ReadingsPerSecond(), s.ConnectsPerSecond()}
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(out); err != nil {
					return fmt.Errorf("write stats: %w", err)
				}
			}
			if s.ConnectErrors > 0 || s.Errors > 0 {
				return fmt.Errorf("%d of %d devices could not connect, %d connections failed (first: %s)", s.ConnectErrors, s.Devices, s.Errors, s.FirstError)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.IntVar(&n, "devices", 0, fmt.Sprintf("number of devices (default 0: all of --devices-file, or %d generated)", defaultFleetDevices))
	fl.StringVar(&file, "devices-file", "", "devices CSV, as written by 'gridsim city' (default empty: generate a city)")
	fl.Int64Var(&seed, "seed", 1, "seed of the generated city and of the value models")
	fl.StringVar(&l.Addr, "addr", "127.0.0.1:1883", "broker host:port")
	fl.Uint8Var(&qos, "qos", 0, "publish QoS, 0 or 1 (default 0; the last message of each device is a QoS 1 fence)")
	fl.IntVar(&l.Messages, "messages", 100000, "total messages, spread evenly over the devices")
	fl.IntVar(&l.InFlight, "inflight", 64, "QoS 1 messages per connection not yet acknowledged")
	fl.IntVar(&l.ConnectConcurrency, "connect-concurrency", simulators.DefaultConnectConcurrency, "connection attempts in progress at once")
	fl.DurationVar(&l.ConnectTimeout, "connect-timeout", simulators.DefaultConnectTimeout, "time allowed for one connection attempt")
	fl.DurationVar(&l.AckTimeout, "ack-timeout", simulators.DefaultLoadAckTimeout, "time allowed for a PUBACK (the fence comes after every message still in the socket buffers)")
	fl.DurationVar(&l.Hold, "hold", 0, "keep the connections open this long after publishing (default 0)")
	fl.StringSliceVar(&local, "local-addr", nil, "source addresses to spread the connections over (default: the system's choice)")
	fl.BoolVar(&asJSON, "json", false, "print the statistics as JSON on standard output (default false)")
	fl.BoolVar(&quiet, "quiet", false, "no live progress and summary on standard error (default false)")
	return cmd
}
