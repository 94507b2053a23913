package alerts_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gridwatch/gridwatch/alerts"
	"github.com/gridwatch/gridwatch/devices"
)

// writerFunc is an io.Writer of a function.
type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestExportWritesOutsideReadSlots checks Export from the side of a slow
// export client: it writes every alert All reads, in the same order, and
// holds no read slot while its writer waits, so with one slot the other
// staff's lists still answer; a bad filter is refused before anything is
// written.
func TestExportWritesOutsideReadSlots(t *testing.T) {
	c := &clock{t: t0}
	var devs []devices.Device
	const n = 2500 // more than one export batch
	for i := range n {
		devs = append(devs, devices.Device{ID: fmt.Sprintf("w-%04d", i), Type: "water_level", Grid: "G1"})
	}
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{Rules: mustRules(t, `
rules:
  - name: flood
    metric: level_cm
    condition: value > 30
    severity: major
    no_group: true
`), Lookup: reg.Lookup, Now: c.Now, ReadSlots: 1, Tick: time.Hour, FlushEvery: time.Hour}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, d := range devs {
		e.Observe(alerts.Observation{Device: d.ID, Metric: "level_cm", Value: 50, TS: c.Now().UnixMilli()})
	}
	all, err := e.All(alerts.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for a := range all {
		want = append(want, a.ID)
	}
	var got strings.Builder
	writes := 0
	slow := writerFunc(func(p []byte) (int, error) {
		writes++
		// The client is slow: while its write waits, another member of
		// staff lists alerts.
		listed := make(chan error, 1)
		go func() {
			_, err := e.List(alerts.Filter{Limit: 10})
			listed <- err
		}()
		select {
		case err := <-listed:
			if err != nil {
				return 0, err
			}
		case <-time.After(time.Minute):
			return 0, errors.New("a list waited for an export whose client was slow")
		}
		return got.Write(p)
	})
	encode := alerts.NewEncoding(func(b []byte, a *alerts.Alert) []byte { return append(append(b, a.ID...), '\n') })
	if err := e.Export(alerts.Filter{}, slow, encode); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Fields(got.String()); !slices.Equal(lines, want) || len(lines) != n {
		t.Errorf("export wrote %d alerts, All read %d (want %d, in the same order)", len(lines), len(want), n)
	}
	if writes < 2 {
		t.Errorf("%d alerts written in %d writes, want one per batch", n, writes)
	}
	wrote := false
	err = e.Export(alerts.Filter{Sort: "loudest"}, writerFunc(func(p []byte) (int, error) { wrote = true; return len(p), nil }), encode)
	if !errors.Is(err, alerts.ErrBadFilter) || wrote {
		t.Errorf("bad sort: err %v, wrote %v; want ErrBadFilter before any write", err, wrote)
	}
}

// TestExportEncodesOnlyWhatChanged checks the rows an export keeps with
// the alerts' views: a second export encodes none of the alerts again but
// the one that changed, and writes its new row.
func TestExportEncodesOnlyWhatChanged(t *testing.T) {
	c := &clock{t: t0}
	devs := []devices.Device{{ID: "w-1", Type: "water_level", Grid: "G1"}, {ID: "w-2", Type: "water_level", Grid: "G1"}}
	reg := devices.NewRegistry(devs)
	e := &alerts.Engine{Rules: mustRules(t, `
rules:
  - name: flood
    metric: level_cm
    condition: value > 30
    severity: major
    no_group: true
`), Lookup: reg.Lookup, Now: c.Now, Tick: time.Hour, FlushEvery: time.Hour}
	if err := e.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	for _, d := range devs { // w-1 fires first
		e.Observe(alerts.Observation{Device: d.ID, Metric: "level_cm", Value: 50, TS: c.Now().UnixMilli()})
		c.t = c.t.Add(time.Second)
	}
	encoded := 0
	enc := alerts.NewEncoding(func(b []byte, a *alerts.Alert) []byte {
		encoded++
		return fmt.Appendf(b, "%s %g\n", a.Device, a.Value)
	})
	export := func() string {
		var out strings.Builder
		if err := e.Export(alerts.Filter{Sort: "fired"}, writerFunc(out.Write), enc); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	if got, want := export(), "w-1 50\nw-2 50\n"; got != want || encoded != 2 {
		t.Fatalf("first export = %q after %d encodings, want %q after 2", got, encoded, want)
	}
	e.Observe(alerts.Observation{Device: "w-2", Metric: "level_cm", Value: 60, TS: c.Now().UnixMilli()})
	if got, want := export(), "w-1 50\nw-2 60\n"; got != want || encoded != 3 {
		t.Fatalf("export after w-2 changed = %q after %d encodings in all, want %q after 3", got, encoded, want)
	}
}
