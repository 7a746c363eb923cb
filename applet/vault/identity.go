package vault

import (
	"context"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/fxamacker/cbor/v2"
)

// ErrNotInitialised is returned by New when the store holds no vault identity
// and Options.Create is not set.
var ErrNotInitialised = errors.New("vault: store holds no vault identity (initialise it first)")

// secrets are the vault's long-term keys. They are generated inside the vault
// and kept only in its store, which seals them under the device-unique key.
type secrets struct {
	SigningSeed []byte `cbor:"1,keyasint"` // Ed25519 seed: receipts, status
	AKEPrivate  []byte `cbor:"2,keyasint"` // ristretto255 OPAQUE server key
	HPKESeed    []byte `cbor:"3,keyasint"` // X25519 registration channel key
	FakeSeed    []byte `cbor:"4,keyasint"` // fake records for unknown and locked users
	AKEPublic   []byte `cbor:"5,keyasint"` // kept so loading costs no scalar multiplication
}

// identity is the vault's keys, decoded and ready to use.
type identity struct {
	signing  ed25519.PrivateKey
	ake      opaque.ServerKeys
	hpke     hpke.PrivateKey
	hpkePub  []byte
	fakeSeed []byte
}

func generateSecrets(random io.Reader) (*secrets, error) {
	s := &secrets{}
	for _, b := range []*[]byte{&s.SigningSeed, &s.HPKESeed, &s.FakeSeed} {
		*b = make([]byte, 32)
		if _, err := io.ReadFull(random, *b); err != nil {
			return nil, err
		}
	}
	ake, err := opaque.GenerateServerKeys(random)
	if err != nil {
		return nil, err
	}
	s.AKEPrivate = append([]byte(nil), ake.Private[:]...)
	s.AKEPublic = append([]byte(nil), ake.Public[:]...)
	return s, nil
}

func (s *secrets) open() (*identity, error) {
	if len(s.SigningSeed) != ed25519.SeedSize || len(s.AKEPrivate) != opaque.ScalarSize ||
		len(s.AKEPublic) != opaque.ElementSize || len(s.HPKESeed) != 32 || len(s.FakeSeed) != 32 {
		return nil, errors.New("vault: stored identity is incomplete")
	}
	id := &identity{signing: ed25519.NewKeyFromSeed(s.SigningSeed), fakeSeed: s.FakeSeed}
	copy(id.ake.Private[:], s.AKEPrivate)
	copy(id.ake.Public[:], s.AKEPublic)
	if err := id.ake.Validate(); err != nil {
		return nil, fmt.Errorf("vault: stored AKE key: %w", err)
	}
	var err error
	if id.hpke, err = protocol.HPKEKeyFromBytes(s.HPKESeed); err != nil {
		return nil, fmt.Errorf("vault: stored HPKE key: %w", err)
	}
	id.hpkePub = id.hpke.PublicKey().Bytes()
	return id, nil
}

// loadIdentity reads the vault's secrets from the store, creating and
// committing them first when create is set and there are none.
func loadIdentity(ctx context.Context, st Store, random io.Reader, create bool) (*identity, error) {
	b, found, err := st.Get([]byte{keyIdentity})
	if err != nil {
		return nil, fmt.Errorf("vault: reading identity: %w", err)
	}
	var s secrets
	switch {
	case found:
		if err := recordDec.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("vault: stored identity does not decode: %w", err)
		}
	case !create:
		return nil, ErrNotInitialised
	default:
		g, err := generateSecrets(random)
		if err != nil {
			return nil, err
		}
		s = *g
		b, err := recordEnc.Marshal(&s)
		if err != nil {
			return nil, err
		}
		if err := st.Put([]byte{keyIdentity}, b); err != nil {
			return nil, err
		}
		if _, err := st.Commit(ctx); err != nil {
			return nil, fmt.Errorf("vault: committing new identity: %w", err)
		}
	}
	return s.open()
}

// Identity returns the vault's identity, unsigned: what the provisioning tool
// signs.
func (v *Vault) Identity() *protocol.Identity {
	return &protocol.Identity{
		Version:      protocol.Version,
		SigningKey:   append([]byte(nil), v.id.signing.Public().(ed25519.PublicKey)...),
		AKEKey:       append([]byte(nil), v.id.ake.Public[:]...),
		HPKEKey:      append([]byte(nil), v.id.hpkePub...),
		FirmwareHash: append([]byte(nil), v.opts.FirmwareHash...),
		MaxLimit:     v.opts.MaxLimit,
		Insecure:     v.opts.Insecure,
		Name:         v.opts.Name,
	}
}

var errNotThisIdentity = errors.New("vault: the signed identity is not this vault's identity")

// InstallIdentity stores a provisioning signature over this vault's identity.
// The vault checks that the signed bundle is exactly its own identity (keys,
// firmware, limit, insecure flag), so a bundle made for another device or an
// older firmware is refused; it cannot check the provisioning key itself,
// which clients pin. Reached over the protocol too (install-identity), so the
// host can install a bundle; a bundle signed by any key but the one clients
// pin only makes them refuse the vault, which the host could cause anyway.
func (v *Vault) InstallIdentity(ctx context.Context, signed protocol.SignedIdentity) error {
	var got protocol.Identity
	if err := protocol.Unmarshal(signed.Body, &got); err != nil {
		return err
	}
	want, err := protocol.Marshal(v.Identity())
	if err != nil {
		return err
	}
	if string(want) != string(signed.Body) {
		return errNotThisIdentity
	}
	b, err := cbor.Marshal(signed)
	if err != nil {
		return err
	}
	if err := v.store.Put([]byte{keyBundle}, b); err != nil {
		return err
	}
	if _, err := v.store.Commit(ctx); err != nil {
		return err
	}
	v.bundle.Store(&signed)
	return nil
}

func (v *Vault) loadBundle() error {
	b, found, err := v.store.Get([]byte{keyBundle})
	if err != nil || !found {
		return err
	}
	var signed protocol.SignedIdentity
	if err := recordDec.Unmarshal(b, &signed); err != nil {
		return fmt.Errorf("vault: stored identity bundle does not decode: %w", err)
	}
	// A bundle signed for an earlier firmware or other options is stale:
	// serve none rather than a wrong one.
	want, err := protocol.Marshal(v.Identity())
	if err == nil && string(want) == string(signed.Body) {
		v.bundle.Store(&signed)
	}
	return nil
}
