package client

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/argon2"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// cheapKSF keeps vault tests fast: Argon2id with 1 pass, 64 KiB, 1 lane.
// The vault cannot tell; TestRealKeyStretchingIsSpecs covers the real one.
var cheapKSF = []uint64{1, 64, 1}

type fixture struct {
	t    *testing.T
	host *fakehost.Host
	cfg  *Config
	opts Options
	// log is the release log the configuration pins; the host's vault is
	// logged in it (its release and its bundle).
	log *devLog
}

func newFixture(t *testing.T, hostOpts fakehost.Options) *fixture {
	t.Helper()
	f := newUnloggedFixture(t, hostOpts)
	f.log.vault(hostBundle(t, f.host), f.host.VaultIdentity())
	return f
}

// newUnloggedFixture is newFixture with nothing in the log yet.
func newUnloggedFixture(t *testing.T, hostOpts fakehost.Options) *fixture {
	t.Helper()
	h := fakehost.New(t, hostOpts)
	k := randomKey(t)
	r, _ := k.AgeRecipient()
	log := newDevLog(t)
	f := &fixture{t: t, host: h, log: log, cfg: &Config{
		Version:         ConfigVersion,
		Mode:            ModePassword,
		AgeRecipient:    r,
		Server:          h.URL,
		Token:           h.Token,
		ProvisioningKey: h.ProvisioningKeyHex(),
		UserID:          hex.EncodeToString(h.UserID),
	}, opts: Options{AllowInsecure: hostOpts.Insecure, ksfParameters: cheapKSF, LogSource: log.src}}
	log.pin(f.cfg)
	return f
}

func (f *fixture) connect() *Client {
	f.t.Helper()
	c, err := Connect(context.Background(), f.cfg, f.opts)
	if err != nil {
		f.t.Fatalf("connect: %v", err)
	}
	return c
}

func (f *fixture) register(password string, limit uint) *BackupKey {
	f.t.Helper()
	k := randomKey(f.t)
	if _, err := f.connect().Register(context.Background(), []byte(password), k, limit); err != nil {
		f.t.Fatalf("register: %v", err)
	}
	return k
}

// login connects and logs in; an error of either is returned (a contact
// that the client refuses, a rollback its status shows, is not fatal here).
func (f *fixture) login(password string) (*Session, error) {
	f.t.Helper()
	c, err := Connect(context.Background(), f.cfg, f.opts)
	if err != nil {
		return nil, err
	}
	return c.Login(context.Background(), []byte(password))
}

func (f *fixture) mustLogin(password string, k *BackupKey) *Session {
	f.t.Helper()
	s, err := f.login(password)
	if err != nil {
		f.t.Fatalf("login: %v", err)
	}
	if !s.BackupKey().Equal(k) {
		f.t.Fatal("the vault released another key")
	}
	return s
}

