package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/memory"

	"github.com/gridwatch/gridwatch/internal/freeport"
	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/spool"
)

// TestSpoolListCLI: `gridwatch spool list` shows a batch the spool set
// aside with ClickHouse's reason, read from data_dir alone; `spool replay`
// wants names or --all.
func TestSpoolListCLI(t *testing.T) {
	dataDir := t.TempDir()
	quarantineBatch(t, dataDir)
	out, err := run(t, "spool", "list", "--data_dir", dataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"batch-7", "telemetry", "rejected", "doesn't exist"} {
		if !strings.Contains(out, want) {
			t.Errorf("spool list output lacks %q:\n%s", want, out)
		}
	}
	if _, err := run(t, "spool", "replay", "--data_dir", dataDir); err == nil {
		t.Error("spool replay without names or --all succeeded")
	}
}

// quarantineBatch has a spool in dataDir set aside batch-7, refused as
// permanently as a missing table is, and returns its file's name.
func quarantineBatch(t *testing.T, dataDir string) string {
	t.Helper()
	refuse := func(context.Context, string, []storage.Part) error {
		return &storage.WriteError{Err: &clickhouse.Exception{Code: 60, Message: "Table gridwatch.telemetry doesn't exist"}}
	}
	none := func(context.Context, string, []storage.Part) (map[string]bool, error) { return nil, nil }
	s := &spool.Spool{Dir: dataDir + "/spool", Durable: true, Insert: refuse, Stored: none}
	if err := s.Open(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := array.NewInt64Builder(memory.DefaultAllocator)
	defer b.Release()
	b.Append(1)
	col := b.NewArray()
	defer col.Release()
	rec := array.NewRecord(arrow.NewSchema([]arrow.Field{{Name: "v", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{col}, 1)
	defer rec.Release()
	if err := s.Write(context.Background(), "telemetry", "batch-7", rec); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for s.Quarantined() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the refused batch was not quarantined")
		}
		time.Sleep(10 * time.Millisecond)
	}
	list, err := spool.ListQuarantine(dataDir + "/spool")
	if err != nil || len(list) != 1 {
		t.Fatalf("quarantine: %v, %v", list, err)
	}
	return list[0].File
}

// TestSpoolReplayUnknownName: with gridwatch stopped, spool replay of a
// name that is not in the quarantine says so before it starts the managed
// ClickHouse (which takes seconds, or fails on a box without one).
func TestSpoolReplayUnknownName(t *testing.T) {
	dataDir := t.TempDir()
	file := quarantineBatch(t, dataDir)
	_, err := run(t, "spool", "replay", file, "00000000000000000099.seg", "--data_dir", dataDir)
	if err == nil || !strings.Contains(err.Error(), `"00000000000000000099.seg" is not in`) || strings.Contains(err.Error(), file) {
		t.Errorf("spool replay of an unknown name: %v, want it to name that one as not in the quarantine", err)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "clickhouse")); !os.IsNotExist(err) {
		t.Errorf("spool replay of an unknown name touched the managed ClickHouse's directory (stat: %v)", err)
	}
}

// TestSpoolReplayHeldWithoutServer: when a gridwatch holds the managed
// ClickHouse and its API does not answer, spool replay says what to do.
func TestSpoolReplayHeldWithoutServer(t *testing.T) {
	dataDir := t.TempDir()
	lockDir := filepath.Join(dataDir, "clickhouse")
	if err := os.MkdirAll(lockDir, 0o750); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(lockDir, "gridwatch.lock"), os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "spool", "replay", quarantineBatch(t, dataDir), "--data_dir", dataDir, "--http.listen", fmt.Sprintf("127.0.0.1:%d", port))
	for _, want := range []string{"a running gridwatch holds the managed ClickHouse", fmt.Sprintf("http://127.0.0.1:%d", port), "--server", "stop gridwatch"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("spool replay with the managed ClickHouse held and no API: %v, want it to say %q", err, want)
		}
	}
}

func TestLoopbackURLHost(t *testing.T) {
	for listen, want := range map[string]string{
		":8080": "127.0.0.1:8080", "0.0.0.0:8080": "127.0.0.1:8080", "[::]:8080": "127.0.0.1:8080",
		"127.0.0.1:9000": "127.0.0.1:9000", "10.1.2.3:8080": "10.1.2.3:8080", "[::1]:8080": "[::1]:8080",
	} {
		if got := loopbackURLHost(listen); got != want {
			t.Errorf("loopbackURLHost(%q) = %q, want %q", listen, got, want)
		}
	}
}
