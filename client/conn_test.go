package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// The vault (its Trusted OS) may answer that a request's outcome is unknown:
// it took the request and its reply was lost. For a login start that means a
// guess may have been counted, and the user must be told so, never that the
// vault was merely busy.
func TestOutcomeUnknownIsExplained(t *testing.T) {
	for _, tc := range []struct {
		step protocol.Type
		want string
	}{
		{protocol.TypeLoginStart, "the attempt may have been counted"},
		{protocol.TypeLoginFinish, "the login may have completed"},
	} {
		t.Run(tc.step.String(), func(t *testing.T) {
			f := newFixture(t, fakehost.Options{})
			f.register("pw", 0)
			f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
				if typ != tc.step {
					return false
				}
				f.host.Vault(r.Context(), body) // the vault acts; its reply is lost
				w.Write(protocol.EncodeError(protocol.Errorf(protocol.CodeOutcomeUnknown, "reply lost")))
				return true
			})
			_, err := f.login("pw")
			if !errors.Is(err, &protocol.Error{Code: protocol.CodeOutcomeUnknown}) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v", err)
			}
			if n := f.host.Counts()[tc.step]; n != 1 {
				t.Errorf("%d %s requests sent: the client retried", n, tc.step)
			}
		})
	}
}

// A Conn keeps its connections to cofferd for the next requests, also
// when several requests run at once (an application with several
// accounts, or a realm set whose realms share a cofferd): a second wave of
// as many concurrent requests opens no new TCP connection. (Go's default
// transport kept 2 per host and redialled the rest, a TCP handshake and
// TLS handshake per request in a deployment.)
func TestConnReusesConnectionsUnderConcurrency(t *testing.T) {
	const parallel = 8
	var (
		mu      sync.Mutex
		dialled int
		arrived int
		release = make(chan struct{})
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived++
		if arrived%parallel == 0 {
			close(release) // the whole wave is in flight, each on a connection of its own
			release = make(chan struct{})
		}
		wait := release
		if arrived%parallel == 0 {
			wait = nil
		}
		mu.Unlock()
		if wait != nil {
			select {
			case <-wait:
			case <-time.After(10 * time.Second):
			}
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"user_id":"00112233","device":"vault0"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			dialled++
			mu.Unlock()
		}
	}
	srv.Start()
	defer srv.Close()
	c, err := NewConn(srv.URL, "token", nil)
	if err != nil {
		t.Fatal(err)
	}
	for wave := range 3 {
		var wg sync.WaitGroup
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Account(context.Background()); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		mu.Lock()
		n := dialled
		mu.Unlock()
		if n > parallel {
			t.Fatalf("after wave %d of %d concurrent requests: %d connections opened, want at most %d", wave+1, parallel, n, parallel)
		}
	}
}
