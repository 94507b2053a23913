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
	e := &alerts.Engine{Rules: rules, Lookup: reg.Lookup, StormMin: -1}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	e.Observe(alerts.Observation{Device: "w1", Metric: "level_cm", Value: 42, TS: time.Now().UnixMilli()})
	page, err := e.List(alerts.Filter{})
	if err != nil || len(page.Alerts) != 1 {
		t.Fatalf("alerts: %+v %v", page, err)
	}
	s := &api.Server{Lookup: reg.Lookup, Alerts: e, Tokens: []api.Token{
		{Name: "ops", Role: api.RoleOperator, Hash: api.HashToken("tok-ops")},
		{Name: "watcher", Role: api.RoleViewer, Hash: api.HashToken("tok-view")},
	}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL, page.Alerts[0].ID
}

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

// TestAlertsCLI lists and shows an alert, as a table and as JSON, and
// checks that errors carry the API's message and status and that the
// work-order actions are gone from the CLI as from the API.
func TestAlertsCLI(t *testing.T) {
	url, id := alertsAPI(t)
	conn := []string{"--server", url, "--token", "tok-view"}

	out, err := run(t, append([]string{"alerts", "list", "--severity", "major", "--condition", "firing"}, conn...)...)
	if err != nil || !strings.Contains(out, "ID ") || !strings.Contains(out, id) || !strings.Contains(out, "firing") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"alerts", "show", id}, conn...)...)
	if err != nil || !strings.Contains(out, "level_cm = 42") || !strings.Contains(out, "fire") {
		t.Errorf("show: %v\n%s", err, out)
	}
	out, err = run(t, append([]string{"alerts", "show", id, "--json"}, conn...)...)
	var a struct {
		Condition string            `json:"condition"`
		Timeline  []json.RawMessage `json:"timeline"`
	}
	if err != nil || json.Unmarshal([]byte(out), &a) != nil || a.Condition != "firing" || len(a.Timeline) != 1 {
		t.Errorf("show --json: %v\n%s", err, out)
	}

	// Errors carry the API's message and status.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"alerts", "list", "--server", url, "--token", "nope"}, "401 unauthorized"},
		{[]string{"alerts", "show", "missing", "--server", url, "--token", "tok-view"}, "404 not_found"},
		{[]string{"alerts", "list", "--sort", "colour", "--server", url, "--token", "tok-view"}, "400 bad_request"},
		// The work orders are gone: their commands and filters too.
		{[]string{"alerts", "ack", id, "--server", url, "--token", "tok-ops"}, "gridwatch alerts ack is gone"},
		{[]string{"alerts", "acknowledge", id, "--server", url, "--token", "tok-ops"}, `unknown command "acknowledge"`},
		{[]string{"alerts", "list", "--status", "new", "--server", url, "--token", "tok-ops"}, "unknown flag: --status"},
	} {
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
