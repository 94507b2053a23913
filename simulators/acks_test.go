package simulators

import (
	"bytes"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gridwatch/gridwatch/storage"
)

func TestAckLogFileRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	l := NewAckLog(&buf)
	want := []Ack{{"d-1", 1700000000001, 2}, {"d,2", 1700000000002, 1}, {"d-1", 1700000000003, 3}}
	var wg sync.WaitGroup
	for _, a := range want {
		wg.Go(func() { l.Add(a) })
	}
	wg.Wait()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
	if l.Len() != len(want) || len(l.Acks()) != 0 {
		t.Fatalf("Len %d, %d kept in memory; want %d written to the file and none kept", l.Len(), len(l.Acks()), len(want))
	}
	got, err := ReadAcks(&buf)
	if err != nil {
		t.Fatal(err)
	}
	cmp := func(a, b Ack) int { return int(a.TS - b.TS) }
	slices.SortFunc(got, cmp)
	if !slices.Equal(got, want) {
		t.Fatalf("read back %v, want %v", got, want)
	}

	mem := NewAckLog(nil)
	mem.Add(want[0])
	if got := mem.Acks(); !slices.Equal(got, want[:1]) || mem.Flush() != nil {
		t.Fatalf("in-memory log holds %v, want %v", got, want[:1])
	}
}

// readAcksErrors are acks files ReadAcks refuses, with what the error says.
var readAcksErrors = []struct{ name, in, want string }{
	{"empty", "", "header"},
	{"wrong header", "id,ts,n\n", "header"},
	{"bad ts", "device,ts,readings\nd,1,1\nd,x,1\n", "line 3: ts"},
	{"zero readings", "device,ts,readings\nd,1,0\n", "line 2: readings"},
	{"short line", "device,ts,readings\nd,1\n", "wrong number of fields"},
	{"bare quote", "device,ts,readings\nd\"x,1,1\n", "bare \""},
	// Found by FuzzReadAcks (run 301): read as "a\r\nb", written and read
	// back as "a\nb".
	{"control character", "device,ts,readings\n\"a\r\r\nb\",1,1\n", "line 2: device \"a\\r\\nb\": a control character"},
}

func TestReadAcksErrors(t *testing.T) {
	for _, c := range readAcksErrors {
		_, err := ReadAcks(strings.NewReader(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// FuzzReadAcks checks that ReadAcks never panics and that what it reads
// survives a write and a read unchanged.
func FuzzReadAcks(f *testing.F) {
	for _, c := range readAcksErrors {
		f.Add(c.in)
	}
	f.Add("device,ts,readings\n\"d,1\",1700000000001,2\nd-2,-5,1\n")
	f.Fuzz(func(t *testing.T, in string) {
		acks, err := ReadAcks(strings.NewReader(in))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		l := NewAckLog(&buf)
		for _, a := range acks {
			l.Add(a)
		}
		if err := l.Flush(); err != nil {
			t.Fatal(err)
		}
		again, err := ReadAcks(&buf)
		if err != nil || !slices.Equal(again, acks) {
			t.Fatalf("read %v, written and read back %v, %v", acks, again, err)
		}
	})
}

func TestCheckAcks(t *testing.T) {
	acks := []Ack{
		{"a", 1, 2}, // stored whole
		{"a", 2, 2}, // one of its two readings lost
		{"b", 1, 1}, // lost
		{"b", 2, 1}, // stored twice
	}
	stored := map[string]map[int64]storage.MessageRows{
		"a": {1: {Rows: 2}, 2: {Rows: 1},
			3: {Rows: 3, Repeated: 1}}, // never acknowledged (its PUBACK lost), and stored twice
		"b": {2: {Rows: 2, Repeated: 1}},
	}
	got := CheckAcks(acks, stored)
	if got.Acked != 4 || got.Missing != 2 || got.Duplicates != 2 || got.OK() {
		t.Fatalf("CheckAcks = %+v, want 4 acknowledged, 2 missing, 2 duplicated, not OK", got)
	}
	// The examples name each message missing and each duplicated.
	slices.Sort(got.Examples)
	wantExamples := []string{"duplicated a@3: 1 rows too many", "duplicated b@2: 1 rows too many",
		"missing a@2: 1 of 2 readings", "missing b@1: 0 of 1 readings"}
	if !slices.Equal(got.Examples, wantExamples) {
		t.Fatalf("examples %q, want %q", got.Examples, wantExamples)
	}
	if s := got.String(); !strings.Contains(s, "missing b@1") {
		t.Fatalf("String() = %q, want the examples in it", s)
	}
	if c := CheckAcks(acks[:1], nil); c.OK() || c.Missing != 1 {
		t.Fatalf("nothing stored: %+v, want 1 missing", c)
	}
}
