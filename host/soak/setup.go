package soak

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/client"
	"github.com/cofferhsm/coffer/host"
	"github.com/cofferhsm/coffer/host/state"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
)

// startCofferd creates the accounts, placed on the one device, in a state
// store in memory, and serves cofferd on loopback, in front of the vault's
// socket.
func (r *runner) startCofferd() error {
	ctx := context.Background()
	accounts := state.NewMemory()
	if err := accounts.RegisterDevice(ctx, "vault0", "local"); err != nil {
		return err
	}
	for i := 0; i < r.cfg.Clients; i++ {
		a, token, err := host.NewAccount(ctx, accounts, fmt.Sprintf("soak%03d", i), "vault0")
		if err != nil {
			return err
		}
		r.accounts = append(r.accounts, accountToken{a, token})
	}
	var err error
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	r.dev = host.NewStreamDevice("vault0", transport.UnixDialer(r.vault.sock), host.StreamOptions{MinBackoff: 50 * time.Millisecond, Log: quiet})
	r.srv, err = host.New(host.Config{
		Devices: []host.Device{r.dev}, Store: accounts,
		LoginRate: r.cfg.LoginRate, LoginBurst: r.cfg.LoginBurst, Queue: r.cfg.Queue, InFlight: r.cfg.InFlight,
		PollInterval: time.Second, Log: quiet,
	})
	if err != nil {
		r.dev.Close()
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	r.url = "http://" + ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { r.srv.Serve(ctx, ln); close(served) }()
	r.stopServe = func() { cancel(); <-served; r.srv.Close() }
	if !waitUntil(30*time.Second, r.dev.Connected) {
		return errors.New("cofferd did not connect to the vault")
	}
	r.workers = make([]*worker, r.cfg.Clients)
	return nil
}

// newWorker makes the client of account number i and its account's model.
func (r *runner) newWorker(ctx context.Context, i int, a host.Account, token string, base http.RoundTripper) (*worker, error) {
	kind := ordinary
	switch {
	case i < r.cfg.LockoutAccounts:
		kind = lockout
	case i < r.cfg.LockoutAccounts+r.cfg.ProductClients:
		kind = product
	}
	acct := &account{name: a.Name, userID: a.UserID, token: token, kind: kind, fails: r.fails,
		wrong: fmt.Appendf(nil, "a wrong guess for %s", a.Name), pending: map[string]uint64{}}
	m := &meter{base: base, acct: acct, stats: &clientStats{lat: map[protocol.Type][]time.Duration{}}, tot: r.tot}
	hc := &http.Client{Transport: m, Timeout: 60 * time.Second}
	conn, err := client.NewConn(r.url, token, hc)
	if err != nil {
		return nil, err
	}
	acct.signing = r.id.SigningKey
	w := &worker{run: r, acct: acct, meter: m, key: make([]byte, 32), rng: mrand.New(mrand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))}
	rand.Read(w.key)
	w.vc = &testclient.Client{
		RoundTrip: func(ctx context.Context, b []byte) ([]byte, error) {
			t, _ := protocol.PeekType(b)
			return conn.RoundTrip(ctx, b, t.String())
		},
		Identity: r.id, UserID: a.UserID, Stretch: r.stretch.stretch,
	}
	acct.password = w.nextPassword()
	if kind == product {
		if w.pkey, err = client.NewBackupKey(nil); err != nil {
			return nil, err
		}
		recipient, _ := w.pkey.AgeRecipient()
		cfg := &client.Config{Version: client.ConfigVersion, Mode: client.ModePassword, AgeRecipient: recipient,
			Server: r.url, Token: token, ProvisioningKey: hex.EncodeToString(r.pub), UserID: hex.EncodeToString(a.UserID),
			AllowInsecure: true}
		if w.pc, err = client.Connect(ctx, cfg, client.Options{HTTPClient: hc, AllowInsecure: true}); err != nil {
			return nil, err
		}
		w.key = w.pkey.Bytes()
	}
	return w, nil
}

// setup makes every worker and registers its account, a few at a time so
// that no login waits behind a long queue of Argon2id runs (its KE2 would
// expire). Ordinary accounts also make one wrong guess and one restore, so
// that both passwords' stretches are cached before the run.
func (r *runner) setup(ctx context.Context) {
	base := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        4 * r.cfg.Clients,
		MaxIdleConnsPerHost: 4 * r.cfg.Clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	r.base = base
	if err := r.fetchIdentity(ctx); err != nil {
		r.fails.add("setup", "-", "the vault's identity: %v", err)
		return
	}
	slots := make(chan struct{}, 2*r.cfg.ArgonSlots)
	var wg sync.WaitGroup
	for i, a := range r.accounts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			w, err := r.newWorker(ctx, i, a.Account, a.token, base)
			if err != nil {
				r.fails.add("setup", a.Account.Name, "%v", err)
				return
			}
			r.workers[i] = w
			steps := []func() error{}
			switch w.acct.kind {
			case product:
				steps = append(steps, func() error {
					r.productSlots <- struct{}{}
					defer func() { <-r.productSlots }()
					rc, err := w.pc.Register(ctx, w.acct.password, w.pkey, 0)
					if err == nil {
						w.acct.registered(rc)
						w.ops.registrations++
					}
					return err
				})
			case lockout:
				steps = append(steps, func() error { return w.register(ctx) })
			default:
				steps = append(steps, func() error { return w.register(ctx) },
					func() error { return w.wrongGuess(ctx) },
					func() error { return w.restore(ctx, false) })
			}
			for _, step := range steps {
				if err := retryBusy(step); err != nil {
					r.fails.add("setup", a.Account.Name, "%v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// fetchIdentity fetches the vault's identity bundle through cofferd and
// verifies it against the provisioning key.
func (r *runner) fetchIdentity(ctx context.Context) error {
	conn, err := client.NewConn(r.url, r.accounts[0].token, &http.Client{Transport: r.base, Timeout: time.Minute})
	if err != nil {
		return err
	}
	si, err := conn.Identity(ctx)
	if err != nil {
		return err
	}
	r.id, err = si.Verify(r.pub)
	return err
}

// retryBusy runs f again while it meets explicit backpressure.
func retryBusy(f func() error) error {
	for i := 0; ; i++ {
		err := f()
		wait, busy := busyWait(err)
		if !busy || i == 100 {
			return err
		}
		time.Sleep(wait)
	}
}