func TestRegisterAndLogin(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	c := f.connect()
	if f.cfg.BundleHash == "" || f.cfg.Vault == nil || f.cfg.Vault.Name != "test vault" {
		t.Fatalf("bundle not pinned on first use: %+v", f.cfg)
	}
	k := randomKey(t)
	r, err := c.Register(context.Background(), []byte("correct horse"), k, 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != protocol.ReceiptRegistered || r.Limit != 5 || f.cfg.Limit != 5 || f.cfg.HighestStoreSequence != r.StoreSequence {
		t.Errorf("receipt %+v, config limit %d, highest %d", r, f.cfg.Limit, f.cfg.HighestStoreSequence)
	}
	seq := f.cfg.HighestStoreSequence

	s := f.mustLogin("correct horse", k)
	if s.Released.FailedSinceSuccess != 0 || s.Released.TriesLeft != 5 {
		t.Errorf("release receipt %+v", s.Released)
	}
	if f.cfg.HighestStoreSequence <= seq || f.cfg.LastReceipt.Kind != "released" {
		t.Errorf("trust state not updated: %d, %+v", f.cfg.HighestStoreSequence, f.cfg.LastReceipt)
	}
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !s.BackupKey().Equal(mustKey(t, make([]byte, 32))) {
		t.Error("Close did not wipe K")
	}

	// Registering again while the record lives is refused clearly.
	if _, err := f.connect().Register(context.Background(), []byte("other"), randomKey(t), 0); err == nil || !strings.Contains(err.Error(), "already has a key") {
		t.Errorf("second registration: %v", err)
	}
}

// Passwords are NFC-normalised: "é" typed as one code point or as e +
// combining accent is the same password.
func TestPasswordsAreNFC(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("caf\u00e9", 0)
	f.mustLogin("cafe\u0301", k).Close(context.Background())
	if _, err := f.connect().Register(context.Background(), nil, k, 0); !errors.Is(err, ErrEmptyPassword) {
		t.Errorf("empty password: %v", err)
	}
}

func TestWrongPasswordsAndLockout(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("right", 3)

	// One wrong, then right: the release shows the failed attempt.
	before := f.host.Counts()
	_, err := f.login("wrong")
	// A KE3 went out although the envelope did not open: on the wire a
	// wrong password looks like a right one.
	if after := f.host.Counts(); after[protocol.TypeLoginFinish] != before[protocol.TypeLoginFinish]+1 {
		t.Errorf("no KE3 sent after a wrong password")
	}
	var le *LoginError
	if !errors.As(err, &le) || !errors.Is(err, ErrWrongPassword) || le.Locked() {
		t.Fatalf("wrong password: %v", err)
	}
	if le.Receipt.TriesLeft != 2 || le.Receipt.FailedSinceSuccess != 0 ||
		!strings.Contains(err.Error(), "2 of 3 tries left") || !strings.Contains(err.Error(), "1 failed attempt since the last successful login") {
		t.Errorf("receipt %+v, message %q", le.Receipt, err)
	}
	s := f.mustLogin("right", k)
	if s.Released.FailedSinceSuccess != 1 {
		t.Errorf("release says %d failed attempts since the last success, want 1", s.Released.FailedSinceSuccess)
	}
	s.Close(context.Background())
	if f.cfg.LastReceipt.FailedSinceSuccess != 1 || f.cfg.LastReceipt.Kind != "released" {
		t.Errorf("last receipt %+v", f.cfg.LastReceipt)
	}

	// Three wrong: the third is the last try.
	for i, want := range []string{"2 of 3 tries left", "1 of 3 tries left", "that was the last try"} {
		_, err := f.login("wrong")
		if !errors.As(err, &le) || !strings.Contains(err.Error(), want) {
			t.Fatalf("wrong password %d: %v, want %q", i+1, err, want)
		}
		if le.Receipt.FailedSinceSuccess != uint(i) {
			t.Errorf("wrong password %d: %d failed before it", i+1, le.Receipt.FailedSinceSuccess)
		}
	}
	if !le.Locked() || !errors.Is(le, ErrLocked) || !strings.Contains(le.Error(), "for ever") {
		t.Errorf("last try: %v", le)
	}
	if f.cfg.LastReceipt.TriesLeft != 0 {
		t.Errorf("last receipt %+v", f.cfg.LastReceipt)
	}

	// Now even the right password meets a locked account.
	_, err = f.login("right")
	if !errors.As(err, &le) || !le.Locked() || le.Receipt.Kind != protocol.ReceiptLocked ||
		!strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), "for ever") || !strings.Contains(err.Error(), "3 failed attempts") {
		t.Fatalf("login on a locked account: %v", err)
	}
	if f.cfg.LastReceipt.Kind != "locked" {
		t.Errorf("last receipt %+v", f.cfg.LastReceipt)
	}
	// A locked record may be replaced by a new registration.
	k2 := f.register("fresh start", 0)
	f.mustLogin("fresh start", k2).Close(context.Background())
}

