package freeport

import (
	"net"
	"strconv"
	"testing"
)

// TestLoopbackIsFreeAndBelowTheEphemeralRange checks what the managed
// ClickHouse relies on: the port can be bound, and no outgoing connection
// can have been given it.
func TestLoopbackIsFreeAndBelowTheEphemeralRange(t *testing.T) {
	for range 20 {
		port, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if port < minPort || port >= ephemeralLow() {
			t.Fatalf("port %d outside [%d, %d)", port, minPort, ephemeralLow())
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatalf("port %d cannot be bound: %v", port, err)
		}
		l.Close()
	}
}
