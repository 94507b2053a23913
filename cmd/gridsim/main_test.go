package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

func TestCityFileFeedsFleet(t *testing.T) {
	file := filepath.Join(t.TempDir(), "devices.csv")
	root := rootCmd()
	root.SetArgs([]string{"city", "--devices", "40", "--grids", "4", "-o", file})
	if err := root.Execute(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("devices file mode %v, want 0600: it holds secrets", st.Mode().Perm())
	}
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	all, err := devices.ReadCSV(fh)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		n, want int
		fails   bool
	}{{0, 40, false}, {5, 5, false}, {40, 40, false}, {41, 0, true}} {
		got, err := fleetDevices(file, c.n, 1)
		if c.fails {
			if err == nil {
				t.Errorf("--devices %d of 40: want an error", c.n)
			}
			continue
		}
		if err != nil || !slices.Equal(got, all[:c.want]) {
			t.Errorf("--devices %d: got %d devices, %v; want the first %d of the file", c.n, len(got), err, c.want)
		}
	}
	if got, err := fleetDevices("", 0, 1); err != nil || len(got) != defaultFleetDevices {
		t.Errorf("no file: got %d devices, %v; want a generated city of %d", len(got), err, defaultFleetDevices)
	}
}
