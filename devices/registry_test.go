package devices

import (
	"slices"
	"testing"
)

// TestRegistryOfType checks that OfType answers the devices of a type in id
// order, from the current import only, and that a caller changing what it
// got changes nothing for the next.
func TestRegistryOfType(t *testing.T) {
	r := NewRegistry([]Device{{ID: "c2", Type: "camera"}, {ID: "w1", Type: "waste_bin"}, {ID: "c1", Type: "camera"}})
	ids := func(devs []Device) []string {
		var out []string
		for _, d := range devs {
			out = append(out, d.ID)
		}
		return out
	}
	got := r.OfType("camera")
	if want := []string{"c1", "c2"}; !slices.Equal(ids(got), want) {
		t.Fatalf("OfType(camera) = %v, want %v", ids(got), want)
	}
	got[0].ID = "changed"
	if got := ids(r.OfType("camera")); got[0] != "c1" {
		t.Fatalf("OfType after the caller changed its copy = %v, want c1 first", got)
	}
	if got := r.OfType("manhole_cover"); len(got) != 0 {
		t.Fatalf("OfType(manhole_cover) = %v, want none", got)
	}
	r.Replace([]Device{{ID: "c3", Type: "camera"}})
	if got, want := ids(r.OfType("camera")), []string{"c3"}; !slices.Equal(got, want) {
		t.Fatalf("OfType after Replace = %v, want %v", got, want)
	}
	if got, want := ids(r.All()), []string{"c3"}; !slices.Equal(got, want) {
		t.Fatalf("All after Replace = %v, want %v", got, want)
	}
}
