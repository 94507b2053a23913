package spool

import (
	"errors"
	"testing"

	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"
)

// segmentCases are damaged segments, by how they were damaged; they also
// seed the fuzz target.
func segmentCases(t testing.TB) map[string][]byte {
	rec := record(t, 7, 8, 9)
	defer rec.Release()
	good, err := encodeSegment("telemetry", "batch-1", rec)
	if err != nil {
		t.Fatal(err)
	}
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)/2] ^= 1
	return map[string][]byte{
		"good":      good,
		"empty":     nil,
		"truncated": good[:len(good)-7],
		"flipped":   flipped,
		"magic":     append([]byte("XXXXXXXX"), good[8:]...),
	}
}

func TestSegmentDetectsDamage(t *testing.T) {
	for name, data := range segmentCases(t) {
		t.Run(name, func(t *testing.T) {
			seg, err := decodeSegment(data, memory.DefaultAllocator)
			if name != "good" {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("decode = %v, want ErrCorrupt", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer seg.Record.Release()
			got := seg.Record.Column(0).(*array.Int64).Int64Values()
			if seg.Table != "telemetry" || seg.ID != "batch-1" || len(got) != 3 || got[2] != 9 {
				t.Fatalf("decoded %s %s %v", seg.Table, seg.ID, got)
			}
		})
	}
}

func FuzzDecodeSegment(f *testing.F) {
	for _, data := range segmentCases(f) {
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seg, err := decodeSegment(data, memory.DefaultAllocator)
		if err == nil {
			seg.Record.Release()
		}
	})
}
