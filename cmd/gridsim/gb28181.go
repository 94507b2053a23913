package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/simulators"
)

// gb28181Cmd runs simulated GB/T 28181 devices against a registrar until
// interrupted, or writes their devices CSV.
func gb28181Cmd(logger *slog.Logger) *cobra.Command {
	var (
		count, silence        int
		server, transport     string
		realm, serverID, grid string
		password, csvPath     string
		codec                 string
		faults                []string
		keepalive, silenceAt  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "gb28181",
		Short: "Run simulated GB/T 28181 cameras that register over SIP, keep alive and fall silent",
		Long: `Run --count simulated GB/T 28181 network cameras (ids <realm>132NNNNNNN) against
the registrar at --server: each registers over SIP (--transport udp or tcp)
with digest authentication and --password, answers Catalog and DeviceInfo
queries and sends a Keepalive every --keepalive. --silence N makes the first
N devices fall silent (no keepalives, no answers) after --silence-after, as a
camera whose power or link is cut; the registrar reports them offline after
its keepalive_misses. Invited to stream (INVITE, over --transport udp), a
device sends the camera farm's clip in --codec as PS over RTP; --faults gives
the first devices, one each, a picture fault (black, blurred, frozen, tinted,
noisy, covered, dark, bright, stall, low_fps; offline never answers) or a fault
of its answer or stream (bad_sdp, no_rtp, wrong_ssrc, hang_up, drops_stream). --csv writes the devices as a devices CSV (type camera,
sip_password) for 'gridwatch devices import' or devices.file, and exits.
It runs until SIGINT/SIGTERM.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if count <= 0 {
				return fmt.Errorf("--count must be > 0")
			}
			if csvPath != "" {
				devs := make([]devices.Device, count)
				for i := range devs {
					id := simulators.GBDeviceID(realm, i+1)
					devs[i] = devices.Device{ID: id, Type: "camera", Grid: grid, Name: "Simulated GB/T 28181 camera " + id, SIPPassword: password}
				}
				f, err := os.Create(csvPath)
				if err != nil {
					return fmt.Errorf("--csv: %w", err)
				}
				if err := devices.WriteCSV(f, devs); err != nil {
					f.Close()
					return fmt.Errorf("--csv %s: %w", csvPath, err)
				}
				return f.Close()
			}
			fleet := &simulators.GBFleet{}
			for i := range count {
				d := &simulators.GBDevice{
					ID: simulators.GBDeviceID(realm, i+1), Password: password, Server: server, ServerID: serverID, Realm: realm,
					Transport: transport, KeepaliveInterval: keepalive, Manufacturer: "gridsim", Model: "IPC-SIM", Logger: logger,
					Codec: codec,
				}
				if i < len(faults) {
					d.Fault = simulators.CameraFault(faults[i])
				}
				fleet.Devices = append(fleet.Devices, d)
			}
			start := time.Now()
			err := fleet.Start(cmd.Context())
			defer fleet.Close()
			if err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "%d devices registered at %s over %s in %s\n", count, server, transport, time.Since(start).Round(time.Millisecond))
			if silence > 0 {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(silenceAt):
				}
				for _, d := range fleet.Devices[:min(silence, count)] {
					d.Silence()
				}
				fmt.Fprintf(os.Stderr, "%d devices fell silent\n", min(silence, count))
			}
			<-cmd.Context().Done()
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&count, "count", 10, "number of devices")
	f.StringVar(&server, "server", "127.0.0.1:5060", "registrar address host:port")
	f.StringVar(&transport, "transport", "udp", "SIP transport: udp or tcp")
	f.StringVar(&realm, "realm", gb28181.DefaultRealm, "SIP domain (the registrar's gb28181.realm); also the devices' id prefix")
	f.StringVar(&serverID, "server-id", gb28181.DefaultID, "the registrar's 20-digit id (gb28181.id)")
	f.StringVar(&password, "password", "gb28181-sim-password", "every device's SIP password (a simulation: one for all)")
	f.DurationVar(&keepalive, "keepalive", gb28181.DefaultKeepaliveInterval, "keepalive interval (the registrar's gb28181.keepalive_interval)")
	f.IntVar(&silence, "silence", 0, "devices that fall silent after --silence-after")
	f.DurationVar(&silenceAt, "silence-after", time.Minute, "when the --silence devices fall silent")
	f.StringVar(&csvPath, "csv", "", "write the devices as a devices CSV to this file and exit")
	f.StringVar(&grid, "grid", "G0001", "grid code of the devices in the CSV")
	f.StringVar(&codec, "codec", simulators.CodecH264, "video codec of invited streams: H264 or H265")
	f.StringSliceVar(&faults, "faults", nil, "faults of the first devices' invited streams (picture, answer or stream), one each, in order")
	return cmd
}
