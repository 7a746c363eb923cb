package softvault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/protocol"
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

// Serve serves the vault in dir on listen (unix:PATH or tcp:LOOPBACK:PORT)
// until ctx is done, then lets requests in flight finish and closes the
// store.
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
	ln, err := ListenOn(listen)
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
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { mu.Lock(); delete(conns, conn); mu.Unlock(); conn.Close() }()
			if err := protocol.ServeStream(ctx, conn, v.Handle, maxInFlightPerConn); err != nil && ctx.Err() == nil {
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

// ListenOn accepts unix:PATH or tcp:HOST:PORT, where HOST must be a loopback
// address: the software vault is not meant to face a network.
func ListenOn(addr string) (net.Listener, error) {
	network, where, ok := strings.Cut(addr, ":")
	switch {
	case !ok:
	case network == "unix":
		os.Remove(where) // a socket left by an earlier run
		return net.Listen("unix", where)
	case network == "tcp":
		host, _, err := net.SplitHostPort(where)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return nil, fmt.Errorf("listen: %s is not a loopback address", host)
		}
		return net.Listen("tcp", where)
	}
	return nil, fmt.Errorf("listen: want unix:PATH or tcp:127.0.0.1:PORT, got %q", addr)
}
