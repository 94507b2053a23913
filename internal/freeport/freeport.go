// Package freeport picks loopback TCP ports for servers that bind later
// than the pick: the managed ClickHouse, which binds seconds after its
// ports are chosen, and test servers restarted on the ports they had.
//
// A port taken from the kernel's ephemeral range (":0") can be handed to
// any outgoing connection of the machine between the pick and the bind,
// and the bind then fails with EADDRINUSE; a busy machine makes thousands
// of such connections. Ports below that range are never handed out so.
package freeport

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// minPort is the lowest port picked: above the well-known and most
// registered services' ports.
const minPort = 10000

// attempts bounds the random picks before Loopback gives up.
const attempts = 200

// ErrNone is returned when no port below the ephemeral range could be bound.
var ErrNone = errors.New("no free port below the ephemeral range")

// Loopback returns a TCP port on 127.0.0.1 that was free a moment ago and
// lies below the kernel's ephemeral port range, so that no outgoing
// connection takes it before the caller's server binds it.
func Loopback() (int, error) {
	limit := ephemeralLow()
	if limit <= minPort {
		return 0, fmt.Errorf("%w: the ephemeral range starts at %d", ErrNone, limit)
	}
	var lastErr error
	for range attempts {
		port := minPort + rand.IntN(limit-minPort)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			lastErr = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("%w: %d tries, the last: %w", ErrNone, attempts, lastErr)
}

// ephemeralLow returns the first port of the kernel's ephemeral range,
// Linux's default 32768 when it cannot be read.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	fields := strings.Fields(string(b))
	if len(fields) == 0 {
		return 32768
	}
	low, err := strconv.Atoi(fields[0])
	if err != nil {
		return 32768
	}
	return low
}
