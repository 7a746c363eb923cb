package bootcheck

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

const board = "qemu"

var osImage = bytes.Repeat([]byte("an OS image "), 1000)

func hashOf(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

// testLog logs release 3 of osImage for board, between other entries, and
// returns the log and the entry's index.
func testLog(t *testing.T) (*releaselogtest.Log, uint64) {
	l := releaselogtest.New(t, "coffer.test/releases", 3)
	l.Append(releaselogtest.Release(1, board, hashOf([]byte("an older OS"))))
	idx := l.Append(releaselogtest.Release(3, board, hashOf(osImage)))
	l.Append(releaselogtest.Release(2, "usbarmory", hashOf(osImage)))
	return l, idx
}

func encode(t *testing.T, pr *releaselog.Proof) []byte {
	t.Helper()
	b, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoggedReleaseBoots(t *testing.T) {
	l, idx := testLog(t)
	p := l.Policy(2)
	for _, min := range []uint64{0, 3} {
		res, err := Check(p, board, osImage, encode(t, l.Proof(idx, 2)), min)
		if err != nil {
			t.Fatalf("minimum %d: %v", min, err)
		}
		if res.Info.Release != 3 || !bytes.Equal(res.Info.OSHash[:], hashOf(osImage)) || res.Info.ReleaseKey != keyID(t, p) {
			t.Fatalf("boot info %+v", res.Info)
		}
	}
}

// The release key's ID is the key's, not its spelling's: a policy that
// writes the same key otherwise (the key hash in upper case, a carriage
// return inside the base64, both of which the note library reads as the
// same key) gives the same ID, so a bootloader rebuilt with it opens the
// same vault. Another key, or the same key material under another name, is
// another ID.
//
// The key is random, and its hash is spelled in digits alone (upper case
// the same as lower) once in about 43 keys; the test draws another key
// until the hash has a letter, so that both spellings always differ.
func TestReleaseKeyIDIsTheKeys(t *testing.T) {
	var l *releaselogtest.Log
	var p *releaselog.Policy
	var name, hash, key64 string
	for tries := 0; hash == strings.ToUpper(hash); tries++ {
		if tries == 100 {
			t.Fatalf("100 release keys had hashes without a letter, the last %q", p.LogKey)
		}
		l, _ = testLog(t)
		p = l.Policy(2)
		var rest string
		name, rest, _ = strings.Cut(p.LogKey, "+")
		hash, key64, _ = strings.Cut(rest, "+")
	}
	id := keyID(t, p)
	for _, spelling := range []string{
		name + "+" + strings.ToUpper(hash) + "+" + key64,
		name + "+" + hash + "+" + key64[:20] + "\r" + key64[20:],
	} {
		q := *p
		q.LogKey = spelling
		if err := q.Check(); err != nil || spelling == p.LogKey {
			t.Fatalf("%q is not another valid spelling of the release key: %v", spelling, err)
		}
		if got := keyID(t, &q); got != id {
			t.Errorf("the release key spelled %q has ID %x, spelled %q %x", spelling, got, p.LogKey, id)
		}
	}
	raw, _ := base64.StdEncoding.DecodeString(key64)
	renamed, err := note.NewEd25519VerifierKey("another.test/releases", ed25519.PublicKey(raw[1:]))
	if err != nil {
		t.Fatal(err)
	}
	for _, other := range []*releaselog.Policy{
		releaselogtest.New(t, l.Origin, 3).Policy(2),
		{Origin: "another.test/releases", LogKey: renamed, Witnesses: p.Witnesses, Quorum: 2},
	} {
		if err := other.Check(); err != nil {
			t.Fatal(err)
		}
		if keyID(t, other) == id {
			t.Errorf("the release keys %q and %q have one ID", other.LogKey, p.LogKey)
		}
	}
}

func keyID(t *testing.T, p *releaselog.Policy) tos.ReleaseKeyID {
	t.Helper()
	id, err := ReleaseKeyID(p)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Each way an attacker with the boot storage could try to boot something
// else is refused, naming why.
func TestBootRefusals(t *testing.T) {
	l, idx := testLog(t)
	p := l.Policy(2)
	good := l.Proof(idx, 2)
	modified := bytes.Clone(osImage)
	modified[len(modified)/2] ^= 1

	// An entry for this image that was never appended, passed off under
	// the index and inclusion proof of the entry that is there.
	unlogged := *good
	unlogged.Entry, _ = releaselogtest.Release(4, board, hashOf(osImage)).Marshal()
	// A log signed by someone else's release key, with the same
	// witnesses' cosignatures.
	rogue := releaselogtest.New(t, "coffer.test/releases", 0)
	rogue.Witnesses, rogue.WitnessKeys = l.Witnesses, l.WitnessKeys
	rIdx := rogue.Append(releaselogtest.Release(9, board, hashOf(osImage)))
	// A logged revocation of this very image, not a release; and leaf
	// data that is no entry at all.
	revIdx := l.Append(&releaselog.Entry{Kind: releaselog.KindRevocation, Revocation: &releaselog.Revocation{
		Target: releaselog.KindRelease, Hash: hashOf(osImage), Reason: "test"}})
	junkIdx := l.AppendData([]byte("not an entry at all"))

	for name, c := range map[string]struct {
		img   []byte
		proof []byte
		min   uint64
		want  []error
	}{
		"modified image":            {modified, encode(t, good), 0, []error{ErrHashMismatch}},
		"one witness short":         {osImage, encode(t, l.Proof(idx, 1)), 0, []error{ErrNotLogged, releaselog.ErrNotWitnessed}},
		"no witness":                {osImage, encode(t, l.Proof(idx, 0)), 0, []error{ErrNotLogged, releaselog.ErrNotWitnessed}},
		"entry not in the log":      {osImage, encode(t, &unlogged), 0, []error{ErrNotLogged, releaselog.ErrNotIncluded}},
		"proof for another entry":   {osImage, encode(t, l.Proof(0, 2)), 0, []error{ErrHashMismatch}},
		"release for another board": {osImage, encode(t, l.Proof(idx+1, 2)), 0, []error{ErrWrongBoard}},
		"another release key":       {osImage, encode(t, rogue.Proof(rIdx, 2)), 0, []error{ErrNotLogged, releaselog.ErrBadCheckpoint}},
		"older than the minimum":    {osImage, encode(t, good), 4, []error{ErrDowngrade}},
		"not a release entry":       {osImage, encode(t, l.Proof(revIdx, 2)), 0, []error{ErrNotRelease}},
		"not an entry":              {osImage, encode(t, l.Proof(junkIdx, 2)), 0, []error{ErrNotLogged, releaselog.ErrMalformedEntry}},
		"garbage proof":             {osImage, []byte("garbage"), 0, []error{ErrNotLogged}},
		"empty proof":               {osImage, nil, 0, []error{ErrNotLogged}},
	} {
		res, err := Check(p, board, c.img, c.proof, c.min)
		if err == nil {
			t.Errorf("%s: booted (%+v)", name, res.Info)
			continue
		}
		for _, w := range c.want {
			if !errors.Is(err, w) {
				t.Errorf("%s: %v, want %v", name, err, w)
			}
		}
	}
}

// Whatever the boot storage holds as a proof bundle, nothing boots unless
// it verifies: random bytes never pass for a witnessed release.
func FuzzCheckProof(f *testing.F) {
	l := releaselogtest.New(f, "coffer.test/releases", 2)
	idx := l.Append(releaselogtest.Release(1, board, hashOf(osImage)))
	good, _ := l.Proof(idx, 2).Marshal()
	p := l.Policy(2)
	f.Add(good)
	weak, _ := l.Proof(idx, 1).Marshal()
	f.Add(weak)
	f.Fuzz(func(t *testing.T, proof []byte) {
		res, err := Check(p, board, osImage, proof, 0)
		if err != nil {
			return
		}
		// Only an encoding of a genuinely witnessed proof may pass.
		pr, perr := releaselog.ParseProof(proof)
		if perr != nil {
			t.Fatal("booted on a proof that does not parse")
		}
		if _, _, verr := p.VerifyProof(pr); verr != nil || res.Info.Release != 1 {
			t.Fatal("booted on a proof that does not verify")
		}
	})
}
