package storage

import (
	"errors"
	"testing"
)

var capabilityCases = []struct {
	version string
	want    Capabilities
}{
	{"18.16.1", Capabilities{Version: Version{18, 16, 1, 0}}},
	{"19.1.6", Capabilities{Version: Version{19, 1, 6, 0}}},
	{"19.3.3", Capabilities{Version: Version{19, 3, 3, 0}, LowCardinality: true}},
	{"19.6.2.11", Capabilities{Version: Version{19, 6, 2, 11}, LowCardinality: true, TTL: true}},
	{"19.11.3.11", Capabilities{Version: Version{19, 11, 3, 11}, LowCardinality: true, TTL: true, Codecs: true}},
	{"20.1.2.4", Capabilities{Version: Version{20, 1, 2, 4}, LowCardinality: true, TTL: true, Codecs: true, AddColumnIfNotExists: true}},
	{"20.5.2.7", Capabilities{Version: Version{20, 5, 2, 7}, LowCardinality: true, TTL: true, Codecs: true, DateTime64: true, AddColumnIfNotExists: true}},
	{"22.1.3.7", Capabilities{Version: Version{22, 1, 3, 7}, LowCardinality: true, TTL: true, Codecs: true, DateTime64: true, AddColumnIfNotExists: true}},
	{"22.2.2.1", Capabilities{Version: Version{22, 2, 2, 1}, LowCardinality: true, TTL: true, Codecs: true, DateTime64: true, InsertDeduplicationToken: true, AddColumnIfNotExists: true}},
	{"24.8.4.13", Capabilities{Version: Version{24, 8, 4, 13}, LowCardinality: true, TTL: true, Codecs: true, DateTime64: true, InsertDeduplicationToken: true, AddColumnIfNotExists: true}},
	{"25.3.1.2703-lts", Capabilities{Version: Version{25, 3, 1, 2703}, LowCardinality: true, TTL: true, Codecs: true, DateTime64: true, InsertDeduplicationToken: true, AddColumnIfNotExists: true}},
	{"19.3", Capabilities{Version: Version{19, 3, 0, 0}, LowCardinality: true}},
}

func TestCapabilitiesFor(t *testing.T) {
	for _, c := range capabilityCases {
		got, err := CapabilitiesFor(c.version)
		if err != nil {
			t.Errorf("CapabilitiesFor(%q): %v", c.version, err)
			continue
		}
		if got != c.want {
			t.Errorf("CapabilitiesFor(%q) = %+v, want %+v", c.version, got, c.want)
		}
	}
}

var badVersions = []string{"", "18", "x.y", "18.16.1.2.3", "18..1", "v18.16", "18.-1"}

func TestParseVersionRejects(t *testing.T) {
	for _, s := range badVersions {
		if v, err := ParseVersion(s); !errors.Is(err, ErrBadVersion) {
			t.Errorf("ParseVersion(%q) = %v, %v; want ErrBadVersion", s, v, err)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, c := range capabilityCases {
		f.Add(c.version)
	}
	for _, s := range badVersions {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		// A parsed version prints as numbers that parse back to itself.
		back, err := ParseVersion(v.String())
		if err != nil || back != v {
			t.Fatalf("ParseVersion(%q) = %v, which reparses as %v, %v", s, v, back, err)
		}
	})
}
