package host

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/cofferhsm/coffer/host/state"
)

// A messenger that authenticates its users itself fronts cofferd: its
// backend calls cofferd's front listener on a user's behalf, over mutual
// TLS with a client certificate from the messenger's private CA, and names
// the user in Coffer-Front-User instead of presenting a bearer token. The
// user id ID is the account state.FrontPrefix+ID ("f."+ID), made at its
// first request; token accounts may not take such a name. cofferd then
// trusts the front for who the user is, as the token path trusts whoever
// holds a token; the vault still counts every wrong guess. The public
// listener never reads Coffer-Front-User.

// FrontUserHeader names the messenger's user a fronted request is for.
const FrontUserHeader = "Coffer-Front-User"

// frontTokenDomain separates the token hash of fronted accounts.
const frontTokenDomain = "coffer front account token hash v1\x00"

// frontTokenHash is the token hash of the fronted account name: the
// SHA-256 of a string longer than a token, so that no token (tokenSize
// bytes, hashed as they are) has it unless SHA-256 has a second preimage.
// The token path cannot reach a fronted account, and the front path knows
// an account it made: one whose hash is another is a token account of the
// same name (made before names with the prefix were refused) and is not
// served as the fronted user.
func frontTokenHash(name string) [sha256.Size]byte {
	return sha256.Sum256([]byte(frontTokenDomain + name))
}

// LoadFrontTLS reads the front listener's certificate, its key and the
// messenger's CA (exactly one CA certificate, as the peer CA) and returns
// the listener's TLS: TLS 1.3, a client certificate from that CA required.
func LoadFrontTLS(certFile, keyFile, caFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("front certificate: %w", err)
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("front CA: %w", err)
	}
	ca, err := parseCA(b, "the messenger's front CA")
	if err != nil {
		return nil, fmt.Errorf("front CA %s: %w", caFile, err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	return FrontServerTLS(cert, pool), nil
}

// FrontServerTLS is the front listener's TLS: cert, and a client
// certificate (for client authentication) verified against ca required of
// every connection.
func FrontServerTLS(cert tls.Certificate, ca *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca,
		MinVersion:   tls.VersionTLS13,
		NextProtos:   []string{"http/1.1"},
	}
}

// frontKey marks a request that came in on the front listener; its value
// is the user id named (frontContext).
type frontKey struct{}

type frontContext struct{ user string }

func frontOf(ctx context.Context) *frontContext {
	f, _ := ctx.Value(frontKey{}).(*frontContext)
	return f
}

// parseFrontUser reads Coffer-Front-User: one value, a valid user id, or
// none ("", nil).
func parseFrontUser(h http.Header) (string, error) {
	vs := h.Values(FrontUserHeader)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", fmt.Errorf("%s given %d times", FrontUserHeader, len(vs))
	}
	if err := state.CheckFrontUser(vs[0]); err != nil {
		return "", fmt.Errorf("%s: %w", FrontUserHeader, err)
	}
	return vs[0], nil
}

// FrontHandler serves the API (as Handler) to the messenger's backend.
// Serve it only on a listener with FrontServerTLS: it refuses every request
// that did not come with a verified client certificate. The account is the
// one Coffer-Front-User names; a request with an Authorization header is
// refused (400), so that a backend passing a user's token along learns it
// at once instead of being served as someone else.
func (s *Server) FrontHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		o := &outcome{typ: "front"}
		refuse := func(status int, msg string) {
			defer s.record(r, o, start)
			o.status, o.note = status, msg
			writeError(w, status, msg, "")
		}
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
			refuse(http.StatusForbidden, "front: a verified client certificate from the messenger's CA is required")
			return
		}
		if _, ok := r.Header["Authorization"]; ok {
			refuse(http.StatusBadRequest, "front: no Authorization on the front listener: name the user in "+FrontUserHeader)
			return
		}
		user, err := parseFrontUser(r.Header)
		if err != nil {
			refuse(http.StatusBadRequest, "front: "+err.Error())
			return
		}
		ctx := context.WithValue(r.Context(), frontKey{}, &frontContext{user: user})
		s.handler.ServeHTTP(w, r.WithContext(ctx))
	})
}

// errNotFronted is an account of a fronted user's name that the front did
// not make.
var errNotFronted = errors.New("the account of this front user id was not made by the front listener")

// frontAccount returns the account of a fronted user id, made at its first
// request: a random user id and frontTokenHash. Concurrent first requests,
// at this host or others sharing the store, make one account: the store
// refuses the second name (ErrExists), which then reads the first back.
func (s *Server) frontAccount(ctx context.Context, id string) (Account, error) {
	name := state.FrontPrefix + id
	want := frontTokenHash(name)
	check := func(a Account) (Account, error) {
		if subtle.ConstantTimeCompare(a.TokenSHA256[:], want[:]) != 1 {
			return Account{}, errNotFronted
		}
		return a, nil
	}
	a, err := s.accountByName(ctx, name)
	if err == nil {
		return check(a)
	}
	if !errors.Is(err, state.ErrNotFound) {
		return Account{}, fmt.Errorf("%w: %v", errStore, err)
	}
	for try := 0; try < 3; try++ {
		a = Account{Name: name, TokenSHA256: want, Created: time.Now().UTC().Truncate(time.Second), UserID: make([]byte, UserIDSize)}
		if _, err := rand.Read(a.UserID); err != nil {
			return Account{}, err
		}
		err := s.cfg.Store.AddAccount(ctx, a)
		if err == nil {
			s.cache.byName.put(name, a, time.Now())
			s.metrics.frontAccounts.Inc()
			return a, nil
		}
		if !errors.Is(err, state.ErrExists) {
			return Account{}, fmt.Errorf("%w: %v", errStore, err)
		}
		// Made meanwhile (another request, another host), or a user id
		// drawn twice: read it back, or draw again.
		got, lerr := s.cfg.Store.AccountByName(ctx, name)
		if lerr == nil {
			s.cache.byName.put(name, got, time.Now())
			return check(got)
		}
		if !errors.Is(lerr, state.ErrNotFound) {
			return Account{}, fmt.Errorf("%w: %v", errStore, lerr)
		}
	}
	return Account{}, fmt.Errorf("%w: could not make account %q", errStore, name)
}
