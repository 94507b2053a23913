package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
	"github.com/gridwatch/gridwatch/ingest/gb28181"
)

// TestGB28181Devices lists the registered GB/T 28181 devices within the
// token's scope, with their DeviceInfo and catalog; the registrar off, 503.
func TestGB28181Devices(t *testing.T) {
	reg := devices.NewRegistry([]devices.Device{
		{ID: "34020000001320000001", Type: "camera", Grid: "D01-S01-G01", SIPPassword: "gwsec1:k:sealed"},
		{ID: "34020000001320000002", Type: "camera", Grid: "D02-S01-G01"},
	})
	states := []gb28181.DeviceState{
		{ID: "34020000001320000001", Online: true, Transport: "udp", Info: gb28181.DeviceInfo{Manufacturer: "Sim", Model: "IPC-1"},
			Channels: []gb28181.ChannelState{{ID: "34020000001310000001", Online: true}}},
		{ID: "34020000001320000002", Transport: "tcp"},
	}
	s := &Server{Lookup: reg.Lookup, AdminToken: "tok-bootstrap",
		Tokens:  []Token{{Name: "d01", Role: RoleViewer, Grid: "D01", Hash: HashToken("tok-d01")}},
		GB28181: func() []gb28181.DeviceState { return states }}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	get := func(token string) (int, string) {
		code, _, raw := do(t, srv, "/api/v1/gb28181/devices", token)
		return code, raw
	}
	code, body := get("tok-bootstrap")
	for _, want := range []string{`"id":"34020000001320000001","online":true,"transport":"udp"`, `"manufacturer":"Sim","model":"IPC-1"`,
		`"channels":[{"id":"34020000001310000001","online":true}]`, `"grid":"D01-S01-G01"`, `"id":"34020000001320000002"`} {
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("admin: %d %s, want it to hold %s", code, body, want)
		}
	}
	if strings.Contains(body, "gwsec1") {
		t.Errorf("the sealed SIP password is in the answer: %s", body)
	}
	if code, body := get("tok-d01"); code != http.StatusOK || strings.Contains(body, "34020000001320000002") || !strings.Contains(body, "34020000001320000001") {
		t.Errorf("D01 viewer: %d %s, want its district's device only", code, body)
	}
	s.GB28181 = nil
	if code, body := get("tok-bootstrap"); code != http.StatusServiceUnavailable || !strings.Contains(body, "gb28181.udp_listen") {
		t.Errorf("registrar off: %d %s, want 503 naming the keys", code, body)
	}
}
