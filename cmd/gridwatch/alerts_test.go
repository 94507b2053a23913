package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/devices"
)

// alertsAPI serves the API with a real engine holding one firing alert and
// a token per role; it returns the server's URL and the alert's id.
func alertsAPI(t *testing.T) (string, string) {
	t.Helper()
	rules, err := alerts.ParseRules([]byte("rules:\n  - {name: flood, metric: level_cm, condition: value > 30, severity: major}\n"))
	if err != nil {
		t.Fatal(err)
	}
	reg := devices.NewRegistry([]devices.Device{{ID: "w1", Type: "water_level", Grid: "D01-S01-G01"}})
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, StormMin: -1, UnitFor: func(string, string) string { return "water-bureau" }}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	e.Observe(alerts.Observation{Device: "w1", Metric: "level_cm", Value: 42, TS: time.Now().UnixMilli()})
	page, err := e.List(alerts.Filter{})
	if err != nil || len(page.Alerts) != 1 {
		t.Fatalf("alerts: %+v %v", page, err)
	}
	s := &api.Server{Lookup: reg.Lookup, Alerts: e, Registry: unitsOnly{{Code: "district-3-water"}}, Tokens: []api.Token{
		{Name: "ops", Role: api.RoleOperator, Hash: api.HashToken("tok-ops")},
		{Name: "watcher", Role: api.RoleViewer, Hash: api.HashToken("tok-view")},
	}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, page.Alerts[0].ID
}

// unitsOnly is an api.Registry holding units and nothing else.
type unitsOnly []devices.Unit

func (u unitsOnly) Units() []devices.Unit               { return u }
func (unitsOnly) Grids() []devices.Grid                 { return nil }
func (unitsOnly) DeviceStatus(string) (bool, time.Time) { return false, time.Time{} }

// run runs the CLI with args and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestAlertsCLI(t *testing.T) {
	url, id := alertsAPI(t)
	conn := []string{"--server", url, "--token", "tok-ops"}

	out, err := run(t, append([]string{"alerts", "list", "--severity", "major"}, conn...)...)
	if err != nil || !strings.Contains(out, "ID ") || !strings.Contains(out, id) || !strings.Contains(out, "water-bureau") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	steps := []struct {
		args []string
		want string
	}{
		{[]string{"ack", id, "--note", "on it"}, "acknowledged"},
		{[]string{"dispatch", id, "--unit", "district-3-water"}, "dispatched"},
		{[]string{"resolve", id}, "resolved"},
		{[]string{"close", id}, "closed"},
	}
	for _, s := range steps {
		out, err := run(t, append(append([]string{"alerts"}, s.args...), conn...)...)
		if err != nil || !strings.Contains(out, id+": "+s.want) {
			t.Errorf("alerts %v: %v %q", s.args, err, out)
		}
	}
	out, err = run(t, append([]string{"alerts", "show", id}, conn...)...)
	if err != nil || !strings.Contains(out, "district-3-water") || !strings.Contains(out, "on it") || !strings.Contains(out, "ops") {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"alerts", "show", id, "--json"}, conn...)...)
	var a struct {
		Status   string            `json:"status"`
		Timeline []json.RawMessage `json:"timeline"`
	}
	if err != nil || json.Unmarshal([]byte(out), &a) != nil || a.Status != "closed" || len(a.Timeline) < 5 {
		t.Errorf("show --json: %v\n%s", err, out)
	}

	// Errors carry the API's message and status.
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"alerts", "ack", id, "--server", url, "--token", "tok-view"}, "needs the operator role (403 forbidden)"},
		{[]string{"alerts", "ack", id, "--server", url, "--token", "nope"}, "401 unauthorized"},
		{[]string{"alerts", "show", "missing", "--server", url, "--token", "tok-view"}, "404 not_found"},
		{[]string{"alerts", "comment", id, "--server", url, "--token", "tok-ops"}, "422 invalid_action"},
		{[]string{"alerts", "dispatch", id, "--unit", "district-3-watr", "--server", url, "--token", "tok-ops"}, `unit "district-3-watr" is not in the units table`},
		{[]string{"alerts", "ack", id, "--version", "1", "--server", url, "--token", "tok-ops"}, "409 conflict"},
	}
	for _, tc := range cases {
		if _, err := run(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}

	// The token may come from the environment.
	t.Setenv("GRIDWATCH_TOKEN", "tok-view")
	if out, err := run(t, "alerts", "list", "--server", url, "--json"); err != nil || !strings.Contains(out, `"alerts"`) {
		t.Errorf("list with GRIDWATCH_TOKEN: %v %s", err, out)
	}
}
