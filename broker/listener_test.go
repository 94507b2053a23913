package broker

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/gridwatch/gridwatch/devices"
)

// TestCloseWhileConnecting closes the broker while clients keep dialling
// it. With mochi's own TCP listener the race detector reports the
// ClientsWg race of mochi-mqtt/server issue 541 in a few of these rounds;
// the run also fails if Close hangs on a connection mid-CONNECT.
func TestCloseWhileConnecting(t *testing.T) {
	reg := devices.NewRegistry(nil)
	for round := 0; round < 20; round++ {
		b := &Broker{Listen: "127.0.0.1:0", Lookup: reg.Lookup,
			Ingest: func(context.Context, string, string, []byte, bool) (Stored, error) { return nil, nil }}
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		addr := b.Addr()
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					c, err := net.Dial("tcp", addr)
					if err != nil {
						continue
					}
					c.Write([]byte{0x10}) // the first byte of a CONNECT, then nothing
					c.Close()
				}
			}()
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
	}
}
