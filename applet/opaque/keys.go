package opaque

import (
	"fmt"
	"io"
)

// OPRFKey is a per-credential OPRF key: the canonical encoding of a non-zero
// ristretto255 scalar. It is secret; the vault keeps it in the sealed record.
type OPRFKey [ScalarSize]byte

// NewOPRFKey draws a fresh uniform OPRF key. In production the vault uses one
// per registration (RFC 9807 allows per-client keys), so evaluations on one
// user's key say nothing about another's, and a registration never evaluates
// an existing user's key.
func NewOPRFKey(rand io.Reader) (OPRFKey, error) {
	s, err := randomScalar(rand)
	if err != nil {
		return OPRFKey{}, err
	}
	defer wipeScalar(s)
	return OPRFKey(encodeScalar(s)), nil
}

// minSeedSize is the shortest OPRF or fake-record seed accepted: 256 bits,
// so that the seed, not its length, bounds security. RFC 9807 uses Nh = 64.
const minSeedSize = 32

// DeriveOPRFKey is RFC 9807's per-credential OPRF key derivation:
//
//	seed = Expand(oprf_seed, credential_identifier || "OprfKey", Nok)
//	(oprf_key, _) = DeriveKeyPair(seed, "OPAQUE-DeriveKeyPair")
//
// The vault uses it for fake records (stable per unknown user id) and the
// tests use it for the RFC vectors.
func DeriveOPRFKey(oprfSeed, credentialIdentifier []byte) (OPRFKey, error) {
	if len(oprfSeed) < minSeedSize {
		return OPRFKey{}, fmt.Errorf("%w: OPRF seed is %d bytes, want at least %d", ErrInvalidArgument, len(oprfSeed), minSeedSize)
	}
	if len(credentialIdentifier) == 0 {
		return OPRFKey{}, fmt.Errorf("%w: empty credential identifier", ErrInvalidArgument)
	}
	seed := expand(oprfSeed, concat(credentialIdentifier, []byte(labelOPRFKey)), SeedSize)
	defer wipe(seed)
	s, _, err := deriveKeyPair(seed, labelDeriveKeyPair)
	if err != nil {
		return OPRFKey{}, err
	}
	defer wipeScalar(s)
	return OPRFKey(encodeScalar(s)), nil
}

// ServerKeys is the vault's long-term AKE key pair: Private is the canonical
// encoding of a non-zero scalar, Public the encoding of Private times the
// generator. Public is what clients pin through the identity bundle.
type ServerKeys struct {
	Private [ScalarSize]byte
	Public  [ElementSize]byte
}

// GenerateServerKeys draws a fresh AKE key pair (RFC 9807's GenerateAuthKeyPair).
func GenerateServerKeys(rand io.Reader) (ServerKeys, error) {
	s, err := randomScalar(rand)
	if err != nil {
		return ServerKeys{}, err
	}
	defer wipeScalar(s)
	var k ServerKeys
	k.Private = encodeScalar(s)
	copy(k.Public[:], encodeElement(g.NewElement().MulGen(s)))
	return k, nil
}

// DeriveServerKeys is RFC 9807's DeriveDiffieHellmanKeyPair(seed), used for
// the test vectors. seed must be SeedSize bytes.
func DeriveServerKeys(seed []byte) (ServerKeys, error) {
	s, pub, err := deriveDiffieHellmanKeyPair(seed)
	if err != nil {
		return ServerKeys{}, err
	}
	defer wipeScalar(s)
	var k ServerKeys
	k.Private = encodeScalar(s)
	copy(k.Public[:], encodeElement(pub))
	return k, nil
}

// Validate checks that Private is a usable scalar and that Public matches
// it. GenerateKE2 does not repeat the check on every login (it costs a
// base-point multiplication); call Validate when keys are loaded.
func (k ServerKeys) Validate() error {
	s, err := decodeScalar(k.Private[:], "server private key")
	if err != nil {
		return err
	}
	defer wipeScalar(s)
	pub, err := decodeElement(k.Public[:], "server public key")
	if err != nil {
		return err
	}
	if !pub.IsEqual(g.NewElement().MulGen(s)) {
		return fmt.Errorf("%w: server public key does not match the private key", ErrInvalidArgument)
	}
	return nil
}
