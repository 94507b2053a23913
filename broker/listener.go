package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
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
//
// With proxies set, a connection from one of those networks (a TCP load
// balancer such as HAProxy with send-proxy-v2) must begin with a PROXY
// protocol header (v1 or v2), whose source address is then the client's
// address for the per-address limits, bans and logs; a connection that
// lacks it is refused, counted in proxyRefused. A connection from anywhere
// else is read as it comes, so that a stranger cannot claim an address by
// sending a header: it fails as a malformed CONNECT.
type listener struct {
	id             string
	addr           string
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	pending        *pendingConnects
	proxies        []*net.IPNet
	proxyRefused   prometheus.Counter
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
	l.ln, err = net.Listen("tcp", l.addr)
	return err
}

// Serve accepts connections until Close and hands each to mochi.
func (l *listener) Serve(establish listeners.EstablishFn) {
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			return
		}
		// A proxy's connections are counted by the address in their
		// header, once read; others here, in the order they came.
		proxied := l.fromProxy(conn.RemoteAddr())
		remote := conn.RemoteAddr().String()
		if !proxied && !l.pending.add(remote) {
			conn.Close()
			continue
		}
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			if !proxied {
				l.pending.done(remote)
			}
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
			defer func() {
				l.mu.Lock()
				delete(l.conns, conn)
				l.mu.Unlock()
				l.wg.Done()
			}()
			if proxied {
				l.establishProxied(establish, conn)
				return
			}
			l.establish(establish, conn, remote)
		}()
	}
}

// establishProxied reads the PROXY header of a connection from a proxy,
// then establishes it within the pending bound of the address it names.
func (l *listener) establishProxied(establish listeners.EstablishFn, raw net.Conn) {
	pc := proxyproto.NewConn(raw, proxyproto.WithPolicy(proxyproto.REQUIRE))
	// A read of nothing reads the header (within the connection's
	// deadline), or fails without it.
	if _, err := pc.Read(nil); err != nil {
		if !errors.Is(err, io.EOF) { // closed before a byte: a TCP health check
			l.proxyRefused.Inc()
			l.log.Warn("mqtt connection from a proxy without a valid PROXY header refused", "listener", l.id,
				"proxy", raw.RemoteAddr().String(), "err", err)
		}
		raw.Close()
		return
	}
	remote := pc.RemoteAddr().String()
	if !l.pending.add(remote) {
		raw.Close()
		return
	}
	l.establish(establish, pc, remote)
}

// establish hands a connection counted as pending for remote to mochi,
// through TLS on a TLS listener, and ends remote's pending count when
// mochi is done with it.
func (l *listener) establish(establish listeners.EstablishFn, conn net.Conn, remote string) {
	if l.tlsConfig != nil {
		conn = tls.Server(conn, l.tlsConfig)
	}
	// Refusals are counted by the hooks; the error is detail.
	if err := establish(l.id, conn); err != nil {
		l.log.Debug("mqtt connection ended", "listener", l.id, "remote", remote, "err", err)
	}
	l.pending.done(remote) // when it never sent its CONNECT
}

// fromProxy reports whether addr is in one of the proxies' networks.
func (l *listener) fromProxy(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || len(l.proxies) == 0 {
		return false
	}
	return slices.ContainsFunc(l.proxies, func(n *net.IPNet) bool { return n.Contains(tcp.IP) })
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
