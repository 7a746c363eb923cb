package client

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"

	"github.com/fxamacker/cbor/v2"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// EvidenceFormat is the first field of every evidence file.
const EvidenceFormat = "coffer/v1 realm evidence"

// maxEvidenceSize bounds an evidence file: a receipt, a manifest, an
// identity bundle and a few group elements.
const maxEvidenceSize = 8192

// Evidence is what proves that a realm lied in a recovery (REALMS.md 11,
// step 4): its signed attempt receipt, whose evaluation_hash covers the
// blinded element it was sent and the evaluation and proof it answered, and
// the manifest that fixes its public share. Anyone can check it offline
// (CheckEvidence); no client can make it for an honest realm, whose
// signature covers only evaluations that verify.
type Evidence struct {
	Format           string `cbor:"1,keyasint"`
	ReceiptBody      []byte `cbor:"2,keyasint"` // the realm's signed attempt receipt
	ReceiptSignature []byte `cbor:"3,keyasint"`
	Manifest         []byte `cbor:"4,keyasint"` // the encoded manifest of the version evaluated
	Index            uint   `cbor:"5,keyasint"` // the realm's index in it
	Blinded          []byte `cbor:"6,keyasint"` // Bl, as sent
	Evaluated        []byte `cbor:"7,keyasint"` // E_i, as answered
	Proof            []byte `cbor:"8,keyasint"` // π_i, as answered
	Handle           []byte `cbor:"9,keyasint"` // the ticket's handle, as answered
	// Identity is the realm's identity bundle (an encoded identity
	// envelope), which ties its signing key to a provisioning key.
	Identity []byte `cbor:"10,keyasint"`
}

var (
	evidenceEnc cbor.EncMode
	evidenceDec cbor.DecMode
)

func init() {
	var err error
	if evidenceEnc, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	if evidenceDec, err = (cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   4,
		MaxMapPairs:       16,
		MaxArrayElements:  16,
		IntDec:            cbor.IntDecConvertNone,
		UTF8:              cbor.UTF8RejectInvalid,
	}).DecMode(); err != nil {
		panic(err)
	}
}

// Marshal encodes the evidence file (deterministic CBOR).
func (e *Evidence) Marshal() ([]byte, error) {
	return evidenceEnc.Marshal(e)
}

// ErrNotEvidence: a file that does not prove a realm lied.
var ErrNotEvidence = errors.New("not evidence of a lying realm")

// ParseEvidence decodes an evidence file strictly: deterministic CBOR, no
// unknown or repeated field, the right format.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > maxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrNotEvidence, len(b))
	}
	var e Evidence
	if err := evidenceDec.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotEvidence, err)
	}
	if re, err := e.Marshal(); err != nil || !bytes.Equal(re, b) {
		return nil, fmt.Errorf("%w: not in deterministic encoding", ErrNotEvidence)
	}
	if e.Format != EvidenceFormat {
		return nil, fmt.Errorf("%w: format %q", ErrNotEvidence, e.Format)
	}
	return &e, nil
}

// EvidenceFinding is what a checked evidence file proves.
type EvidenceFinding struct {
	RealmKey     ed25519.PublicKey  // the lying realm's identity signing key
	Identity     *protocol.Identity // its bundle, verified under ProvisioningKey when one was given
	Receipt      *protocol.RealmReceipt
	ManifestHash []byte
	Reason       error // why the evaluation is wrong (realmkey.ErrProof, ErrIdentity, ErrEncoding)
}

// CheckEvidence checks an evidence file offline (REALMS.md 11, step 4) and
// returns what it proves, or an error wrapping ErrNotEvidence: the manifest
// parses and its anchor signature verifies; the realm at Index is the key
// that signed the receipt; the receipt is an attempt for this manifest's
// version and its evaluation_hash is recomputed from the file; and the DLEQ
// statement (G, Y_index, Bl, E) fails. When provisioningKey is given, the
// identity bundle must verify under it and name the same signing key.
func CheckEvidence(b []byte, provisioningKey ed25519.PublicKey) (*EvidenceFinding, error) {
	e, err := ParseEvidence(b)
	if err != nil {
		return nil, err
	}
	body, err := protocol.ParseManifest(e.Manifest)
	if err != nil {
		return nil, fmt.Errorf("%w: the manifest: %v", ErrNotEvidence, err)
	}
	if e.Index < 1 || int(e.Index) > body.N() {
		return nil, fmt.Errorf("%w: index %d in a manifest of %d realms", ErrNotEvidence, e.Index, body.N())
	}
	key := ed25519.PublicKey(body.Realms[e.Index-1])
	sr := protocol.SignedRealmReceipt{Body: e.ReceiptBody, Signature: e.ReceiptSignature}
	rc, err := sr.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: the receipt is not signed by realm %d of the manifest: %v", ErrNotEvidence, e.Index, err)
	}
	manifestHash := protocol.ManifestHash(e.Manifest)
	switch {
	case rc.Kind != protocol.RealmReceiptAttempt:
		return nil, fmt.Errorf("%w: a %q receipt, not an attempt", ErrNotEvidence, RealmReceiptKindName(rc.Kind))
	case !bytes.Equal(rc.VersionID, body.VersionID):
		return nil, fmt.Errorf("%w: the receipt is for another version than the manifest's", ErrNotEvidence)
	case !bytes.Equal(rc.EvaluationHash, protocol.EvaluationHash(manifestHash, e.Index, e.Blinded, e.Evaluated, e.Proof, e.Handle)):
		return nil, fmt.Errorf("%w: the receipt's evaluation hash does not cover this evaluation", ErrNotEvidence)
	}
	if len(body.Commitments) != int(body.Threshold) {
		return nil, fmt.Errorf("%w: the manifest has %d commitments for threshold %d", ErrNotEvidence, len(body.Commitments), body.Threshold)
	}
	y, err := realmkey.PublicShare(body.Commitments, int(e.Index))
	if err != nil {
		return nil, fmt.Errorf("%w: the manifest's public share: %v", ErrNotEvidence, err)
	}
	// Bl is the client's: one that does not decode, or is the identity,
	// proves nothing about the realm. PublicShare decodes both entries and
	// refuses an identity sum, and Bl + Bl is the identity only when Bl is
	// (ristretto255 has prime order).
	if _, err := realmkey.PublicShare([][]byte{e.Blinded, e.Blinded}, 1); err != nil {
		return nil, fmt.Errorf("%w: the blinded element: %v", ErrNotEvidence, err)
	}
	reason := realmkey.VerifyEvaluation(y, e.Blinded, e.Evaluated, e.Proof)
	if reason == nil {
		return nil, fmt.Errorf("%w: the evaluation verifies: the realm answered correctly", ErrNotEvidence)
	}
	f := &EvidenceFinding{RealmKey: key, Receipt: rc, ManifestHash: manifestHash, Reason: reason}
	if provisioningKey != nil {
		var si protocol.SignedIdentity
		if err := protocol.Decode(e.Identity, protocol.TypeIdentity, &si); err != nil {
			return nil, fmt.Errorf("%w: the identity bundle: %v", ErrNotEvidence, err)
		}
		id, err := si.Verify(provisioningKey)
		if err != nil {
			return nil, fmt.Errorf("%w: the identity bundle: %v", ErrNotEvidence, err)
		}
		if !bytes.Equal(id.SigningKey, key) {
			return nil, fmt.Errorf("%w: the identity bundle is another realm's", ErrNotEvidence)
		}
		f.Identity = id
	}
	return f, nil
}
