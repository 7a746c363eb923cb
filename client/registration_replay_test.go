package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/poly1305"

	"github.com/cofferhsm/coffer/client/internal/fakehost"
	"github.com/cofferhsm/coffer/protocol"
)

// The attacker's tool works: two messages sealed under one key and nonce
// give away the Poly1305 key, and a third message then forges a tag that
// ChaCha20-Poly1305 accepts. Without this, a failed attack below would
// prove nothing.
func TestPoly1305KeyRecoveryForgesUnderAReusedNonce(t *testing.T) {
	key, nonce := make([]byte, 32), make([]byte, 12)
	rand.Read(key)
	aead, _ := chacha20poly1305.New(key)
	var msgs, tags [][]byte
	for range 3 {
		aad, pt := make([]byte, 16), make([]byte, 71)
		rand.Read(aad)
		rand.Read(pt)
		sealed := aead.Seal(nil, nonce, pt, aad)
		msgs = append(msgs, aeadMACInput(aad, sealed[:len(pt)]))
		tags = append(tags, sealed[len(pt):])
	}
	keys := recoverPoly1305Keys(msgs, tags)
	if len(keys) != 1 {
		t.Fatalf("recovered %d Poly1305 keys, want 1", len(keys))
	}
	aad, ct := []byte("any aad of the attacker's"), make([]byte, 40)
	var tag [16]byte
	poly1305.Sum(&tag, aeadMACInput(aad, ct), &keys[0])
	if _, err := aead.Open(nil, nonce, append(ct, tag[:]...), aad); err != nil {
		t.Fatalf("forged message refused: %v", err)
	}
	// Under three different nonces there is no common key to find.
	msgs, tags = msgs[:0], tags[:0]
	for i := range 3 {
		nonce[0] = byte(i + 1)
		aad, pt := make([]byte, 16), make([]byte, 71)
		sealed := aead.Seal(nil, nonce, pt, aad)
		msgs = append(msgs, aeadMACInput(aad, sealed[:len(pt)]))
		tags = append(tags, sealed[len(pt):])
	}
	if keys := recoverPoly1305Keys(msgs, tags); len(keys) != 0 {
		t.Fatalf("recovered a key common to three nonces: %x", keys)
	}
}

// registerStartReplies sends one RegisterStart to the vault n times, as a
// host replaying it would, and returns the replies.
func registerStartReplies(t *testing.T, f *fixture, ctx context.Context, body []byte, n int) []protocol.RegisterStartReply {
	replies := make([]protocol.RegisterStartReply, n)
	for i := range replies {
		if err := protocol.Decode(f.host.Vault(ctx, body), protocol.TypeRegisterStart, &replies[i]); err != nil {
			t.Errorf("replayed register-start %d: %v", i, err)
		}
	}
	return replies
}

// The host replays a client's RegisterStart to the vault three times and
// gets three replies, each a fresh OPRF evaluation under its own handle.
// If they were sealed under one key and nonce, the host would learn the
// keystream (the reply ends with the vault's public AKE key) and the
// one-time Poly1305 key, and could hand the client reply 2's evaluation
// under reply 1's handle, re-tagged. The client would build its record
// from an OPRF key the vault's registration 1 does not hold; the vault
// stores it and signs a receipt the client accepts, and the right password
// never opens the record again: the key is silently lost.
//
// The replies must be sealed under unrelated keys and nonces, and the
// client must refuse whatever the host makes of them.
func TestReplayedRegisterStartCannotForgeTheReply(t *testing.T) {
	f := newFixture(t, fakehost.Options{})
	ake := f.host.VaultIdentity().AKEKey
	var (
		mu              sync.Mutex
		sharedKeystream bool
		recovered       int
		replies         int
	)
	f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
		if typ != protocol.TypeRegisterStart {
			return false
		}
		rs := registerStartReplies(t, f, r.Context(), body, 3)
		var msgs, tags, cts, streams [][]byte
		for _, m := range rs {
			if len(m.Sealed) < 16+len(ake) {
				t.Errorf("reply too short: %d bytes", len(m.Sealed))
				return false
			}
			ct, tag := m.Sealed[:len(m.Sealed)-16], m.Sealed[len(m.Sealed)-16:]
			cts, tags = append(cts, ct), append(tags, tag)
			msgs = append(msgs, aeadMACInput(m.Handle, ct))
			// The plaintext ends with the pinned AKE key: known to the host.
			stream := bytes.Clone(ct[len(ct)-len(ake):])
			for i := range stream {
				stream[i] ^= ake[i]
			}
			streams = append(streams, stream)
		}
		keys := recoverPoly1305Keys(msgs, tags)
		// The forgery: registration 2's evaluation under registration 1's
		// handle, tagged with the recovered key if there is one (else
		// with registration 2's own tag, which is the host's best guess).
		forged := rs[0]
		tag := bytes.Clone(tags[1])
		if len(keys) == 1 {
			var t16 [16]byte
			poly1305.Sum(&t16, aeadMACInput(rs[0].Handle, cts[1]), &keys[0])
			tag = t16[:]
		}
		forged.Sealed = append(bytes.Clone(cts[1]), tag...)
		mu.Lock()
		sharedKeystream = bytes.Equal(streams[0], streams[1]) || bytes.Equal(streams[1], streams[2])
		recovered, replies = len(keys), len(rs)
		mu.Unlock()
		b, err := protocol.Encode(typ, &forged)
		if err != nil {
			t.Error(err)
			return false
		}
		w.Write(b)
		return true
	})
	_, err := f.connect().Register(context.Background(), []byte("pw"), randomKey(t), 0)
	f.host.Intercept(nil)

	mu.Lock()
	defer mu.Unlock()
	if replies != 3 {
		t.Fatalf("the host saw %d replies", replies)
	}
	if sharedKeystream {
		t.Error("replies to a replayed register-start share a keystream: the vault reused a key and nonce")
	}
	if recovered != 0 {
		t.Errorf("the host recovered %d Poly1305 key(s) from the replies", recovered)
	}
	if err == nil {
		_, lerr := f.login("pw")
		t.Fatalf("the client accepted a register-start reply the host forged from replays; "+
			"a login with the right password then gives: %v", lerr)
	}
	if !strings.Contains(err.Error(), "does not open") {
		t.Errorf("forged reply refused with %q, want the reply not to open", err)
	}
	// Nothing was stored: the user registers afresh and the password works.
	k := f.register("pw", 0)
	f.mustLogin("pw", k).Close(context.Background())
}