func TestChangePassword(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("old password", 4)
	s := f.mustLogin("old password", k)
	r, err := s.ChangePassword(context.Background(), []byte("new password"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Kind != protocol.ReceiptChanged || r.Limit != 4 || f.cfg.LastReceipt.Kind != "changed" {
		t.Errorf("change receipt %+v", r)
	}
	if _, err := s.ChangePassword(context.Background(), []byte("again"), 0); err == nil {
		t.Error("the session did not end after a change")
	}
	if _, err := f.login("old password"); !errors.Is(err, ErrWrongPassword) {
		t.Errorf("old password after change: %v", err)
	}
	f.mustLogin("new password", k).Close(context.Background())
}

func TestDelete(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 0)
	s := f.mustLogin("pw", k)
	r, err := s.Delete(context.Background())
	if err != nil || r.Kind != protocol.ReceiptDeleted {
		t.Fatalf("delete: %+v %v", r, err)
	}
	// Without a record the vault answers as for an unknown user, with a
	// receipt for another registration than the one this device knows:
	// the client says the key is gone and the password was not checked,
	// never "wrong password".
	_, err = f.login("pw")
	var le *LoginError
	if !errors.As(err, &le) || !errors.Is(err, ErrNotHeld) || errors.Is(err, ErrWrongPassword) ||
		!strings.Contains(err.Error(), "password was not checked") {
		t.Errorf("login after delete: %v", err)
	}
	f.register("pw", 0) // the account can start again
}

// A key deleted from another device (or dropped by the operator): this
// device's right password must not get "wrong password".
func TestAKeyDeletedElsewhereIsNotAWrongPassword(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 0)
	f.mustLogin("pw", k).Close(context.Background())
	other := *f
	cfg := *f.cfg
	other.cfg = &cfg // a second device of the same account
	s := other.mustLogin("pw", k)
	if _, err := s.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // and it stays so: not a lockout in disguise
		if _, err := f.login("pw"); !errors.Is(err, ErrNotHeld) {
			t.Fatalf("right password after a delete elsewhere, try %d: %v", i, err)
		}
	}
}

// A password changed from another device is a new registration; this
// device's login with the new password opens it and learns it.
func TestAPasswordChangedElsewhereStillOpens(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("old", 0)
	other := *f
	cfg := *f.cfg
	other.cfg = &cfg
	if _, err := other.mustLogin("old", k).ChangePassword(context.Background(), []byte("new"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.login("old"); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("the old password after a change elsewhere: %v", err)
	}
	f.mustLogin("new", k).Close(context.Background())
	if f.cfg.Generation != other.cfg.Generation {
		t.Fatal("this device did not learn the new registration")
	}
}

func TestIdentityPinning(t *testing.T) {
	ctx := context.Background()
	t.Run("changed bundle refused", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		f.connect()
		pinned := f.cfg.BundleHash
		f.host.Replace(fakehost.Options{Name: "another device"})
		f.log.vault(hostBundle(t, f.host), f.host.VaultIdentity()) // logged: TestChangedKeysNeedConsent has the unlogged case
		_, err := Connect(ctx, f.cfg, f.opts)
		if !errors.Is(err, ErrBundleChanged) || !strings.Contains(err.Error(), "another device") {
			t.Fatalf("changed bundle: %v", err)
		}
		if f.cfg.BundleHash != pinned {
			t.Error("the pin moved")
		}
		// Only an explicit unpin accepts it (or the user's consent,
		// TestChangedKeysNeedConsent).
		f.cfg.BundleHash = ""
		f.connect()
		if f.cfg.BundleHash == pinned || f.cfg.Vault.Name != "another device" {
			t.Error("new bundle not pinned")
		}
	})
	t.Run("bundle signed by another provisioning key", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		_, other, _ := ed25519.GenerateKey(rand.Reader)
		f.host.SetIdentity(f.host.SignIdentity(other, f.host.VaultIdentity()))
		if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrUntrustedBundle) {
			t.Fatalf("foreign bundle: %v", err)
		}
		if f.cfg.BundleHash != "" {
			t.Error("pinned an untrusted bundle")
		}
	})
	t.Run("damaged signature", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		var si protocol.SignedIdentity
		b := f.host.SignIdentity(nil, f.host.VaultIdentity())
		protocol.Decode(b, protocol.TypeIdentity, &si)
		si.Signature[0] ^= 1
		b, _ = protocol.Encode(protocol.TypeIdentity, &si)
		f.host.SetIdentity(b)
		if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrUntrustedBundle) {
			t.Fatalf("damaged bundle: %v", err)
		}
	})
	t.Run("unsigned bundle", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		body, _ := protocol.Marshal(f.host.VaultIdentity())
		b, _ := protocol.Encode(protocol.TypeIdentity, &protocol.SignedIdentity{Body: body, Signature: make([]byte, 64)})
		f.host.SetIdentity(b)
		if _, err := Connect(ctx, f.cfg, f.opts); !errors.Is(err, ErrUntrustedBundle) {
			t.Fatalf("unsigned bundle: %v", err)
		}
		f.host.SetIdentity([]byte("not an identity envelope"))
		if _, err := Connect(ctx, f.cfg, f.opts); err == nil {
			t.Fatal("garbage identity accepted")
		}
		if f.cfg.BundleHash != "" {
			t.Error("pinned something")
		}
	})
	t.Run("insecure vault", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{Insecure: true})
		f.opts.AllowInsecure = false
		_, err := Connect(ctx, f.cfg, f.opts)
		if !errors.Is(err, ErrInsecureVault) || !strings.Contains(err.Error(), "--insecure") {
			t.Fatalf("insecure vault without the flag: %v", err)
		}
		if f.cfg.BundleHash != "" {
			t.Error("pinned a refused bundle")
		}
		f.cfg.AllowInsecure = true // what `coffer init --insecure` records
		f.connect()
		f.cfg.AllowInsecure = false
		f.opts.AllowInsecure = true
		f.connect()
	})
}

