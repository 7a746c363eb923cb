package protocol

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func testRealmReceipt(userID []byte, kind RealmReceiptKind) *RealmReceipt {
	return &RealmReceipt{
		Kind: kind, UserID: userID, State: RealmLive, VersionID: bytes.Repeat([]byte{1}, VersionIDSize),
		Limit: MaxLimitCeiling, TriesLeft: MaxLimitCeiling, FailedSinceSuccess: ^uint(0),
		StoreSequence: 1<<64 - 1, RequestHash: make([]byte, HashSize), ClientNonce: make([]byte, ClientNonceSize),
		AttemptsTotal: 1<<64 - 1, SuccessesTotal: 1<<64 - 1,
		Versions: []VersionState{
			{VersionID: make([]byte, VersionIDSize), Status: VersionCommitted, Index: MaxRealms, ManifestHash: make([]byte, HashSize), Origin: OriginOverBurned},
			EmptyVersionState(),
		},
		EvaluationHash: make([]byte, HashSize),
	}
}

// Every realm receipt, whatever its kind and user id length, is exactly
// RealmReceiptBodySize bytes, and verifies only under the realm's key.
func TestRealmReceiptsAreOneSizeAndSigned(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, idLen := range []int{1, 16, MaxUserIDSize} {
		for kind := RealmReceiptRegistered; kind <= RealmReceiptStatus; kind++ {
			r := testRealmReceipt(bytes.Repeat([]byte{7}, idLen), kind)
			if kind == RealmReceiptLocked {
				r.RevivableMillis = 1<<64 - 1
			}
			s, err := SignRealmReceipt(priv, r)
			if err != nil {
				t.Fatalf("id %d kind %d: %v", idLen, kind, err)
			}
			if len(s.Body) != RealmReceiptBodySize {
				t.Fatalf("body of %d bytes", len(s.Body))
			}
			got, err := s.Verify(pub)
			if err != nil || got.Kind != kind || !bytes.Equal(got.UserID, r.UserID) {
				t.Fatalf("verify: %v", err)
			}
			if _, err := s.Verify(otherPub); !errors.Is(err, ErrBadSignature) {
				t.Fatalf("verified under another key: %v", err)
			}
		}
	}
	// A smallest receipt still pads within 24..255.
	r := testRealmReceipt([]byte{1}, RealmReceiptProbe)
	r.Limit, r.TriesLeft, r.FailedSinceSuccess = 0, 0, 0
	r.Versions[0] = EmptyVersionState()
	r.State = RealmNoRecord
	if _, err := SignRealmReceipt(priv, r); err != nil {
		t.Fatal(err)
	}
}

