package server

import (
	"context"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
	"github.com/gridwatch/gridwatch/simulators"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// TestGB28181CameraEndToEnd runs the full server with the registrar. A
// camera known only by its 20-digit id (no RTSP URL) registers over SIP
// with its password from the devices file, and its catalogued channel with
// it: both show their status in /api/v1/cameras (kind gb28181) and the
// device API; its alarm raises a camera_alarm alert; once it falls silent
// it is offline after three missed keepalives. The SIP password is sealed
// in the registry, never stored plain.
func TestGB28181CameraEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: needs ClickHouse")
	}
	addr, database := storagetest.Database(t)
	const password = "sip-pass-Xq81-unique"
	realm := gb28181.DefaultRealm
	ipc, channel := simulators.GBDeviceID(realm, 1), simulators.GBDeviceID(realm, 2)
	devs := []devices.Device{
		{ID: ipc, Type: "camera", Grid: "D01-S01-G01", Name: "东门", SIPPassword: password},
		{ID: channel, Type: "camera", Grid: "D01-S01-G01"},
	}
	srv := startServer(t, addr, database, devs, func(c *Config) {
		c.GB28181.UDPListen, c.GB28181.TCPListen = "127.0.0.1:0", "127.0.0.1:0"
		c.GB28181.KeepaliveInterval = 300 * time.Millisecond
	})
	if n := count(t, srv, "SELECT count() FROM {db}.registry WHERE position(doc, ?) > 0", password); n != 0 {
		t.Fatalf("%d registry rows hold the SIP password in plain text", n)
	}
	if n := count(t, srv, "SELECT count() FROM {db}.registry WHERE key = ? AND position(doc, '\"sip_password\":\"gwsec1:') > 0", ipc); n != 1 {
		t.Fatalf("the SIP password is not sealed in the registry (%d rows)", n)
	}

	dev := &simulators.GBDevice{ID: ipc, Password: password, Server: srv.GB28181UDPAddr(), Transport: "udp",
		KeepaliveInterval: 300 * time.Millisecond, Channels: []string{channel}, Manufacturer: "Sim", Model: "IPC"}
	if err := dev.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer dev.Close()

	health := func(id string) (status, kind, detail string) {
		var list struct {
			Cameras []struct {
				ID     string `json:"id"`
				Health *struct {
					Kind, Status, Detail string
				} `json:"health"`
			} `json:"cameras"`
		}
		getJSON(t, srv, "/api/v1/cameras", &list)
		for _, c := range list.Cameras {
			if c.ID == id && c.Health != nil {
				return c.Health.Status, c.Health.Kind, c.Health.Detail
			}
		}
		return "", "", ""
	}
	online := func(id string) bool {
		var d struct {
			Status struct{ Online bool } `json:"status"`
		}
		getJSON(t, srv, "/api/v1/devices/"+id, &d)
		return d.Status.Online
	}
	waitFor(t, 60*time.Second, func() bool {
		st, kind, _ := health(ipc)
		return st == "ok" && kind == "gb28181" && online(ipc)
	})
	waitFor(t, 60*time.Second, func() bool {
		st, _, detail := health(channel)
		return st == "ok" && detail == gb28181.ReasonCatalog && online(channel)
	})

	waitFor(t, 2*time.Minute, func() bool {
		var list struct {
			Devices []struct {
				ID, Grid string
				Online   bool
				Info     struct{ Manufacturer, Model string }
				Channels []struct {
					ID     string
					Online bool
				}
			} `json:"devices"`
		}
		getJSON(t, srv, "/api/v1/gb28181/devices", &list)
		if len(list.Devices) != 1 {
			return false
		}
		d := list.Devices[0]
		return d.ID == ipc && d.Grid == "D01-S01-G01" && d.Online && d.Info.Manufacturer == "Sim" &&
			len(d.Channels) == 1 && d.Channels[0].ID == channel && d.Channels[0].Online
	})

	if err := dev.Alarm(context.Background(), 1, 5, 6, "区域入侵"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 2*time.Minute, func() bool {
		var page struct {
			Alerts []struct{ Rule, Device string } `json:"alerts"`
		}
		getJSON(t, srv, "/api/v1/alerts?rule=camera_alarm", &page)
		return len(page.Alerts) == 1 && page.Alerts[0].Device == ipc
	})

	dev.Silence()
	waitFor(t, 60*time.Second, func() bool {
		st, _, detail := health(ipc)
		return st == "unreachable" && detail == gb28181.ReasonKeepaliveTimeout && !online(ipc)
	})
	waitFor(t, 60*time.Second, func() bool {
		st, _, detail := health(channel)
		return st == "unreachable" && detail == gb28181.ReasonParentOffline
	})
	waitMetric(t, srv, `gridwatch_gb28181_transitions_total{reason="keepalive_timeout",to="offline"}`)
}
