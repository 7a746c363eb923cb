package protocol

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
)

// Context strings of the manifest (REALMS.md, 5.2 and 5.6).
const (
	contextManifest = "coffer/v1 realm manifest\x00"
	contextHandover = "coffer/v1 realm handover\x00"
	// ManifestVersion is the only manifest layout this package speaks.
	ManifestVersion = 1
)

// ManifestBody is the public description of one version of a realm set,
// the same for every realm (REALMS.md, 5.2). Realm i (1-based) is
// Realms[i-1] and Accounts[i-1]; its public share is Σ_j i^j·Commitments[j].
type ManifestBody struct {
	Version     uint     `cbor:"1,keyasint"`
	VersionID   []byte   `cbor:"2,keyasint"`
	Sequence    uint64   `cbor:"3,keyasint"`
	SetID       []byte   `cbor:"4,keyasint"`
	Threshold   uint     `cbor:"5,keyasint"`
	Realms      [][]byte `cbor:"6,keyasint"`
	Commitments [][]byte `cbor:"7,keyasint"`
	Limit       uint     `cbor:"8,keyasint"`
	Check       []byte   `cbor:"9,keyasint"`
	Wrapped     []byte   `cbor:"10,keyasint"`
	Accounts    [][]byte `cbor:"11,keyasint"`
	Parent      []byte   `cbor:"12,keyasint"`
	Anchor      []byte   `cbor:"13,keyasint"`
	Handover    []byte   `cbor:"14,keyasint,omitempty"`
}

// N is the number of realms of the version.
func (b *ManifestBody) N() int { return len(b.Realms) }

// IndexOf returns the 1-based index of the realm with signingKey, or 0.
func (b *ManifestBody) IndexOf(signingKey []byte) uint {
	for i, r := range b.Realms {
		if string(r) == string(signingKey) {
			return uint(i + 1)
		}
	}
	return 0
}

func (b *ManifestBody) validate() error {
	if b.Version != ManifestVersion {
		return fmt.Errorf("%w: manifest version %d", ErrMalformed, b.Version)
	}
	n := len(b.Realms)
	if n < MinRealms || n > MaxRealms {
		return fmt.Errorf("%w: a manifest of %d realms (%d..%d)", ErrMalformed, n, MinRealms, MaxRealms)
	}
	if len(b.Accounts) != n {
		return fmt.Errorf("%w: %d accounts for %d realms", ErrMalformed, len(b.Accounts), n)
	}
	if 2*b.Threshold <= uint(n) || b.Threshold > uint(n) {
		return fmt.Errorf("%w: threshold %d of %d (it must exceed n/2)", ErrMalformed, b.Threshold, n)
	}
	if len(b.Commitments) != int(b.Threshold) {
		return fmt.Errorf("%w: %d commitments for threshold %d", ErrMalformed, len(b.Commitments), b.Threshold)
	}
	if b.Sequence == 0 {
		return fmt.Errorf("%w: manifest sequence 0", ErrMalformed)
	}
	seen := map[string]bool{}
	for i, r := range b.Realms {
		if err := checkLen("realm key", r, PublicKeySize); err != nil {
			return err
		}
		if seen[string(r)] {
			return fmt.Errorf("%w: realm %d appears twice in the manifest", ErrMalformed, i+1)
		}
		seen[string(r)] = true
		if err := checkUserID(b.Accounts[i]); err != nil {
			return err
		}
	}
	for _, c := range b.Commitments {
		if err := checkLen("commitment", c, ElementSize); err != nil {
			return err
		}
	}
	if len(b.Handover) != 0 {
		if err := checkLen("handover", b.Handover, SignatureSize); err != nil {
			return err
		}
	}
	return firstErr(checkLen("version id", b.VersionID, VersionIDSize), checkLen("set id", b.SetID, SetIDSize),
		checkLimit(b.Limit), checkLen("check", b.Check, HashSize),
		checkRange("wrapped key", b.Wrapped, MinWrappedKeySize, MaxWrappedKeySize),
		checkLen("parent", b.Parent, VersionIDSize), checkLen("anchor", b.Anchor, PublicKeySize))
}

// Manifest is an encoded ManifestBody signed by the set's anchor key.
type Manifest struct {
	Body      []byte `cbor:"1,keyasint"`
	AnchorSig []byte `cbor:"2,keyasint"`
}

func (m *Manifest) validate() error {
	return firstErr(checkRange("manifest body", m.Body, 1, MaxManifestSize), checkLen("anchor signature", m.AnchorSig, SignatureSize))
}

// SignManifest encodes body and signs it with the set's anchor key, whose
// public half must be body.Anchor. It returns the encoded Manifest.
func SignManifest(anchor ed25519.PrivateKey, body *ManifestBody) ([]byte, error) {
	if pub, ok := anchor.Public().(ed25519.PublicKey); !ok || string(pub) != string(body.Anchor) {
		return nil, errors.New("protocol: the manifest names another anchor than the one signing it")
	}
	b, err := Marshal(body)
	if err != nil {
		return nil, err
	}
	encoded, err := Marshal(&Manifest{Body: b, AnchorSig: ed25519.Sign(anchor, withContext(contextManifest, b))})
	if err != nil {
		return nil, err
	}
	if len(encoded) > MaxManifestSize {
		return nil, fmt.Errorf("protocol: manifest of %d bytes exceeds %d", len(encoded), MaxManifestSize)
	}
	return encoded, nil
}

// ParseManifest strictly decodes an encoded Manifest, validates its body and
// checks the anchor signature under the anchor the body names. It does not
// check the commitments as group elements (protocol/realmkey does), nor that
// the anchor is the one the caller pinned. A signature that does not verify
// is both ErrMalformed, what a realm answers for such VersionMaterial
// (REALMS.md 7), and ErrBadSignature, so a client can tell it from a
// manifest that does not decode.
func ParseManifest(encoded []byte) (*ManifestBody, error) {
	if len(encoded) > MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes", ErrMalformed, len(encoded))
	}
	var m Manifest
	if err := Unmarshal(encoded, &m); err != nil {
		return nil, err
	}
	var body ManifestBody
	if err := Unmarshal(m.Body, &body); err != nil {
		return nil, err
	}
	if !ed25519.Verify(body.Anchor, withContext(contextManifest, m.Body), m.AnchorSig) {
		return nil, fmt.Errorf("%w: %w: manifest anchor signature", ErrMalformed, ErrBadSignature)
	}
	return &body, nil
}

// ManifestHash names an encoded Manifest:
// SHA-256("coffer/v1 realm manifest" ‖ 0x00 ‖ encoded Manifest).
func ManifestHash(encoded []byte) []byte {
	h := sha256.New()
	h.Write([]byte(contextManifest))
	h.Write(encoded)
	return h.Sum(nil)
}

// SignHandover is the old anchor's signature over the new one (K rotation,
// REALMS.md 5.6).
func SignHandover(oldAnchor ed25519.PrivateKey, setID, newAnchor []byte) []byte {
	return ed25519.Sign(oldAnchor, withContext(contextHandover, append(append([]byte(nil), setID...), newAnchor...)))
}

// VerifyHandover checks a handover signature.
func VerifyHandover(oldAnchor, setID, newAnchor, sig []byte) bool {
	return len(oldAnchor) == ed25519.PublicKeySize &&
		ed25519.Verify(oldAnchor, withContext(contextHandover, append(append([]byte(nil), setID...), newAnchor...)), sig)
}
