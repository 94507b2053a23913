package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/api"
	"github.com/gridwatch/gridwatch/cases"
	"github.com/gridwatch/gridwatch/cases/casestest"
)

// casesAPI serves the API with a case loop in memory and an operator
// token; it returns the server's URL.
func casesAPI(t *testing.T) string {
	t.Helper()
	cats := cases.DefaultCategories()
	svc := &cases.Service{Store: &casestest.Store{}, Timing: cases.Schedule{Calendar: cases.DefaultCalendar(), Categories: cats},
		Category: func(code string) (string, bool) { c, ok := cats.Get(code); return c.Route, ok },
		Route:    func(string, string) string { return "U-1" }, Logger: slog.New(slog.DiscardHandler)}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Close() })
	s := &api.Server{Cases: svc, Tokens: []api.Token{{Name: "ops", Role: api.RoleOperator, Hash: api.HashToken("tok-ops")}}}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCasesCommand imports hotline tickets (a bad row reported by line,
// a rerun opening nothing twice), then lists, registers and shows a case.
func TestCasesCommand(t *testing.T) {
	url := casesAPI(t)
	file := filepath.Join(t.TempDir(), "tickets.csv")
	csv := "origin,description,category,address,grid,lat,lon,reporter\n" +
		"T-1,streetlight out,C0105,Hubin Rd 3,D01-S01-G01,,,caller 1\n" +
		"T-2,,C0105,Hubin Rd 4,D01-S01-G01,,,caller 2\n" +
		"T-3,manhole cover missing,C0101,,D01-S01-G02,34.77,north,caller 3\n" +
		"T-4,manhole cover missing,C0101,,D01-S01-G02,34.77,111.2,caller 4\n"
	if err := os.WriteFile(file, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	conn := []string{"--server", url, "--token", "tok-ops"}
	out, err := run(t, append([]string{"cases", "import", file}, conn...)...)
	if err == nil || !strings.Contains(out, "line 3 (T-2): origin and description are required") || !strings.Contains(out, "line 4 (T-3)") ||
		!strings.Contains(out, "2 cases opened, 0 tickets already held, 2 rejected") {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, _ = run(t, append([]string{"cases", "import", file}, conn...)...)
	if !strings.Contains(out, "0 cases opened, 2 tickets already held, 2 rejected") {
		t.Fatalf("import again:\n%s", out)
	}
	out, err = run(t, append([]string{"cases", "list", "--source", "hotline", "--json"}, conn...)...)
	var page cases.Page
	if err != nil || decodeJSON(out, &page) != nil || len(page.Cases) != 2 {
		t.Fatalf("list: %v\n%s", err, out)
	}
	id := page.Cases[0].ID
	if out, err = run(t, append([]string{"cases", "act", id, "register"}, conn...)...); err != nil || !strings.Contains(out, id+": registered, version 2") {
		t.Fatalf("act register: %v\n%s", err, out)
	}
	if out, err = run(t, append([]string{"cases", "act", id, "sign"}, conn...)...); err == nil || !strings.Contains(out+err.Error(), "403") {
		t.Fatalf("sign by an operator: %v\n%s", err, out)
	}
	if out, err = run(t, append([]string{"cases", "act", id, "teleport"}, conn...)...); err == nil {
		t.Fatalf("an unknown action: %s", out)
	}
	if out, err = run(t, append([]string{"cases", "show", id}, conn...)...); err != nil || !strings.Contains(out, "register") || !strings.Contains(out, "status:") {
		t.Fatalf("show: %v\n%s", err, out)
	}
}

// decodeJSON decodes the CLI's JSON output.
func decodeJSON(out string, v any) error { return json.Unmarshal([]byte(out), v) }
