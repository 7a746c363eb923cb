package vault

import (
	"context"
	"testing"

	"github.com/cloudflare/circl/group"
	"github.com/cofferhsm/coffer/protocol"
)

// registerRefused checks that realm 1 refuses material with code and
// stores nothing.
func (s *realmSet) registerRefused(material protocol.VersionMaterial, code protocol.Code) {
	s.t.Helper()
	_, err := s.realms[0].RegisterOpen(context.Background(), material, s.version.ID())
	wantCode(s.t, err, code)
	if c := s.committedRealm(1); c != nil {
		s.t.Fatal("refused material left a record")
	}
}

// 5.5: a share is accepted only on the manifest's commitments: another
// realm's share, or one of another dealing, would make a version that t
// realms cannot evaluate consistently.
func TestRealmRefusesAShareOffItsCommitments(t *testing.T) {
	s := newRealmSetUnregistered(t, 3, 2, "pw", 5)
	m := s.version.Material(1)
	m.Share = s.version.Dealing.Shares[1]
	s.registerRefused(m, protocol.CodeMalformed)
	other := s.newVersion("pw", 5, nil)
	m = s.version.Material(1)
	m.Share = other.Dealing.Shares[0]
	s.registerRefused(m, protocol.CodeMalformed)
}

// 5.1: a polynomial with an identity commitment has a lower degree, so
// fewer than t realms hold the key; here every realm would hold k itself.
// A zero share, with commitments whose public share is the identity, is
// refused too.
func TestRealmRefusesIdentityCommitmentsAndZeroShares(t *testing.T) {
	g := group.Ristretto255
	k := g.RandomNonZeroScalar(nil)
	c0, _ := g.NewElement().MulGen(k).MarshalBinaryCompress()
	identity, _ := g.Identity().MarshalBinaryCompress()
	kb, _ := k.MarshalBinary()

	s := newRealmSetUnregistered(t, 3, 2, "pw", 5)
	degenerate := s.newVersion("pw", 5, func(b *protocol.ManifestBody) { b.Commitments = [][]byte{c0, identity} })
	m := degenerate.Material(1)
	m.Share = kb
	s.registerRefused(m, protocol.CodeMalformed)

	// C1 = −C0: Y_1 = C0 + C1 is the identity, the share 0 "matches".
	neg, _ := g.NewElement().Neg(g.NewElement().MulGen(k)).MarshalBinaryCompress()
	zeroed := s.newVersion("pw", 5, func(b *protocol.ManifestBody) { b.Commitments = [][]byte{c0, neg} })
	m = zeroed.Material(1)
	m.Share = make([]byte, protocol.ScalarSize)
	s.registerRefused(m, protocol.CodeMalformed)
}

// 4.1 and section 7: material is accepted only for this realm at its
// index, for the account that sends it, under a manifest its anchor signed
// and with a limit this vault allows.
func TestRealmRefusesAManifestForAnotherAccount(t *testing.T) {
	s := newRealmSetUnregistered(t, 3, 2, "pw", 5)
	other := s.newVersion("pw", 5, func(b *protocol.ManifestBody) { b.Accounts[0] = []byte("someone else") })
	s.registerRefused(other.Material(1), protocol.CodeMalformed)

	m := s.version.Material(2) // realm 2's material, sent to realm 1
	s.registerRefused(m, protocol.CodeMalformed)

	m = s.version.Material(1)
	m.Manifest = append([]byte(nil), m.Manifest...)
	m.Manifest[len(m.Manifest)-1] ^= 1 // the anchor's signature
	s.registerRefused(m, protocol.CodeMalformed)

	big := s.newVersion("pw", protocol.DefaultLimit+1, nil)
	s.registerRefused(big.Material(1), protocol.CodeLimit)

	// The right material still registers: the refusals left nothing behind.
	if _, err := s.realms[0].RegisterOpen(context.Background(), s.version.Material(1), s.version.ID()); err != nil {
		t.Fatal(err)
	}
}