func TestRollbackIsDetected(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 0)
	rollback := f.host.Snapshot()
	f.mustLogin("pw", k).Close(context.Background())
	f.login("wrong")
	highest := f.cfg.HighestStoreSequence

	rollback() // the wrong guess is forgotten by the vault
	_, err := f.login("pw")
	var rb *RollbackError
	if !errors.As(err, &rb) || rb.Highest != highest || rb.Got >= highest || !strings.Contains(err.Error(), "ROLLBACK") {
		t.Fatalf("login after a rollback: %v", err)
	}
	if f.cfg.HighestStoreSequence != highest {
		t.Error("the highest sequence went down")
	}
	if _, err := Connect(context.Background(), f.cfg, f.opts); !errors.As(err, &rb) {
		t.Errorf("a contact (its signed status) after a rollback: %v", err)
	}
}

// Off hardware the operator can roll store and anchor back together, and
// restart the vault until the store sequence passes the client's highest
// (other accounts' writes move it on). The account's own running total of
// attempts cannot pass what this device saw without new attempts, so the
// client notices the rollback of its record all the same.
func TestARolledBackRecordIsNoticedPastTheSequence(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 0)
	rollback := f.host.Snapshot()
	f.mustLogin("pw", k).Close(context.Background())
	f.login("wrong")
	f.login("wrong")
	rollback()                     // the guesses are forgotten
	f.cfg.HighestStoreSequence = 0 // as if the sequence had been pushed past it
	_, err := f.login("pw")
	var rb *RollbackError
	if !errors.As(err, &rb) || !strings.Contains(err.Error(), "attempts") {
		t.Fatalf("login on a rolled-back record: %v", err)
	}
}

func TestStatus(t *testing.T) {
	f := newFixture(t, fakehost.Options{Insecure: true})
	f.register("pw", 0)
	st, err := f.connect().Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Insecure || st.StoreSequence != f.cfg.HighestStoreSequence {
		t.Errorf("status %+v, highest %d", st, f.cfg.HighestStoreSequence)
	}
}

// replayFirstReply makes the host answer every request of type typ with the
// vault's reply to the first one, as a host replaying old replies would.
func replayFirstReply(f *fixture, typ protocol.Type) {
	var (
		mu  sync.Mutex
		old []byte
	)
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, got protocol.Type, body []byte) bool {
		if got != typ {
			return false
		}
		reply := f.host.Vault(r.Context(), body)
		mu.Lock()
		defer mu.Unlock()
		if old == nil {
			old = reply
		}
		w.Write(old)
		return true
	})
}

// The host replays the attempt receipt of an earlier login: it is signed,
// but for another KE1, and the client refuses it.
func TestReplayedReceiptRefused(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 0)
	replayFirstReply(f, protocol.TypeLoginStart)
	f.mustLogin("pw", k).Close(context.Background())
	if _, err := f.login("pw"); !errors.Is(err, ErrBadReceipt) || !strings.Contains(err.Error(), "request hash") {
		t.Fatalf("replayed login reply: %v", err)
	}
}

