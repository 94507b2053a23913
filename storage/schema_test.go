package storage_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gridwatch/gridwatch/storage"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestRenderSchemaGolden pins the DDL rendered for Debian's 18.16 and for a
// current server; run with -update after a deliberate change.
func TestRenderSchemaGolden(t *testing.T) {
	for _, c := range []struct{ version, cluster, file string }{
		{"18.16.1", "", "schema-18.16.sql"},
		{"24.8.4.13", "", "schema-24.8.sql"},
		{"18.16.1", "gridwatch", "schema-18.16-cluster.sql"},
		{"24.8.4.13", "gridwatch", "schema-24.8-cluster.sql"},
	} {
		t.Run(c.file, func(t *testing.T) {
			caps, err := storage.CapabilitiesFor(c.version)
			if err != nil {
				t.Fatal(err)
			}
			s, err := storage.RenderSchema(caps, storage.SchemaOptions{RetentionDays: 90, Cluster: c.cluster})
			if err != nil {
				t.Fatal(err)
			}
			got := s.String()
			path := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("schema for %s differs from %s (run go test -update if intended):\n%s", c.version, path, got)
			}
		})
	}
}

func TestRenderSchemaRetention(t *testing.T) {
	caps, err := storage.CapabilitiesFor("24.8.4.13")
	if err != nil {
		t.Fatal(err)
	}
	forever, err := storage.RenderSchema(caps, storage.SchemaOptions{Database: "city"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(forever.String(), "TTL") {
		t.Errorf("retention 0 must render no TTL:\n%s", forever)
	}
	if !strings.Contains(forever.String(), "`city`.`telemetry`") {
		t.Errorf("database option not used:\n%s", forever)
	}
	if forever.Latest() != forever.Migrations[len(forever.Migrations)-1].Version || forever.Latest() < 3 {
		t.Errorf("Latest() = %d for %d migrations", forever.Latest(), len(forever.Migrations))
	}
}

func TestRenderSchemaRejects(t *testing.T) {
	caps, err := storage.CapabilitiesFor("18.16.1")
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range []storage.SchemaOptions{
		{Database: "grid-watch"},
		{Database: "x`; DROP DATABASE y"},
		{RetentionDays: -1},
		{Cluster: "a b"},
	} {
		if _, err := storage.RenderSchema(caps, o); err == nil {
			t.Errorf("RenderSchema(%+v) succeeded, want an error", o)
		}
	}
}
