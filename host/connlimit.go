package host

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"
)

// DefaultMaxConnections is Config.MaxConnections' default and the default
// of cofferd's -max-conns.
const DefaultMaxConnections = 1024

// refuseTimeout bounds the 503 written to a connection over the limit (and
// its TLS handshake), so that a peer that does not read cannot hold it.
const refuseTimeout = 2 * time.Second

// Listener prepares ln for the API: at most Config.MaxConnections
// connections open at once, each further one answered 503 (with
// Retry-After) and closed, then TLS if tlsConfig is not nil. The limit is
// applied under TLS so that http.Server still sees *tls.Conn; the refusal
// does its own handshake.
func (s *Server) Listener(ln net.Listener, tlsConfig *tls.Config) net.Listener {
	max := s.cfg.MaxConnections
	if max <= 0 {
		max = DefaultMaxConnections
	}
	l := &limitListener{Listener: ln, places: make(chan struct{}, max), tls: tlsConfig, refused: func() {
		s.metrics.connRefused.Inc()
		s.log.Warn("HTTP connection refused: too many connections", "max", max)
	}}
	if tlsConfig != nil {
		return tls.NewListener(l, tlsConfig)
	}
	return l
}

// limitListener holds at most cap(places) accepted connections open.
type limitListener struct {
	net.Listener
	places  chan struct{}
	tls     *tls.Config
	refused func()
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.places <- struct{}{}:
			return &limitedConn{Conn: c, release: sync.OnceFunc(func() { <-l.places })}, nil
		default:
			l.refused()
			go l.refuse(c)
		}
	}
}

// refuse answers a connection over the limit with a 503 and closes it.
func (l *limitListener) refuse(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(refuseTimeout))
	if l.tls != nil {
		cfg := l.tls.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		c = tls.Server(c, cfg)
	}
	body := fmt.Sprintf(`{"error":"too many connections to cofferd (%d open); try again"}`+"\n", cap(l.places))
	fmt.Fprintf(c, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"+
		"Connection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// limitedConn gives its place back when closed (http.Server closes every
// connection it accepted).
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
