package storage

import "testing"

func TestOptionsIdleConns(t *testing.T) {
	cases := []struct {
		name       string
		open, idle int
		want       int
	}{
		{"defaults", 0, 0, DefaultMaxIdleConns},
		{"set", 8, 4, 4},
		{"at most the open connections", 3, 5, 3},
		{"the default capped by a smaller pool", 1, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := Options{Addr: "127.0.0.1:9000", MaxOpenConns: tc.open, MaxIdleConns: tc.idle}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			if o.MaxIdleConns != tc.want {
				t.Errorf("MaxIdleConns = %d, want %d", o.MaxIdleConns, tc.want)
			}
		})
	}
}