// Receipt checks on their own, with a vault key the test holds.
func TestReceiptChecks(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	cfg := &Config{HighestStoreSequence: 10}
	c := &Client{cfg: cfg, id: &protocol.Identity{SigningKey: pub}, userID: []byte("me")}
	sign := func(r protocol.Receipt) *protocol.SignedReceipt {
		sr, err := protocol.SignReceipt(priv, &r)
		if err != nil {
			t.Fatal(err)
		}
		return &sr
	}
	good := protocol.Receipt{Kind: protocol.ReceiptAttempt, UserID: []byte("me"), Generation: 1 << 63, Limit: 10, TriesLeft: 9, StoreSequence: 11}
	if r, err := c.verify(sign(good), protocol.ReceiptAttempt); err != nil || c.accept(r) != nil || cfg.HighestStoreSequence != 11 {
		t.Fatalf("good receipt: %v", err)
	}
	other := good
	other.UserID = []byte("you")
	if _, err := c.verify(sign(other), protocol.ReceiptAttempt); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("another user's receipt: %v", err)
	}
	if _, err := c.verify(sign(good), protocol.ReceiptReleased); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("receipt of another kind: %v", err)
	}
	bad := sign(good)
	bad.Signature[3] ^= 1
	if _, err := c.verify(bad, protocol.ReceiptAttempt); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("bad signature: %v", err)
	}
	_, foreign, _ := ed25519.GenerateKey(rand.Reader)
	fsr, _ := protocol.SignReceipt(foreign, &good)
	if _, err := c.verify(&fsr, protocol.ReceiptAttempt); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("receipt signed by another vault: %v", err)
	}
	if _, err := c.verify(nil, protocol.ReceiptAttempt); !errors.Is(err, ErrBadReceipt) {
		t.Errorf("no receipt: %v", err)
	}
	old := good
	old.StoreSequence = 10
	r, _ := c.verify(sign(old), protocol.ReceiptAttempt)
	var rb *RollbackError
	if err := c.accept(r); !errors.As(err, &rb) || rb.Highest != 11 || rb.Got != 10 {
		t.Errorf("lower sequence: %v", err)
	}
	same := good
	if r, _ := c.verify(sign(same), protocol.ReceiptAttempt); c.accept(r) != nil {
		t.Error("an equal sequence is not a rollback (unknown users and locks commit nothing)")
	}
}

func TestServerErrors(t *testing.T) {
	ctx := context.Background()
	answer := func(status int, retryAfter string) fakehost.Interceptor {
		return func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeLoginStart && typ != protocol.TypeLoginFinish {
				return false
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			w.WriteHeader(status)
			w.Write([]byte(`{"error": "injected"}`))
			return true
		}
	}
	for _, tc := range []struct {
		status       int
		retry        string
		sentinel     error
		wantInErrMsg string
	}{
		{429, "7", ErrRateLimited, "try again in 7s"},
		{503, "2", ErrUnavailable, "unavailable"},
		{504, "", ErrTimeout, "may have counted as a login attempt"},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			f := newFixture(t, fakehost.Options{})
			f.register("pw", 0)
			c := f.connect()
			f.host.Intercept(answer(tc.status, tc.retry))
			_, err := c.Login(ctx, []byte("pw"))
			if !errors.Is(err, tc.sentinel) || !strings.Contains(err.Error(), tc.wantInErrMsg) || !strings.Contains(err.Error(), "injected") {
				t.Fatalf("got %v", err)
			}
			var se *ServerError
			if errors.As(err, &se); tc.retry != "" && se.RetryAfter == 0 {
				t.Error("Retry-After lost")
			}
			if n := f.host.Counts()[protocol.TypeLoginStart]; n != 1 {
				t.Errorf("%d login-starts sent: the client retried", n)
			}
		})
	}
	t.Run("504 on the second step", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		f.register("pw", 0)
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeLoginFinish {
				return false
			}
			w.WriteHeader(http.StatusGatewayTimeout)
			return true
		})
		_, err := f.login("pw")
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "login-finish") {
			t.Fatalf("got %v", err)
		}
		c := f.host.Counts()
		if c[protocol.TypeLoginStart] != 1 || c[protocol.TypeLoginFinish] != 1 {
			t.Errorf("requests %v: the client retried", c)
		}
	})
	t.Run("401", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		f.cfg.Token = "not-a-token"
		_, err := Connect(ctx, f.cfg, f.opts)
		if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "token") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("403", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		_, otherUser := f.host.AddAccount()
		f.cfg.UserID = hex.EncodeToString(otherUser) // this token, another account's id
		_, err := f.login("pw")
		if !errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "another account") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("vault busy", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeLoginStart {
				return false
			}
			w.Write(protocol.EncodeError(protocol.Errorf(protocol.CodeBusy, "queue full")))
			return true
		})
		_, err := f.login("pw")
		if !errors.Is(err, &protocol.Error{Code: protocol.CodeBusy}) {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("account", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		conn, err := NewConn(f.host.URL, f.host.Token, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := conn.Account(ctx)
		if err != nil || !bytes.Equal(a.UserID, f.host.UserID) {
			t.Fatalf("account %+v %v", a, err)
		}
	})
}

