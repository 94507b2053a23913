package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitsFileValidated(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, file, want string
	}{
		{"good", "- code: water\n  categories: [water]\n", ""},
		{"unknown category", "- code: water\n  categories: [plumbing]\n", `'units.file' is invalid: `},
		{"not a list", "code: water\n", `'units.file' is invalid: `},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg := Default()
			cfg.Units.File = path
			err := cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("Validate = %v, want %q", err, tc.want)
			}
		})
	}
	cfg := Default()
	cfg.Units.File = filepath.Join(dir, "missing.yaml")
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "'units.file'") {
		t.Errorf("Validate with a missing units file = %v, want an error naming units.file", err)
	}
}
