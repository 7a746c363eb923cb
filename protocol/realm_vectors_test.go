// This file is package protocol_test, not protocol: a realm's check of
// VersionMaterial (REALMS.md 7) needs protocol/realmkey (the commitments and
// the share), which imports protocol, so an internal test could not import it.
package protocol_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/internal/vectorfile"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/realmkey"
)

// The realm vectors are testdata/realms (README.md there; REALMS.md 16 is
// their contract), written by gen_vectors.py there, not by this package. This
// file checks messages/; protocol/realmkey's vectors_test.go checks the
// VOPRF, the key schedule and messages/evidence-*.
const realmVectorDir = "testdata/realms"

// realmOutcome names the result of err as the vector files do. A refusal
// that is both malformed and a bad signature (a manifest's anchor signature,
// which the realm answers malformed, REALMS.md 7) is malformed.
func realmOutcome(err error) string {
	switch {
	case err == nil:
		return "success"
	case errors.Is(err, protocol.ErrMalformed):
		return "malformed"
	case errors.Is(err, protocol.ErrBadSignature), errors.Is(err, protocol.ErrOpen):
		return "authentication"
	case errors.Is(err, realmkey.ErrProof):
		return "authentication"
	case errors.Is(err, realmkey.ErrShare), errors.Is(err, realmkey.ErrIdentity), errors.Is(err, realmkey.ErrZeroScalar),
		errors.Is(err, realmkey.ErrEncoding), errors.Is(err, realmkey.ErrIndex), errors.Is(err, realmkey.ErrThreshold):
		return "malformed"
	}
	return "unexpected error: " + err.Error()
}

func equalBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, the vector has %x", what, got, want)
	}
}

// TestRealmMessageVectors checks every case of messages/ but the evidence
// ones: each success decodes, verifies, opens or hashes to exactly the
// case's values and encodes back to its bytes; each refusal is refused with
// the case's outcome.
func TestRealmMessageVectors(t *testing.T) {
	cases := vectorfile.Load(t, realmVectorDir)
	byPath := map[string]*vectorfile.Case{}
	for i := range cases {
		byPath[cases[i].Path] = &cases[i]
	}
	seen := map[string]int{}
	for i := range cases {
		c := &cases[i]
		if c.Group() != "messages" || strings.HasPrefix(c.Path, "messages/evidence-") {
			continue
		}
		name := strings.TrimPrefix(c.Path, "messages/")
		var check func(*testing.T, *vectorfile.Case, map[string]*vectorfile.Case) (string, error)
		switch {
		case strings.HasPrefix(name, "manifest"):
			check = checkManifestVector
		case strings.HasPrefix(name, "version-material"):
			check = checkVersionMaterialVector
		case strings.HasPrefix(name, "receipt-"):
			check = checkRealmReceiptVector
		case name == "evaluation-hash":
			check = checkEvaluationHashVector
		case name == "request-evaluate":
			check = checkRequestEvaluateVector
		case name == "reply-evaluate":
			check = checkReplyEvaluateVector
		case name == "session-command":
			check = checkSessionCommandVector
		default:
			t.Errorf("%s: unknown case", c.Path)
			continue
		}
		t.Run(c.Path, func(t *testing.T) {
			got, err := check(t, c, byPath)
			if got != c.Expect {
				t.Errorf("got %s (%v), the vector expects %s: %v", got, err, c.Expect, c.Comments)
			}
		})
		seen[c.Expect]++
	}
	if seen["success"] == 0 || seen["malformed"] == 0 || seen["authentication"] == 0 {
		t.Errorf("outcomes %v: the folder needs successes and both kinds of refusal", seen)
	}
}

func checkManifestVector(t *testing.T, c *vectorfile.Case, _ map[string]*vectorfile.Case) (string, error) {
	body, err := protocol.ParseManifest(c.Data)
	if err != nil {
		return realmOutcome(err), err
	}
	equalBytes(t, "manifest hash", protocol.ManifestHash(c.Data), c.Hex(t, "manifest-hash"))
	equalBytes(t, "anchor", body.Anchor, c.Hex(t, "anchor"))
	accounts := strings.Split(c.Header["accounts"], ",")
	if len(accounts) != body.N() {
		t.Errorf("%d accounts for %d realms", len(accounts), body.N())
	}
	for i, a := range accounts {
		if i < len(body.Accounts) && hex.EncodeToString(body.Accounts[i]) != a {
			t.Errorf("accounts[%d] = %x, the vector has %s", i, body.Accounts[i], a)
		}
	}
	// Both directions: the body and the manifest encode back to the bytes.
	var m protocol.Manifest
	if err := protocol.Unmarshal(c.Data, &m); err != nil {
		t.Fatal(err)
	}
	again, err := protocol.Marshal(body)
	if err != nil || !bytes.Equal(again, m.Body) {
		t.Errorf("the body encodes again as %x (%v)", again, err)
	}
	again, err = protocol.Marshal(&m)
	if err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("the manifest encodes again as %x (%v)", again, err)
	}
	// Every commitment is a ristretto255 element and every realm has a
	// public share, as a realm and a client check.
	for i := 1; i <= body.N(); i++ {
		if _, err := realmkey.PublicShare(body.Commitments, i); err != nil {
			return realmOutcome(err), err
		}
	}
	return "success", nil
}

