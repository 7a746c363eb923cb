package main

// Proxies the end-to-end tests put on the two hops an operator controls:
// coffer ⇄ cofferd (HTTP over loopback TCP) and cofferd ⇄ vault (framed
// protocol over a unix socket). Both record every byte in both directions;
// the vault hop also reads the frames, so that a test can count requests by
// type, hold one back at a chosen moment, or swap the vault behind cofferd.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

// recording holds the bytes seen on a hop, one stream per connection and
// direction.
type recording struct {
	mu      sync.Mutex
	streams []*recStream
}

type recStream struct {
	name string
	mu   *sync.Mutex
	b    bytes.Buffer
}

func (s *recStream) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (r *recording) stream(name string) *recStream {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &recStream{name: name, mu: &r.mu}
	r.streams = append(r.streams, s)
	return s
}

// each calls f with every stream's name and bytes.
func (r *recording) each(f func(name string, b []byte)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		f(s.name, bytes.Clone(s.b.Bytes()))
	}
}

// total is the number of bytes recorded.
func (r *recording) total() int {
	n := 0
	r.each(func(_ string, b []byte) { n += len(b) })
	return n
}

// tcpProxy forwards loopback TCP connections to target, recording them.
type tcpProxy struct {
	ln     net.Listener
	target string
	rec    recording
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
	nconns int
}

func startTCPProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) url() string { return "http://" + p.ln.Addr().String() }

func (p *tcpProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.nconns++
		n := p.nconns
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		toServer := p.rec.stream(fmt.Sprintf("coffer→cofferd #%d", n))
		toClient := p.rec.stream(fmt.Sprintf("cofferd→coffer #%d", n))
		p.wg.Add(2)
		go p.pump(up, c, toServer)
		go p.pump(c, up, toClient)
	}
}

func (p *tcpProxy) pump(dst, src net.Conn, rec io.Writer) {
	defer p.wg.Done()
	io.Copy(dst, io.TeeReader(src, rec))
	dst.Close()
	src.Close()
}

func (p *tcpProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Frame directions on the vault hop.
const (
	toVault   = 0 // requests, cofferd → vault
	fromVault = 1 // replies, vault → cofferd
)

// frameProxy listens on a unix socket for cofferd and forwards each
// connection, frame by frame, to the vault socket it currently points at.
type frameProxy struct {
	t      *testing.T
	ln     net.Listener
	sock   string
	rec    recording
	wg     sync.WaitGroup
	mu     sync.Mutex
	target string
	conns  map[net.Conn]bool
	nconns int
	counts [2]map[protocol.Type]int
	holds  []*frameHold
}

type frameHold struct {
	dir  int
	typ  protocol.Type
	held chan struct{}
}

func startFrameProxy(t *testing.T, target string) *frameProxy {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "proxy.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	p := &frameProxy{t: t, ln: ln, sock: sock, target: target, conns: map[net.Conn]bool{}}
	p.counts = [2]map[protocol.Type]int{{}, {}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *frameProxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		up, err := net.Dial("unix", target)
		if err != nil {
			c.Close() // the vault is down: cofferd sees a dropped connection and redials
			continue
		}
		p.mu.Lock()
		p.nconns++
		n := p.nconns
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		req := p.rec.stream(fmt.Sprintf("cofferd→vault #%d", n))
		rep := p.rec.stream(fmt.Sprintf("vault→cofferd #%d", n))
		p.wg.Add(2)
		go p.pump(up, c, req, toVault)
		go p.pump(c, up, rep, fromVault)
	}
}

// pump forwards the frames read from src to dst, recording src's bytes as
// read. A frame a hold matches is not forwarded, and the hop then goes
// quiet in that direction until the connection ends.
func (p *frameProxy) pump(dst, src net.Conn, rec io.Writer, dir int) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	fr := protocol.NewFrameReader(io.TeeReader(src, rec))
	holding := false
	for {
		f, err := fr.Next()
		if err != nil {
			if protocol.IsRecoverable(err) {
				continue
			}
			return
		}
		if holding {
			continue
		}
		typ, _ := protocol.PeekType(f.Payload)
		if p.held(dir, typ) {
			holding = true
			continue
		}
		if err := protocol.WriteFrame(dst, f); err != nil {
			return
		}
	}
}

// held counts a frame and reports whether a hold takes it.
func (p *frameProxy) held(dir int, typ protocol.Type) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[dir][typ]++
	for i, h := range p.holds {
		if h.dir == dir && h.typ == typ {
			p.holds = append(p.holds[:i], p.holds[i+1:]...)
			close(h.held)
			return true
		}
	}
	return false
}

// holdNext arms a one-shot hold: the next frame of type typ going in
// direction dir is not forwarded, and the returned channel is closed.
func (p *frameProxy) holdNext(dir int, typ protocol.Type) <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := &frameHold{dir: dir, typ: typ, held: make(chan struct{})}
	p.holds = append(p.holds, h)
	return h.held
}

// count is the number of frames of type typ seen in direction dir.
func (p *frameProxy) count(dir int, typ protocol.Type) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.counts[dir][typ]
}

// connections is the number of connections cofferd has made through the
// proxy to a vault.
func (p *frameProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nconns
}

// retarget points the proxy at another vault socket and drops every
// connection, as an operator swapping the device behind cofferd would.
func (p *frameProxy) retarget(sock string) {
	p.mu.Lock()
	p.target = sock
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
}

func (p *frameProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}