// The client's OPAQUE, with SPEC.md's real Argon2id, is interoperable with
// the vault's own independent client given argon2.IDKey(out, nil, 3,
// 65536, 4, 32): so the parameters are the specified ones, not merely
// bytemare's defaults agreeing with themselves.
func TestRealKeyStretchingIsSpecs(t *testing.T) {
	if testing.Short() {
		t.Skip("Argon2id with 64 MiB, twice")
	}
	f := newFixture(t, fakehost.Options{})
	f.opts.ksfParameters = nil
	k := f.register("the real thing", 0)

	c := &testclient.Client{
		RoundTrip: func(ctx context.Context, req []byte) ([]byte, error) { return f.host.Vault(ctx, req), nil },
		Identity:  f.host.VaultIdentity(),
		UserID:    f.host.UserID,
		Stretch:   func(out []byte) []byte { return argon2.IDKey(out, nil, 3, 64*1024, 4, 32) },
	}
	s, _, err := c.Login(context.Background(), []byte("the real thing"))
	if err != nil {
		t.Fatalf("the vault's client with SPEC's Argon2id: %v", err)
	}
	if !bytes.Equal(s.BackupKey, k.Bytes()) {
		t.Fatal("another key")
	}
	// And a different stretch does not open it.
	c.Stretch = func(out []byte) []byte { return argon2.IDKey(out, nil, 3, 64*1024, 1, 32) }
	if _, _, err := c.Login(context.Background(), []byte("the real thing")); !errors.Is(err, testclient.ErrWrongPassword) {
		t.Fatalf("another Argon2id lane count logged in: %v", err)
	}
	// Our client with the real parameters logs in too.
	f.mustLogin("the real thing", k).Close(context.Background())
}

// Parallel logins with the right password never say the key is erased
// while a login can still restore it, and the key is there afterwards.
func TestParallelRightPasswordsNeverSayErased(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 3)
	for round := 0; round < 5; round++ {
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cfg := *f.cfg
				c, err := Connect(context.Background(), &cfg, f.opts)
				if err == nil {
					var s *Session
					if s, err = c.Login(context.Background(), []byte("pw")); err == nil {
						err = s.Close(context.Background())
					}
				}
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if errors.Is(err, ErrLocked) || errors.Is(err, ErrWrongPassword) ||
				(err != nil && strings.Contains(err.Error(), "has erased")) {
				t.Errorf("round %d: a parallel login with the right password said: %v", round, err)
			}
		}
		f.mustLogin("pw", k).Close(context.Background())
	}
}

// Attempts this device did not make are called so, once it has a receipt
// to count from.
func TestAttemptsNotFromThisDevice(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	k := f.register("pw", 10)
	f.mustLogin("pw", k).Close(context.Background())
	other := *f
	cfg := *f.cfg
	other.cfg = &cfg
	for i := 0; i < 2; i++ {
		other.login("not it")
	}
	s := f.mustLogin("pw", k)
	defer s.Close(context.Background())
	if !s.NotFromThisKnown || s.NotFromThisDevice != 2 || s.Released.FailedSinceSuccess != 2 {
		t.Fatalf("after 2 guesses elsewhere: not from this device %d (known %v), failed %d",
			s.NotFromThisDevice, s.NotFromThisKnown, s.Released.FailedSinceSuccess)
	}
	_, err := f.login("typo")
	var le *LoginError
	if !errors.As(err, &le) || le.NotFromThisDevice != 0 || !le.NotFromThisKnown {
		t.Fatalf("own wrong password: %+v", err)
	}
}