// materialRule is one check of REALMS.md 7's VersionMaterial validation,
// named as the vectors' rule: lines name them.
type materialRule struct {
	rule string
	err  error
}

// realmCheckMaterial is a realm's validation of VersionMaterial for the
// request's user id, with its own signing key and maximum limit, in
// REALMS.md 7's order, through the protocol and realmkey calls a realm makes.
// The vault's own check is applet/vault's (tested there); this one pins that
// the wire layer and realmkey give a realm everything it needs, and that
// each refusal is the vector's.
func realmCheckMaterial(raw, userID, realmKey []byte, maxLimit uint) (*protocol.ManifestBody, *materialRule) {
	var vm protocol.VersionMaterial
	if err := protocol.Unmarshal(raw, &vm); err != nil {
		return nil, &materialRule{"material", err}
	}
	body, err := protocol.ParseManifest(vm.Manifest)
	if err != nil {
		// ParseManifest checks the layout (version, n, accounts, threshold,
		// len(commitments), lengths) and then the anchor signature.
		if errors.Is(err, protocol.ErrBadSignature) {
			return nil, &materialRule{"anchor-signature", err}
		}
		return nil, &materialRule{"manifest", err}
	}
	// Every C_j decodes and is not the identity: PublicShare decodes them
	// all (for any index; the index is checked next).
	if _, err := realmkey.PublicShare(body.Commitments, 1); err != nil {
		return nil, &materialRule{"commitments", err}
	}
	if vm.Index < 1 || vm.Index > uint(body.N()) {
		return nil, &materialRule{"index", fmt.Errorf("%w: index %d of %d", protocol.ErrMalformed, vm.Index, body.N())}
	}
	if !bytes.Equal(body.Realms[vm.Index-1], realmKey) {
		return nil, &materialRule{"realms", fmt.Errorf("%w: realms[index − 1] is not this realm", protocol.ErrMalformed)}
	}
	if !bytes.Equal(body.Accounts[vm.Index-1], userID) {
		return nil, &materialRule{"accounts", fmt.Errorf("%w: accounts[index − 1] is not the request's user id", protocol.ErrMalformed)}
	}
	if err := realmkey.CheckShare(body.Commitments, int(vm.Index), vm.Share); err != nil {
		return nil, &materialRule{"share-off-commitments", err}
	}
	if body.Limit > maxLimit {
		return nil, &materialRule{"limit", fmt.Errorf("%w: limit %d above %d", protocol.ErrMalformed, body.Limit, maxLimit)}
	}
	return body, nil
}

// manifestRules are the rules ParseManifest's layout check covers; its one
// error does not say which of them failed.
var manifestRules = map[string]bool{"threshold": true, "realms-duplicate": true, "commitment-count": true}

func checkVersionMaterialVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	body, bad := realmCheckMaterial(c.Data, c.Hex(t, "user-id"), c.Hex(t, "realm-key"), uint(c.Uint(t, "max-limit")))
	if bad != nil {
		if want := c.Header["rule"]; bad.rule != want && !(bad.rule == "manifest" && manifestRules[want]) {
			t.Errorf("refused by the %s check (%v), the vector names %s", bad.rule, bad.err, want)
		}
		if bad.rule == "anchor-signature" && !errors.Is(bad.err, protocol.ErrMalformed) {
			t.Errorf("a bad anchor signature is not malformed: %v (REALMS.md 7: the realm answers malformed)", bad.err)
		}
		return realmOutcome(bad.err), bad.err
	}
	var vm protocol.VersionMaterial
	if err := protocol.Unmarshal(c.Data, &vm); err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "the material's manifest", vm.Manifest, byPath["messages/manifest"].Data)
	if again, err := protocol.Marshal(&vm); err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("encodes again as %x (%v)", again, err)
	}
	if body.IndexOf(c.Hex(t, "realm-key")) != vm.Index {
		t.Errorf("IndexOf(realm key) = %d, material index %d", body.IndexOf(c.Hex(t, "realm-key")), vm.Index)
	}
	return "success", nil
}

func checkRealmReceiptVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	var s protocol.SignedRealmReceipt
	if err := protocol.Unmarshal(c.Data, &s); err != nil {
		return realmOutcome(err), err
	}
	r, err := s.Verify(ed25519.PublicKey(c.Hex(t, "public-key")))
	if err != nil {
		return realmOutcome(err), err
	}
	if len(s.Body) != protocol.RealmReceiptBodySize {
		t.Errorf("body of %d bytes", len(s.Body))
	}
	if uint64(r.Kind) != c.Uint(t, "kind") {
		t.Errorf("kind %d", r.Kind)
	}
	if uint64(len(r.Padding)) != c.Uint(t, "padding-length") {
		t.Errorf("padding of %d bytes", len(r.Padding))
	}
	// The length before padding: the receipt with an empty padding field
	// (key 0x10 and bstr header 0x40, two bytes) less those two bytes.
	bare := *r
	bare.Padding = []byte{}
	enc, err := protocol.Marshal(&bare)
	if err != nil {
		t.Fatal(err)
	}
	if pre := uint64(len(enc) - 2); pre != c.Uint(t, "pre-padding-length") {
		t.Errorf("pre-padding length %d", pre)
	}
	equalBytes(t, "receipt hash", protocol.RealmReceiptHash(&s), c.Hex(t, "receipt-hash"))
	if again, err := protocol.Marshal(r); err != nil || !bytes.Equal(again, s.Body) {
		t.Errorf("the body encodes again as %x (%v)", again, err)
	}
	if again, err := protocol.Marshal(&s); err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("encodes again as %x (%v)", again, err)
	}
	// REALMS.md 6.3's figures: 299 bytes before padding with a 1-byte user
	// id and no record, 314 with a 16-byte account id, at most 366.
	switch strings.TrimPrefix(c.Path, "messages/receipt-") {
	case "smallest":
		if len(r.UserID) != 1 || r.State != protocol.RealmNoRecord || c.Uint(t, "pre-padding-length") != 299 {
			t.Errorf("smallest: user id of %d bytes, state %d", len(r.UserID), r.State)
		}
	case "largest":
		if len(r.UserID) != protocol.MaxUserIDSize || c.Uint(t, "pre-padding-length") != 366 {
			t.Errorf("largest: user id of %d bytes", len(r.UserID))
		}
	case "attempt":
		equalBytes(t, "evaluation hash", r.EvaluationHash, byPath["messages/evaluation-hash"].Data)
	case "locked":
		if r.RevivableMillis == 0 || r.TriesLeft != 0 || r.State != protocol.RealmLocked {
			t.Errorf("locked: revivable %d, tries left %d, state %d", r.RevivableMillis, r.TriesLeft, r.State)
		}
	default:
		if c.Uint(t, "pre-padding-length") != 314 {
			t.Errorf("a receipt with a 16-byte account id is 314 bytes before padding (REALMS.md 6.3)")
		}
	}
	return "success", nil
}

func checkEvaluationHashVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	equalBytes(t, "manifest hash", c.Hex(t, "manifest-hash"), protocol.ManifestHash(byPath["messages/manifest"].Data))
	got := protocol.EvaluationHash(c.Hex(t, "manifest-hash"), uint(c.Uint(t, "index")), c.Hex(t, "blinded"),
		c.Hex(t, "evaluated"), c.Hex(t, "proof"), c.Hex(t, "handle"))
	equalBytes(t, "evaluation hash", got, c.Data)
	return "success", nil
}

// openRequestEvaluate is the realm opening messages/request-evaluate with
// its fixed HPKE key.
func openRequestEvaluate(t *testing.T, c *vectorfile.Case) (*protocol.RealmRequest, *protocol.RealmInner, *protocol.RealmEvaluate, *protocol.RealmSecret, error) {
	t.Helper()
	key, err := protocol.HPKEKeyFromBytes(c.Hex(t, "realm-hpke-private-key"))
	if err != nil {
		t.Fatal(err)
	}
	var req protocol.RealmRequest
	if err := protocol.Decode(c.Data, protocol.TypeRealmEvaluate, &req); err != nil {
		return nil, nil, nil, nil, err
	}
	var body protocol.RealmEvaluate
	inner, secret, err := protocol.OpenRealmRequest(key, protocol.TypeRealmEvaluate, &req, &body)
	return &req, inner, &body, secret, err
}

func checkRequestEvaluateVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	req, inner, body, secret, err := openRequestEvaluate(t, c)
	if err != nil {
		return realmOutcome(err), err
	}
	equalBytes(t, "request hash", secret.RequestHash, c.Hex(t, "request-hash"))
	encReq, _ := protocol.Marshal(req)
	equalBytes(t, "RealmRequestHash", protocol.RealmRequestHash(protocol.TypeRealmEvaluate, encReq), c.Hex(t, "request-hash"))
	equalBytes(t, "routed user id", req.UserID, c.Hex(t, "user-id"))
	eph, err := ecdh.X25519().NewPrivateKey(c.Hex(t, "ephemeral-private-key"))
	if err != nil {
		t.Fatal(err)
	}
	equalBytes(t, "enc = the ephemeral public key", req.Enc, eph.PublicKey().Bytes())
	b, err := protocol.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	inner.Body = b
	again, err := protocol.Marshal(inner)
	if err != nil || !bytes.Equal(again, c.Hex(t, "inner")) {
		t.Errorf("the inner encodes again as %x (%v)", again, err)
	}
	equalBytes(t, "blinded", body.Blinded, byPath["evaluate/2-of-3-root"].Hex(t, "blinded"))
	if again, err := protocol.Encode(protocol.TypeRealmEvaluate, req); err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("encodes again as %x (%v)", again, err)
	}
	return "success", nil
}

func checkReplyEvaluateVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	reqCase := byPath["messages/request-evaluate"]
	_, inner, body, secret, err := openRequestEvaluate(t, reqCase)
	if err != nil {
		t.Fatalf("messages/request-evaluate does not open: %v", err)
	}
	equalBytes(t, "request hash", secret.RequestHash, c.Hex(t, "request-hash"))
	var reply protocol.RealmReply
	if err := protocol.Decode(c.Data, protocol.TypeRealmEvaluate, &reply); err != nil {
		return realmOutcome(err), err
	}
	equalBytes(t, "response nonce", reply.ResponseNonce, c.Hex(t, "response-nonce"))
	var ev protocol.RealmEvaluateReply
	if err := secret.OpenReply(&reply, &ev); err != nil {
		return realmOutcome(err), err
	}
	if again, err := protocol.Marshal(&ev); err != nil || !bytes.Equal(again, c.Hex(t, "inner")) {
		t.Errorf("the inner encodes again as %x (%v)", again, err)
	}
	if again, err := protocol.Encode(protocol.TypeRealmEvaluate, &reply); err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("encodes again as %x (%v)", again, err)
	}
	// What the client checks next: realm 1's receipt, bound to this
	// request, naming this answer.
	realm1 := byPath["messages/receipt-attempt"].Hex(t, "public-key")
	r, err := ev.Receipt.Verify(ed25519.PublicKey(realm1))
	if err != nil {
		return realmOutcome(err), err
	}
	equalBytes(t, "receipt's request hash", r.RequestHash, secret.RequestHash)
	equalBytes(t, "receipt's client nonce", r.ClientNonce, inner.ClientNonce)
	equalBytes(t, "E_1 ‖ proof", append(append([]byte(nil), ev.Evaluated...), ev.Proof...), byPath["evaluate/2-of-3-realm-1"].Data)
	h := protocol.EvaluationHash(protocol.ManifestHash(byPath["messages/manifest"].Data), 1, body.Blinded, ev.Evaluated, ev.Proof, ev.Handle)
	equalBytes(t, "receipt's evaluation hash", r.EvaluationHash, h)
	return "success", nil
}

func checkSessionCommandVector(t *testing.T, c *vectorfile.Case, byPath map[string]*vectorfile.Case) (string, error) {
	var m protocol.Session
	if err := protocol.Decode(c.Data, protocol.TypeRealmSession, &m); err != nil {
		return realmOutcome(err), err
	}
	equalBytes(t, "handle", m.Handle, c.Hex(t, "handle"))
	equalBytes(t, "to-vault = schedule/session's", c.Hex(t, "to-vault"), byPath["schedule/session"].Hex(t, "to-vault"))
	var key protocol.ChannelKey
	copy(key[:], c.Hex(t, "to-vault"))
	var cmd protocol.RealmCommand
	if err := protocol.OpenMessage(&key, m.Seq, m.Handle, m.Sealed, &cmd); err != nil {
		return realmOutcome(err), err
	}
	if m.Seq != 1 || cmd.Command != protocol.RealmStatus {
		t.Errorf("seq %d, command %d: the vector is a status command at sequence 1", m.Seq, cmd.Command)
	}
	if again, err := protocol.Marshal(&cmd); err != nil || !bytes.Equal(again, c.Hex(t, "command")) {
		t.Errorf("the command encodes again as %x (%v)", again, err)
	}
	equalBytes(t, "request hash", protocol.RealmCommandHash(m.Handle, m.Seq, m.Sealed), c.Hex(t, "request-hash"))
	if again, err := protocol.Encode(protocol.TypeRealmSession, &m); err != nil || !bytes.Equal(again, c.Data) {
		t.Errorf("encodes again as %x (%v)", again, err)
	}
	return "success", nil
}
