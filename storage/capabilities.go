package storage

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is a ClickHouse server version such as 24.8.4.13.
type Version struct {
	Major, Minor, Patch, Build int
}

// ParseVersion parses a version string as returned by SELECT version():
// two to four dot-separated numbers ("18.16.1", "24.8.4.13"). A suffix after
// the numbers ("-stable", "+lts") is ignored.
func ParseVersion(s string) (Version, error) {
	core := s
	if i := strings.IndexAny(core, "-+ "); i >= 0 {
		core = core[:i]
	}
	parts := strings.Split(core, ".")
	if len(parts) < 2 || len(parts) > 4 {
		return Version{}, fmt.Errorf("%w: %q", ErrBadVersion, s)
	}
	var nums [4]int
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil {
			return Version{}, fmt.Errorf("%w: %q", ErrBadVersion, s)
		}
		nums[i] = n
	}
	return Version{Major: nums[0], Minor: nums[1], Patch: nums[2], Build: nums[3]}, nil
}

// String formats v as major.minor.patch.build.
func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d.%d", v.Major, v.Minor, v.Patch, v.Build)
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// Capabilities are the server features the schema, the writer and the
// queries adapt to. Each field names the release that brought the feature.
type Capabilities struct {
	// Version is the server's version.
	Version Version
	// LowCardinality is the production-ready LowCardinality type (19.3; it
	// was experimental behind a setting from 18.12 on).
	LowCardinality bool
	// DateTime64 is the DateTime64 type (20.1) together with the
	// toUnixTimestamp64Milli / fromUnixTimestamp64Milli functions (20.5) the
	// queries use to keep milliseconds exact. Without it timestamps are
	// stored as Int64 epoch milliseconds.
	DateTime64 bool
	// Codecs are per-column compression codecs including the time-series
	// ones gridwatch uses: CODEC and Delta/ZSTD came in 19.1, DoubleDelta and
	// Gorilla in 19.11.
	Codecs bool
	// TTL is table TTL expressions (19.6). Without it retention is enforced
	// by DB.DropExpired.
	TTL bool
	// InsertDeduplicationToken is the insert_deduplication_token setting
	// (22.2), which makes a retried INSERT of the same batch idempotent.
	InsertDeduplicationToken bool
	// AddColumnIfNotExists is ALTER TABLE ... ADD COLUMN IF NOT EXISTS
	// (19.x; 18.16 refuses it), which makes an ADD COLUMN migration
	// idempotent.
	AddColumnIfNotExists bool
}

// CapabilitiesFor returns the capabilities of a server of the given version.
// It is pure: the feature table is fixed by the release notes.
func CapabilitiesFor(version string) (Capabilities, error) {
	v, err := ParseVersion(version)
	if err != nil {
		return Capabilities{}, err
	}
	return Capabilities{
		Version:                  v,
		LowCardinality:           v.AtLeast(19, 3),
		DateTime64:               v.AtLeast(20, 5),
		Codecs:                   v.AtLeast(19, 11),
		TTL:                      v.AtLeast(19, 6),
		InsertDeduplicationToken: v.AtLeast(22, 2),
		AddColumnIfNotExists:     v.AtLeast(20, 1),
	}, nil
}
