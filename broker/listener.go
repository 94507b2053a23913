package broker

import (
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// listener is a TCP listener, with TLS when tlsConfig is set, that mochi
// can close without a race. mochi's own listeners.TCP hands a connection
// accepted during Server.Close to a goroutine that calls ClientsWg.Add
// while Close already waits on that group (mochi-mqtt/server issues 424,
// 488, 541). This one tracks every connection it hands to mochi; Close
// stops accepting, disconnects the clients, closes the connections still
// being established, and returns only when mochi is done with all of them,
// so Server.Close then waits on a group nobody adds to any more.
//
// It also bounds how long a connection may take to send its CONNECT
// (connectTimeout): mochi reads the CONNECT without a deadline, so a
// connection that sends nothing, or part of a CONNECT, would hold its
// descriptor and goroutines for ever, and the per-address limits, which
// start at the CONNECT, would never see it. For the same reason it bounds
// how many connections of one address may be waiting for their CONNECT
// (pending).
type listener struct {
	id             string
	addr           string
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	pending        *pendingConnects
	// closeClients disconnects the listener's clients at Close, in place
	// of mochi's CloseFn (see Broker.closeClientsOf).
	closeClients func(id string)
	ln           net.Listener
	log          *slog.Logger

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func (l *listener) ID() string       { return l.id }
func (l *listener) Protocol() string { return "tcp" }

// Address returns the bound address once Init has run.
func (l *listener) Address() string {
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.addr
}

// Init opens the socket.
func (l *listener) Init(log *slog.Logger) error {
	l.log = log
	l.conns = make(map[net.Conn]struct{})
	var err error
	if l.tlsConfig != nil {
		l.ln, err = tls.Listen("tcp", l.addr, l.tlsConfig)
	} else {
		l.ln, err = net.Listen("tcp", l.addr)
	}
	return err
}

// Serve accepts connections until Close and hands each to mochi.
func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		remote := conn.RemoteAddr().String()
		if !l.pending.add(remote) {
			conn.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			l.pending.done(remote)
			conn.Close()
			return
		}
		l.conns[conn] = struct{}{}
		l.wg.Add(1)
		l.mu.Unlock()
		// mochi replaces the deadline with the client's keepalive once
		// it has read the CONNECT.
		_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
		go func() {
			defer l.wg.Done()
			// Refusals are counted by the hooks; the error is detail.
			if err := establish(l.id, conn); err != nil {
				l.log.Debug("mqtt connection ended", "listener", l.id, "remote", remote, "err", err)
			}
			l.pending.done(remote) // when it never sent its CONNECT
			l.mu.Lock()
			delete(l.conns, conn)
			l.mu.Unlock()
		}()
	}
}

// Close stops accepting and returns once every connection is finished.
func (l *listener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	l.mu.Unlock()
	if l.ln != nil {
		l.ln.Close()
	}
	l.closeClients(l.id)
	l.mu.Lock()
	for c := range l.conns {
		c.Close() // connected but not yet a client: still in CONNECT
	}
	l.mu.Unlock()
	l.wg.Wait()
}