// The replies to RegisterFinish cannot be replayed either: not the one of
// an earlier registration, not a register-start reply in its place, and a
// RegisterFinish replayed to the vault is refused without touching the
// record.
func TestReplayedRegisterFinishRepliesAreRefused(t *testing.T) {
	ctx := context.Background()
	t.Run("reply of an earlier registration", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		var (
			mu  sync.Mutex
			old []byte
		)
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeRegisterFinish {
				return false
			}
			mu.Lock()
			defer mu.Unlock()
			if old == nil {
				old = f.host.Vault(r.Context(), body)
				w.Write(old)
			} else {
				w.Write(old) // the new finish never reaches the vault
			}
			return true
		})
		k := f.register("first", 0)
		s := f.mustLogin("first", k)
		if _, err := s.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := f.connect().Register(ctx, []byte("second"), randomKey(t), 0)
		if !errors.Is(err, ErrBadReceipt) || !strings.Contains(err.Error(), "does not open") {
			t.Fatalf("an earlier registration's reply: %v", err)
		}
	})
	t.Run("register-start reply as the finish reply", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		var (
			mu    sync.Mutex
			start protocol.RegisterStartReply
		)
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			mu.Lock()
			defer mu.Unlock()
			switch typ {
			case protocol.TypeRegisterStart:
				reply := f.host.Vault(r.Context(), body)
				if err := protocol.Decode(reply, typ, &start); err != nil {
					t.Error(err)
				}
				w.Write(reply)
			case protocol.TypeRegisterFinish:
				f.host.Vault(r.Context(), body)
				b, _ := protocol.Encode(typ, &protocol.SealedReply{Sealed: start.Sealed})
				w.Write(b)
			default:
				return false
			}
			return true
		})
		_, err := f.connect().Register(ctx, []byte("pw"), randomKey(t), 0)
		if !errors.Is(err, ErrBadReceipt) || !strings.Contains(err.Error(), "does not open") {
			t.Fatalf("the start reply as the finish reply: %v", err)
		}
	})
	t.Run("register-finish replayed to the vault", func(t *testing.T) {
		f := newFixture(t, fakehost.Options{})
		var (
			mu     sync.Mutex
			replay []byte
		)
		f.host.Intercept(func(w http.ResponseWriter, r *http.Request, typ protocol.Type, body []byte) bool {
			if typ != protocol.TypeRegisterFinish {
				return false
			}
			reply := f.host.Vault(r.Context(), body)
			mu.Lock()
			replay = f.host.Vault(r.Context(), body)
			mu.Unlock()
			w.Write(reply)
			return true
		})
		k := f.register("pw", 0)
		registered := *f.cfg.LastReceipt
		mu.Lock()
		err := protocol.Decode(replay, protocol.TypeRegisterFinish, &protocol.SealedReply{})
		mu.Unlock()
		if !errors.Is(err, &protocol.Error{Code: protocol.CodeUnknownHandle}) {
			t.Fatalf("replayed register-finish: %v", err)
		}
		if st, err := f.connect().Status(ctx); err != nil || st.StoreSequence != registered.StoreSequence {
			t.Errorf("the replayed finish committed something: status %+v, %v; registered at %d", st, err, registered.StoreSequence)
		}
		s := f.mustLogin("pw", k)
		if s.Released.Generation != registered.Generation {
			t.Errorf("the record changed under a replayed finish: generation %d, registered %d", s.Released.Generation, registered.Generation)
		}
		s.Close(ctx)
	})
}