func TestRealmReceiptRefusesBadSlots(t *testing.T) {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	for name, mutate := range map[string]func(*RealmReceipt){
		"one slot":        func(r *RealmReceipt) { r.Versions = r.Versions[:1] },
		"half-empty slot": func(r *RealmReceipt) { r.Versions[1].Status = VersionPending },
		"tries over":      func(r *RealmReceipt) { r.TriesLeft = r.Limit + 1 },
		"revivable probe": func(r *RealmReceipt) { r.RevivableMillis = 1 },
		"short nonce":     func(r *RealmReceipt) { r.ClientNonce = r.ClientNonce[:31] },
	} {
		r := testRealmReceipt([]byte{1}, RealmReceiptProbe)
		mutate(r)
		if _, err := SignRealmReceipt(priv, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func testManifestBody(anchor ed25519.PublicKey, n, threshold int) *ManifestBody {
	b := &ManifestBody{
		Version: ManifestVersion, VersionID: bytes.Repeat([]byte{2}, VersionIDSize), Sequence: 1,
		SetID: bytes.Repeat([]byte{3}, SetIDSize), Threshold: uint(threshold), Limit: 5,
		Check: make([]byte, HashSize), Wrapped: make([]byte, 72), Parent: make([]byte, VersionIDSize), Anchor: anchor,
	}
	for i := range n {
		b.Realms = append(b.Realms, bytes.Repeat([]byte{byte(10 + i)}, PublicKeySize))
		b.Accounts = append(b.Accounts, bytes.Repeat([]byte{byte(20 + i)}, 16))
	}
	for range threshold {
		b.Commitments = append(b.Commitments, bytes.Repeat([]byte{9}, ElementSize))
	}
	return b
}

// A manifest is accepted only as its anchor signed it, and the largest one
// (8 realms, threshold 8, 64-byte accounts, a handover) fits its bound.
func TestManifestSignedByItsAnchor(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	b := testManifestBody(pub, 3, 2)
	m, err := SignManifest(priv, b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseManifest(m)
	if err != nil || got.IndexOf(b.Realms[2]) != 3 || got.IndexOf(make([]byte, 32)) != 0 {
		t.Fatalf("parse: %v", err)
	}
	bad := bytes.Clone(m)
	bad[len(bad)-1] ^= 1
	if _, err := ParseManifest(bad); !errors.Is(err, ErrBadSignature) || !errors.Is(err, ErrMalformed) {
		t.Fatalf("a flipped signature bit: %v", err)
	}
	// Another key cannot sign for this anchor.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := SignManifest(other, b); err == nil {
		t.Fatal("signed a manifest naming another anchor")
	}

	big := testManifestBody(pub, MaxRealms, MaxRealms)
	for i := range big.Accounts {
		big.Accounts[i] = bytes.Repeat([]byte{byte(i)}, MaxUserIDSize)
	}
	big.Wrapped, big.Handover = make([]byte, MaxWrappedKeySize), make([]byte, SignatureSize)
	m, err = SignManifest(priv, big)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("largest manifest: %d bytes of %d", len(m), MaxManifestSize)
}

func TestManifestRefusesBadSets(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	for name, mutate := range map[string]func(*ManifestBody){
		"threshold half": func(b *ManifestBody) {
			b.Threshold = 2
			b.Realms = append(b.Realms, make([]byte, 32))
			b.Accounts = append(b.Accounts, []byte{1})
		},
		"threshold over n": func(b *ManifestBody) {
			b.Threshold = 4
			b.Commitments = append(b.Commitments, b.Commitments[0], b.Commitments[0])
		},
		"commitment count":  func(b *ManifestBody) { b.Commitments = b.Commitments[:1] },
		"duplicate realm":   func(b *ManifestBody) { b.Realms[2] = b.Realms[0] },
		"accounts mismatch": func(b *ManifestBody) { b.Accounts = b.Accounts[:2] },
		"one realm": func(b *ManifestBody) {
			b.Realms, b.Accounts, b.Threshold, b.Commitments = b.Realms[:1], b.Accounts[:1], 1, b.Commitments[:1]
		},
		"limit 0":    func(b *ManifestBody) { b.Limit = 0 },
		"sequence 0": func(b *ManifestBody) { b.Sequence = 0 },
	} {
		b := testManifestBody(pub, 3, 2)
		mutate(b)
		if _, err := SignManifest(priv, b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A sealed realm request opens only as the type and user it was sealed for;
// its reply opens only for that request, and two replies to one request use
// different keys.
func TestRealmChannel(t *testing.T) {
	key, err := HPKEKeyFromBytes(bytes.Repeat([]byte{5}, 32))
	if err != nil {
		t.Fatal(err)
	}
	pk := key.PublicKey().Bytes()
	nonce := bytes.Repeat([]byte{6}, ClientNonceSize)
	body := &RealmEvaluate{VersionID: make([]byte, VersionIDSize), Blinded: bytes.Repeat([]byte{8}, ElementSize)}
	req, cs, err := SealRealmRequest(pk, TypeRealmEvaluate, []byte("alice"), nonce, body)
	if err != nil {
		t.Fatal(err)
	}
	var got RealmEvaluate
	inner, vs, err := OpenRealmRequest(key, TypeRealmEvaluate, req, &got)
	if err != nil || !bytes.Equal(inner.ClientNonce, nonce) || !bytes.Equal(got.Blinded, body.Blinded) {
		t.Fatalf("open: %v", err)
	}
	if !bytes.Equal(vs.RequestHash, cs.RequestHash) || !bytes.Equal(vs.SessionExport(), cs.SessionExport()) {
		t.Fatal("the two ends disagree on the request")
	}
	if _, _, err := OpenRealmRequest(key, TypeRealmChallenge, req, &RealmChallenge{}); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened as another type: %v", err)
	}
	moved := *req
	moved.UserID = []byte("mallory")
	if _, _, err := OpenRealmRequest(key, TypeRealmEvaluate, &moved, &got); !errors.Is(err, ErrOpen) {
		t.Fatalf("opened for another user: %v", err)
	}

	probe := &RealmReceiptReply{Receipt: SignedRealmReceipt{Body: make([]byte, RealmReceiptBodySize), Signature: make([]byte, 64)}}
	r1, err := vs.SealReply(rand.Reader, probe)
	if err != nil {
		t.Fatal(err)
	}
	r2, _ := vs.SealReply(rand.Reader, probe)
	if bytes.Equal(r1.Sealed, r2.Sealed) {
		t.Fatal("two replies under one key")
	}
	var out RealmReceiptReply
	if err := cs.OpenReply(r1, &out); err != nil {
		t.Fatal(err)
	}
	// The reply to another request of the same client does not open.
	_, other, _ := SealRealmRequest(pk, TypeRealmEvaluate, []byte("alice"), nonce, body)
	if err := other.OpenReply(r1, &out); !errors.Is(err, ErrOpen) {
		t.Fatalf("a reply opened for another request: %v", err)
	}
}

func TestRealmCommandShapes(t *testing.T) {
	nonce := make([]byte, ClientNonceSize)
	mat := &VersionMaterial{Manifest: []byte{1}, Index: 1, Share: make([]byte, 32), UnlockKey: make([]byte, 32)}
	good := []*RealmCommand{
		{Command: RealmClose, ClientNonce: nonce},
		{Command: RealmStatus, ClientNonce: nonce, Confirm: make([]byte, 32)},
		{Command: RealmPutVersion, ClientNonce: nonce, Material: mat},
		{Command: RealmCommit, ClientNonce: nonce, VersionID: make([]byte, 16)},
		{Command: RealmDelete, ClientNonce: nonce},
	}
	for _, c := range good {
		if _, err := Marshal(c); err != nil {
			t.Errorf("command %d: %v", c.Command, err)
		}
	}
	bad := []*RealmCommand{
		{Command: 0, ClientNonce: nonce},
		{Command: RealmPutVersion, ClientNonce: nonce},
		{Command: RealmCommit, ClientNonce: nonce},
		{Command: RealmDelete, ClientNonce: nonce, VersionID: make([]byte, 16)},
		{Command: RealmStatus, ClientNonce: nonce[:5]},
		{Command: RealmPutVersion, ClientNonce: nonce, Material: &VersionMaterial{Manifest: []byte{1}, Index: 9, Share: make([]byte, 32), UnlockKey: make([]byte, 32)}},
	}
	for i, c := range bad {
		if _, err := Marshal(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("bad command %d accepted: %v", i, err)
		}
	}
}

func TestRealmTypesAreKnown(t *testing.T) {
	for ty := TypeRealmProbe; ty <= TypeRealmSession; ty++ {
		b, err := Encode(ty, &Empty{})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := PeekType(b); err != nil || got != ty {
			t.Fatalf("%s: %v", ty, err)
		}
	}
	for _, ty := range []Type{11, 15, 22} { // 10 is user-status
		b, _ := encMode.Marshal(&Envelope{Version: Version, Type: ty, Body: []byte{0xa0}})
		if _, err := PeekType(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("type %d accepted: %v", ty, err)
		}
	}
}

// realmSeeds are encodings of realm messages for the fuzz targets' corpus.
func realmSeeds(t testing.TB) [][]byte {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	manifest, err := SignManifest(priv, testManifestBody(pub, 3, 2))
	if err != nil {
		t.Fatal(err)
	}
	receipt, err := SignRealmReceipt(priv, testRealmReceipt([]byte("alice"), RealmReceiptAttempt))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := HPKEKeyFromBytes(bytes.Repeat([]byte{5}, 32))
	req, secret, err := SealRealmRequest(key.PublicKey().Bytes(), TypeRealmProbe, []byte("alice"), make([]byte, 32), &Empty{})
	if err != nil {
		t.Fatal(err)
	}
	reply, err := secret.SealReply(rand.Reader, &RealmReceiptReply{Receipt: receipt})
	if err != nil {
		t.Fatal(err)
	}
	mat := VersionMaterial{Manifest: manifest, Index: 2, Share: make([]byte, 32), UnlockKey: make([]byte, 32)}
	var out [][]byte
	for _, m := range []Message{
		req, reply, &receipt, &RealmReceiptReply{Receipt: receipt}, &mat,
		&RealmRegister{Handle: make([]byte, HandleSize), Material: mat},
		&RealmEvaluateReply{Receipt: receipt, Handle: make([]byte, 16), TicketNonce: make([]byte, 32), Evaluated: make([]byte, 32), Proof: make([]byte, 64)},
		&RealmChallengeReply{Receipt: receipt},
		&RealmCommand{Command: RealmCommit, ClientNonce: make([]byte, 32), Confirm: make([]byte, 32), VersionID: make([]byte, 16)},
		&RealmChallenge{Purpose: PurposeRegister, VersionID: make([]byte, 16)},
		&RealmUnlock{Handle: make([]byte, 16), Tag: make([]byte, 32)},
	} {
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	var m Manifest
	if err := Unmarshal(manifest, &m); err != nil {
		t.Fatal(err)
	}
	return append(out, manifest, m.Body, receipt.Body)
}
