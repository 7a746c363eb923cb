package client

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// syntheticSet is a 2-of-3 version made offline: realm keys, an anchor, a
// dealing and its signed manifest, and the configuration of a device that
// pinned them. The fuzz targets and the offline evidence tests use it.
type syntheticSet struct {
	realmKeys []ed25519.PrivateKey
	accounts  [][]byte
	anchor    ed25519.PrivateKey
	body      *protocol.ManifestBody
	manifest  []byte
	dealing   *realmkey.Dealing
	cfg       *Config
}

func newSyntheticSet(t testing.TB) *syntheticSet {
	t.Helper()
	s := &syntheticSet{}
	setID := make([]byte, 16)
	rand.Read(setID)
	k := make([]byte, 32)
	rand.Read(k)
	var err error
	if s.anchor, err = realmkey.AnchorKey(k, setID); err != nil {
		t.Fatal(err)
	}
	if s.dealing, err = realmkey.Deal(2, 3); err != nil {
		t.Fatal(err)
	}
	rc := &RealmsConfig{Threshold: 2, SetID: hex.EncodeToString(setID), Anchor: hex.EncodeToString(s.anchor.Public().(ed25519.PublicKey))}
	s.body = &protocol.ManifestBody{Version: 1, VersionID: bytes.Repeat([]byte{7}, 16), Sequence: 1, SetID: setID, Threshold: 2,
		Commitments: s.dealing.Commitments, Limit: 5, Check: make([]byte, 32), Wrapped: make([]byte, 72), Parent: make([]byte, 16),
		Anchor: s.anchor.Public().(ed25519.PublicKey)}
	for i := range 3 {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		acct := bytes.Repeat([]byte{byte(i + 1)}, 16)
		s.realmKeys, s.accounts = append(s.realmKeys, priv), append(s.accounts, acct)
		s.body.Realms, s.body.Accounts = append(s.body.Realms, pub), append(s.body.Accounts, acct)
		rc.Set = append(rc.Set, &RealmEntry{Name: string(rune('A' + i)), Server: "https://realm.example", Token: "t",
			ProvisioningKey: hex.EncodeToString(pub), Account: hex.EncodeToString(acct),
			Vault: &VaultInfo{Name: "r", MaxLimit: 10, SigningKey: hex.EncodeToString(pub)}})
	}
	if s.manifest, err = protocol.SignManifest(s.anchor, s.body); err != nil {
		t.Fatal(err)
	}
	s.cfg = &Config{Version: ConfigVersion, Mode: ModePassword, Realms: rc}
	return s
}

