package spool

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gridwatch/gridwatch/storage"
	"github.com/gridwatch/gridwatch/storage/storagetest"
)

// holdingProxy forwards TCP connections to a ClickHouse, except that the
// rows of the first INSERT after Arm (what a connection sends after a packet
// naming "INSERT INTO") are held, with all that connection sends after them, until
// Release: a server that was stopped, or a network that stalled, while the
// rows were on their way, and that stores them later, once the INSERT's
// caller has given up.
type holdingProxy struct {
	ln       net.Listener
	target   string
	release  chan struct{}
	armed    atomic.Bool   // Arm: INSERTs before are not held
	cut      bool          // close the client's connection once its rows are held
	held     chan struct{} // closed once rows are held
	answered chan struct{} // closed once the server answered after the held rows
	holdOnce sync.Once
	relOnce  sync.Once
	ansOnce  sync.Once
	wg       sync.WaitGroup
}

func newHoldingProxy(t *testing.T, target string) *holdingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdingProxy{ln: ln, target: target, release: make(chan struct{}), held: make(chan struct{}), answered: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		p.Release()
		ln.Close()
		p.wg.Wait()
	})
	return p
}

// Arm has the next INSERT's rows held.
func (p *holdingProxy) Arm() { p.armed.Store(true) }

// Release lets the held rows go on to the server.
func (p *holdingProxy) Release() { p.relOnce.Do(func() { close(p.release) }) }

func (p *holdingProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		var held atomic.Bool // this connection's rows were held
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 && held.Load() {
					p.ansOnce.Do(func() { close(p.answered) })
				}
				if n > 0 {
					_, _ = c.Write(buf[:n]) // A client gone still lets the server finish.
				}
				if err != nil {
					return
				}
			}
		}()
		go func() {
			defer p.wg.Done()
			p.forward(s, c, &held)
			_ = s.(*net.TCPConn).CloseWrite()
		}()
	}
}

// forward copies what the client c sends to the server s, holding the
// first INSERT's rows.
func (p *holdingProxy) forward(s, c net.Conn, held *atomic.Bool) {
	buf := make([]byte, 64<<10)
	afterInsert := false
	for {
		n, err := c.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			if afterInsert && p.armed.Load() {
				p.holdOnce.Do(func() {
					close(p.held)
					if p.cut {
						c.Close()
					}
					<-p.release
					held.Store(true)
				})
			}
			afterInsert = bytes.Contains(chunk, []byte("INSERT INTO"))
			if _, err := s.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestSpoolReplayWaitsForTimedOutInsertIntegration attacks, on the real
// ClickHouse, the README's promise that a replay stores no batch twice. In
// the default mode a batch's direct INSERT timed out (ingest.insert_timeout)
// after its rows were sent, so the batch was spooled; the server stores the
// rows later, as a SIGSTOPped ClickHouse does after SIGCONT (seen as 176
// readings duplicated in TestFaultClickHouseStopped under load). On the old
// code the replay asked the ledger before the late rows were in, found
// nothing and stored the batch a second time. Now the replay waits until
// the server has answered the first INSERT; when the connection failed
// before any answer, until the server shows it no longer runs the INSERT.
func TestSpoolReplayWaitsForTimedOutInsertIntegration(t *testing.T) {
	t.Run("answer late", func(t *testing.T) { replayAfterUnansweredInsert(t, false) })
	t.Run("connection cut", func(t *testing.T) { replayAfterUnansweredInsert(t, true) })
}

// replayAfterUnansweredInsert is TestSpoolReplayWaitsForTimedOutInsert;
// with cut, the proxy also closes the INSERT's client connection.
func replayAfterUnansweredInsert(t *testing.T, cut bool) {
	o := storagetest.Options(t)
	proxy := newHoldingProxy(t, o.Addr)
	proxy.cut = cut
	o.Addr = proxy.ln.Addr().String()
	ctx := t.Context()
	db, w := migratedWriter(t, o)
	// The ledger column's lookup before the first INSERT.
	if _, err := w.Stored(ctx, "telemetry", []storage.Part{{ID: "none", Record: telemetryBatch(t, 0, 1)}}); err != nil {
		t.Fatal(err)
	}
	proxy.Arm()
	reg := prometheus.NewRegistry()
	s := &Spool{Dir: t.TempDir(), Insert: w.WriteParts, Stored: w.Stored, InsertTimeout: time.Second,
		RetryBackoff: 50 * time.Millisecond, Registerer: reg}
	if err := s.Open(ctx); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const rows = 176
	start := time.Now().UnixMilli()
	if err := s.Write(ctx, "telemetry", "batch-late", telemetryBatch(t, start, rows)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proxy.held:
	default:
		t.Fatal("the INSERT's rows never reached the proxy")
	}
	// The direct INSERT timed out and the batch is spooled. The rows stay
	// held until the replay has stored the batch (the old code) or 3 s
	// have passed (a replay that waits for the first INSERT's answer).
	for deadline := time.Now().Add(3 * time.Second); s.Stats().Segments > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	proxy.Release()
	if !cut {
		// The first INSERT's rows are in once the server answered it,
		// whether or not its client still waits.
		select {
		case <-proxy.answered:
		case <-time.After(2 * time.Minute):
			t.Fatal("after 2 minutes the server has not answered the held INSERT")
		}
	}
	for deadline := time.Now().Add(2 * time.Minute); s.Stats().Segments > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes the spool holds %+v", s.Stats())
		}
	}
	var n uint64
	if err := db.Conn().QueryRow(ctx, "SELECT count() FROM "+o.Database+".telemetry WHERE batch = 'batch-late'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != rows {
		t.Errorf("telemetry holds %d rows of the batch, want %d: the replay stored the batch a second time", n, rows)
	}
	// With the connection cut, whether the server stored the first INSERT's
	// rows is its own affair; the replay stores the batch only if it did not.
	if got := testutil.ToFloat64(s.metrics.deduplicated.WithLabelValues("telemetry")); got != 1 && !cut {
		t.Errorf("batches the replay found stored = %v, want 1", got)
	}
}
