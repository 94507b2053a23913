package devices

import (
	"bytes"
	"strings"
	"testing"
)

// csvCases are valid and invalid rows; they also seed FuzzParseCSV.
var csvCases = []struct{ name, in, want string }{
	{"ok", "id,type,grid,lat,lon\na-1,noise,G1,30.1,120.2\n", ""},
	{"unknown type", "id,type,grid\na-1,toaster,G1\n", `line 2: type "toaster" is not in the device catalog`},
	{"topic char in id", "id,type,grid\na/1,noise,G1\n", "line 2: id \"a/1\" may hold only"},
	{"lat out of range", "id,type,grid,lat,lon\na-1,noise,G1,91,0\n", "line 2: lat \"91\" is not a number within ±90"},
	{"bad date", "id,type,grid,install_date\na-1,noise,G1,2024-13-01\n", "install_date"},
	{"no grid no coords", "id,type,grid\na-1,noise,\n", "line 2: grid is empty and there are no coordinates"},
	{"placed outside", "id,type,grid,lat,lon\na-1,noise,,10,10\n", "no grid contains"},
}

func TestParseCSVReportsEveryRow(t *testing.T) {
	ix := NewGridIndex([]Grid{testGrid("G9", 120, 30)})
	for _, tc := range csvCases {
		t.Run(tc.name, func(t *testing.T) {
			devs, rejected, err := ParseCSV(strings.NewReader(tc.in), CSVOptions{Locate: ix.Locate})
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == "" {
				if len(rejected) != 0 || len(devs) != 1 {
					t.Fatalf("devs %v rejected %v, want one device", devs, rejected)
				}
				return
			}
			if len(rejected) != 1 || !strings.Contains(rejected[0].Error(), tc.want) {
				t.Fatalf("rejected %v, want %q", rejected, tc.want)
			}
		})
	}
	// Good rows beside bad ones are accepted, a device with coordinates and
	// no grid is placed by point-in-polygon, and each bad row is listed.
	in := "id,type,grid,lat,lon\na-1,noise,G1,,\nbad,toaster,G1,,\na-2,noise,,30.5,120.5\na-1,noise,G2,,\n"
	devs, rejected, err := ParseCSV(strings.NewReader(in), CSVOptions{Locate: ix.Locate})
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[1].Grid != "G9" {
		t.Errorf("devs = %+v, want a-1 and a-2 placed in G9", devs)
	}
	if len(rejected) != 2 || rejected[0].Line != 3 || rejected[1].Line != 5 || !strings.Contains(rejected[1].Reason, "already defined on line 2") {
		t.Errorf("rejected = %+v, want lines 3 and 5", rejected)
	}
}

func FuzzParseCSV(f *testing.F) {
	for _, tc := range csvCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in string) {
		devs, rejected, err := ParseCSV(strings.NewReader(in), CSVOptions{})
		if err != nil {
			return
		}
		for _, d := range devs {
			if checkID("id", d.ID) != "" || d.Grid == "" {
				t.Fatalf("accepted invalid device %+v", d)
			}
		}
		for _, r := range rejected {
			if r.Line <= 0 || r.Reason == "" {
				t.Fatalf("rejection without line or reason: %+v", r)
			}
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, devs); err != nil {
			t.Fatal(err)
		}
		again, rej2, err := ParseCSV(&buf, CSVOptions{})
		if err != nil || len(rej2) != 0 || len(again) != len(devs) {
			t.Fatalf("round trip: %d devices, %v, %v; want %d", len(again), rej2, err, len(devs))
		}
	})
}