// evidence is realm index's signed attempt over an evaluation with the
// given share (its own: honest; another: lying).
func (s *syntheticSet) evidence(t testing.TB, index int, share []byte) []byte {
	t.Helper()
	blind, err := realmkey.NewBlind(realmkey.Input(s.body.SetID, []byte("guess")))
	if err != nil {
		t.Fatal(err)
	}
	e, proof, err := realmkey.EvaluateBlinded(share, blind.Blinded())
	if err != nil {
		t.Fatal(err)
	}
	handle := bytes.Repeat([]byte{9}, 16)
	mh := protocol.ManifestHash(s.manifest)
	empty := protocol.EmptyVersionState()
	rc := &protocol.RealmReceipt{Kind: protocol.RealmReceiptAttempt, UserID: s.accounts[index-1], State: protocol.RealmLive,
		VersionID: s.body.VersionID, Limit: 5, TriesLeft: 4, StoreSequence: 3, RequestHash: make([]byte, 32), ClientNonce: make([]byte, 32),
		AttemptsTotal: 1, Versions: []protocol.VersionState{{VersionID: s.body.VersionID, Status: protocol.VersionCommitted, Index: uint(index),
			ManifestHash: mh, Origin: protocol.OriginOpen}, empty},
		EvaluationHash: protocol.EvaluationHash(mh, uint(index), blind.Blinded(), e, proof, handle)}
	sr, err := protocol.SignRealmReceipt(s.realmKeys[index-1], rc)
	if err != nil {
		t.Fatal(err)
	}
	b, err := (&Evidence{Format: EvidenceFormat, ReceiptBody: sr.Body, ReceiptSignature: sr.Signature, Manifest: s.manifest,
		Index: uint(index), Blinded: blind.Blinded(), Evaluated: e, Proof: proof, Handle: handle}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Offline: a lying realm's evidence checks; the same realm's honest answer
// does not.
func TestSyntheticEvidence(t *testing.T) {
	s := newSyntheticSet(t)
	lying := s.evidence(t, 2, s.dealing.Shares[0])
	f, err := CheckEvidence(lying, nil)
	if err != nil || !bytes.Equal(f.RealmKey, s.body.Realms[1]) || !errors.Is(f.Reason, realmkey.ErrProof) {
		t.Fatalf("lying evidence: %v", err)
	}
	if _, err := CheckEvidence(s.evidence(t, 2, s.dealing.Shares[1]), nil); !errors.Is(err, ErrNotEvidence) {
		t.Fatalf("honest answer as evidence: %v", err)
	}
	// Not deterministic CBOR: a longer encoding of the same map.
	if _, err := ParseEvidence(append([]byte{0xbf}, lying[1:]...)); err == nil {
		t.Error("indefinite-length evidence accepted")
	}
}

// FuzzCheckEvidence: whatever bytes are given as an evidence file, the
// checker never panics, and what it accepts is a strictly encoded file
// whose receipt the manifest's realm signed over an evaluation that fails.
func FuzzCheckEvidence(f *testing.F) {
	s := newSyntheticSet(f)
	lying := s.evidence(f, 2, s.dealing.Shares[0])
	f.Add(lying)
	f.Add(s.evidence(f, 1, s.dealing.Shares[0]))
	f.Add(s.evidence(f, 3, s.dealing.Shares[1]))
	f.Add(lying[:len(lying)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		found, err := CheckEvidence(b, nil)
		if err != nil {
			if !errors.Is(err, ErrNotEvidence) {
				t.Fatalf("an error that is not ErrNotEvidence: %v", err)
			}
			return
		}
		e, err := ParseEvidence(b)
		if err != nil {
			t.Fatalf("accepted but does not parse: %v", err)
		}
		y, err := realmkey.PublicShare(mustManifestBody(t, e.Manifest).Commitments, int(e.Index))
		if err != nil || realmkey.VerifyEvaluation(y, e.Blinded, e.Evaluated, e.Proof) == nil {
			t.Fatal("accepted evidence over an evaluation that verifies")
		}
		if found.Receipt.Kind != protocol.RealmReceiptAttempt {
			t.Fatal("accepted evidence over a receipt that is not an attempt")
		}
	})
}

func mustManifestBody(t *testing.T, m []byte) *protocol.ManifestBody {
	b, err := protocol.ParseManifest(m)
	if err != nil {
		t.Fatalf("accepted evidence whose manifest does not parse: %v", err)
	}
	return b
}

// FuzzRealmManifestFromHost: a manifest comes through a host, which may
// send anything. checkManifest never panics, and accepts only a manifest
// signed by the pinned anchor, for this set, naming configured realms with
// their pinned accounts.
func FuzzRealmManifestFromHost(f *testing.F) {
	s := newSyntheticSet(f)
	set, err := OpenRealmSet(s.cfg, RealmOptions{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(s.manifest)
	other := newSyntheticSet(f)
	f.Add(other.manifest) // another anchor
	f.Add(s.manifest[:len(s.manifest)-1])
	f.Add([]byte{0xa0})
	f.Fuzz(func(t *testing.T, b []byte) {
		ag, err := set.checkManifest(b, protocol.ManifestHash(b))
		if err != nil {
			return
		}
		if !bytes.Equal(ag.body.Anchor, s.anchor.Public().(ed25519.PublicKey)) || !bytes.Equal(ag.body.SetID, s.body.SetID) {
			t.Fatal("accepted a manifest of another anchor or set")
		}
		for j, key := range ag.body.Realms {
			if !bytes.Equal(key, s.body.Realms[0]) && !bytes.Equal(key, s.body.Realms[1]) && !bytes.Equal(key, s.body.Realms[2]) {
				t.Fatal("accepted a manifest naming a realm not configured")
			}
			if len(ag.shares[uint(j+1)]) != 32 {
				t.Fatal("accepted without a public share")
			}
		}
		if _, err := set.checkManifest(b, make([]byte, 32)); err == nil {
			t.Fatal("accepted a manifest under another hash")
		}
	})
}

// A resume blob comes from a host: whatever it serves, OpenResume either
// opens a well-formed body under K or says it does not open; it never
// panics.
func FuzzOpenResume(f *testing.F) {
	k, vid, hash := make([]byte, 32), make([]byte, 16), make([]byte, 32)
	body := &ResumeBody{ManifestHash: hash, Materials: []ResumeMaterial{{Index: 1, Share: make([]byte, 32), UnlockKey: make([]byte, 32)}}}
	blob, err := SealResume(bytes.NewReader(make([]byte, 24)), k, vid, body)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add(blob[:40])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := OpenResume(b, k, vid, hash)
		if err == nil && (len(got.Materials) == 0 || !bytes.Equal(got.ManifestHash, hash)) {
			t.Fatalf("opened a body that does not check: %+v", got)
		}
	})
}

// The body of a resume blob is decoded only after it opens under K; this
// target seals whatever plaintext it is given under the right key, so the
// decoder and its checks see every shape: it opens a body whose materials
// are well formed and distinct, or refuses, and never panics.
func FuzzResumeBody(f *testing.F) {
	k, vid, hash := make([]byte, 32), make([]byte, 16), make([]byte, 32)
	good, _ := evidenceEnc.Marshal(&ResumeBody{ManifestHash: hash, Materials: []ResumeMaterial{{Index: 1, Share: make([]byte, 32), UnlockKey: make([]byte, 32)}}})
	f.Add(good)
	f.Add([]byte{0xa0})
	f.Add([]byte{0xa2, 0x01, 0x40, 0x02, 0x80})
	key, err := resumeKey(k, vid)
	if err != nil {
		f.Fatal(err)
	}
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		nonce := make([]byte, chacha20poly1305.NonceSizeX)
		blob := aead.Seal(nonce, nonce, plain, resumeAAD(hash))
		got, err := OpenResume(blob, k, vid, hash)
		if err != nil {
			return
		}
		seen := map[uint]bool{}
		for _, m := range got.Materials {
			if seen[m.Index] || m.Index < 1 || m.Index > 8 || len(m.Share) != 32 || len(m.UnlockKey) != 32 {
				t.Fatalf("opened a malformed body: %+v", got)
			}
			seen[m.Index] = true
		}
		if len(got.Materials) == 0 || !bytes.Equal(got.ManifestHash, hash) {
			t.Fatalf("opened a body that does not check: %+v", got)
		}
	})
}
