package server

import (
	"context"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// BenchmarkDurableAck measures the cost of ingest.durable_ack: the same QoS 1
// fleet (200 devices, each with up to 16 publishes in flight, as fast as the
// server acknowledges) runs for 20 seconds (5 under -short) against a server
// in the default mode and then against one in durable mode, and the
// benchmark reports both rates and their ratio. Run it with
//
//	go test ./internal/server -run '^$' -bench DurableAck -benchtime 1x
func BenchmarkDurableAck(b *testing.B) {
	addr := storagetest.Addr(b)
	load := 20 * time.Second
	if testing.Short() {
		load = 5 * time.Second
	}
	devs := e2eDevices(b, 200)
	modes := []struct {
		name    string
		durable bool
		total   simulators.Stats // messages and elapsed time over b.N runs
	}{{name: "default"}, {name: "durable", durable: true}}
	for b.Loop() {
		for i := range modes {
			m := &modes[i]
			// Each mode gets a database of its own, so that neither
			// inserts into a table the other filled.
			_, database := storagetest.Database(b)
			srv := startServer(b, addr, database, devs, func(c *Config) { c.Ingest.DurableAck = m.durable })
			fleet := &simulators.Fleet{Broker: mqttURL(srv), Devices: devs, QoS: 1, Duration: load}
			stats, err := fleet.Run(context.Background())
			if err != nil {
				b.Fatalf("%s: fleet: %v", m.name, err)
			}
			if err := srv.Close(); err != nil {
				b.Fatalf("%s: close: %v", m.name, err)
			}
			if stats.Errors != 0 || stats.ConnectionsLost != 0 {
				b.Fatalf("%s: %s; want no errors or lost connections", m.name, stats)
			}
			b.Logf("%s: %s", m.name, stats)
			m.total.Messages += stats.Messages
			m.total.Elapsed += stats.Elapsed
		}
	}
	def, dur := modes[0].total.MessagesPerSecond(), modes[1].total.MessagesPerSecond()
	b.ReportMetric(def, "default_msgs/s")
	b.ReportMetric(dur, "durable_msgs/s")
	b.ReportMetric(dur/def, "durable/default")
}
