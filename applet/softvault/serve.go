package softvault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

const insecureBanner = `
******************************************************************
*  INSECURE SOFTWARE VAULT: its keys are files readable by whoever *
*  runs this host, and its anchor can be rolled back together     *
*  with its store. For development and tests only. Its identity   *
*  bundle says insecure=true; clients refuse it without --insecure *
******************************************************************
`

// maxInFlightPerConn bounds requests served at once on one connection.
const maxInFlightPerConn = 256

// Defaults of the Options that bound connections.
const (
	// DefaultMaxConnections: cofferd needs one connection per vault; the
	// rest is room for tools (provisioning) and reconnections.
	DefaultMaxConnections = 64
	// DefaultIdleTimeout: cofferd's status poll (15 s by default) keeps
	// its connection busy; a connection silent for this long is dropped.
	DefaultIdleTimeout = 10 * time.Minute
)

// refuseTimeout bounds the busy reply to a connection over the limit.
const refuseTimeout = time.Second

// Serve serves the vault in dir on listen (unix:PATH or tcp:LOOPBACK:PORT)
// until ctx is done, then lets requests in flight finish and closes the
// store. At most opts.MaxConnections are served at once: one more is
// answered with a busy error frame (id 0) and closed. A connection idle for
// opts.IdleTimeout is closed, and one whose peer does not read its replies
// within opts.WriteTimeout is dropped, so neither holds a place or the
// shutdown.
func Serve(ctx context.Context, dir, listen string, opts Options, stderr io.Writer) error {
	inst, err := Open(ctx, dir, opts)
	if err != nil {
		return err
	}
	defer inst.Close()
	v, log := inst.Vault, opts.Log
	if log == nil {
		log = slog.Default()
	}
	// Said before the socket exists, so nobody can talk to this vault
	// without the warning having been printed.
	fmt.Fprint(stderr, insecureBanner)
	log.Warn("serving an INSECURE software vault", "listen", listen, "state", dir)
	ln, err := transport.Listen(listen)
	if err != nil {
		return err
	}
	defer ln.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				v.Expire()
			}
		}
	}()
	go func() { <-ctx.Done(); ln.Close() }()

	maxConns := opts.MaxConnections
	if maxConns <= 0 {
		maxConns = DefaultMaxConnections
	}
	idle := opts.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	serveOpts := protocol.ServeOptions{MaxInFlight: maxInFlightPerConn, WriteTimeout: opts.WriteTimeout, IdleTimeout: idle}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
	)
	log.Info("ready", "listen", listen)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return err
			}
			log.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		mu.Lock()
		full := len(conns) >= maxConns
		if !full {
			conns[conn] = struct{}{}
		}
		mu.Unlock()
		wg.Add(1)
		if full {
			log.Warn("connection refused: too many connections", "max", maxConns)
			go func() {
				defer wg.Done()
				refuse(conn, maxConns)
			}()
			continue
		}
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(conns, conn); mu.Unlock(); conn.Close() }()
			err := protocol.ServeStreamWith(ctx, conn, v.Handle, serveOpts)
			switch {
			case errors.Is(err, protocol.ErrIdle):
				log.Debug("idle connection closed", "after", idle)
			case err != nil && ctx.Err() == nil:
				log.Info("connection ended", "err", err)
			}
		}()
	}
	// Shutting down: stop reading, let requests in flight finish their
	// commits, then close the store.
	mu.Lock()
	for c := range conns {
		c.SetReadDeadline(time.Now())
	}
	mu.Unlock()
	wg.Wait()
	log.Info("stopped")
	return nil
}

// refuse tells a connection over the limit why it is closed, without
// waiting on a peer that does not read.
func refuse(conn net.Conn, max int) {
	defer conn.Close()
	conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
	msg := protocol.Errorf(protocol.CodeBusy, "too many connections to this vault (%d); nothing was read", max)
	protocol.WriteFrame(conn, protocol.Frame{ID: 0, Payload: protocol.EncodeError(msg)})
}
