package releaselog_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/cofferhsm/coffer/internal/vectorfile"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// The release-log vectors are ../testdata/releaselog (README.md there),
// written by gen_vectors.py there from the C2SP and RFC 6962 specifications,
// not by this package.
const releaseLogVectorDir = "../testdata/releaselog"

// releaseLogOutcomes is every outcome a folder's cases may expect. Each one
// must be reached by at least one case, so that a folder cannot silently
// lose its refusals.
var releaseLogOutcomes = map[string][]string{
	"entry":      {"valid", "malformed"},
	"checkpoint": {"valid", "not-witnessed", "bad-checkpoint", "bad-policy", "stale"},
	"policy":     {"valid", "bad-policy"},
	"proof":      {"included", "not-included", "malformed", "not-witnessed", "bad-checkpoint"},
	"view":       {"consistent", "inconsistent"},
}

// TestReleaseLogVectors walks every case and checks that releaselog reaches
// its expected outcome, and for every success exactly the case's values.
func TestReleaseLogVectors(t *testing.T) {
	cases := vectorfile.Load(t, releaseLogVectorDir)
	reached := map[string]map[string]int{}
	for i := range cases {
		c := &cases[i]
		var check func(*testing.T, *vectorfile.Case) string
		switch c.Group() {
		case "entry":
			check = checkEntryVector
		case "checkpoint":
			check = checkCheckpointVector
		case "proof":
			check = checkProofVector
		case "view":
			check = checkViewVector
		case "policy":
			check = checkPolicyVector
		default:
			t.Errorf("%s: a folder this test does not know", c.Path)
			continue
		}
		t.Run(c.Path, func(t *testing.T) {
			if got := check(t, c); got != c.Expect {
				t.Errorf("outcome %q, the vector expects %q (%s)", got, c.Expect, strings.Join(c.Comments, " "))
			}
		})
		if reached[c.Group()] == nil {
			reached[c.Group()] = map[string]int{}
		}
		reached[c.Group()][c.Expect]++
	}
	for group, outcomes := range releaseLogOutcomes {
		for _, o := range outcomes {
			if reached[group][o] == 0 {
				t.Errorf("%s/: no case expects %q", group, o)
			}
		}
		for o := range reached[group] {
			if !contains(outcomes, o) {
				t.Errorf("%s/: cases expect %q, an outcome this folder does not have", group, o)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// outcome names the result of a releaselog check as the vector files do.
func outcome(err error, success string) string {
	switch {
	case err == nil:
		return success
	case errors.Is(err, releaselog.ErrMalformedEntry):
		return "malformed"
	case errors.Is(err, releaselog.ErrNotIncluded):
		return "not-included"
	case errors.Is(err, releaselog.ErrNotWitnessed):
		return "not-witnessed"
	case errors.Is(err, releaselog.ErrBadCheckpoint):
		return "bad-checkpoint"
	case errors.Is(err, releaselog.ErrBadPolicy):
		return "bad-policy"
	case errors.Is(err, releaselog.ErrInconsistent):
		return "inconsistent"
	case errors.Is(err, releaselog.ErrStaleCheckpoint):
		return "stale"
	}
	return "unexpected error: " + err.Error()
}

// vectorPolicy reads a case's policy, which must also print back as the
// text it was read from.
func vectorPolicy(t *testing.T, c *vectorfile.Case) (*releaselog.Policy, error) {
	t.Helper()
	text := c.Hex(t, "policy")
	p, err := releaselog.ParsePolicy(text)
	if err != nil {
		return nil, err
	}
	if p.String() != string(text) {
		t.Errorf("the policy prints as\n%s\nnot as it was read:\n%s", p, text)
	}
	return p, nil
}

func equalHex(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s = %x, the vector has %x", what, got, want)
	}
}

// checkEntryVector: a valid entry parses, encodes back to exactly its bytes
// and has the case's leaf hash (and, for an identity, bundle hash).
func checkEntryVector(t *testing.T, c *vectorfile.Case) string {
	e, err := releaselog.ParseEntry(c.Data)
	if err != nil || c.Expect != "valid" {
		return outcome(err, "valid")
	}
	again, err := e.Marshal()
	if err != nil {
		t.Fatalf("a parsed entry does not encode: %v", err)
	}
	equalHex(t, "the entry encoded again", again, c.Data)
	equalHex(t, "leaf hash", releaselog.LeafHash(c.Data), c.Hex(t, "leaf-hash"))
	if kind := e.Kind.String(); kind != c.Header["kind"] {
		t.Errorf("kind %s, the vector has %s", kind, c.Header["kind"])
	}
	if e.Kind == releaselog.KindIdentity {
		equalHex(t, "bundle hash", releaselog.BundleHash(e.Identity), c.Hex(t, "bundle-hash"))
	}
	return "valid"
}

// checkCheckpointVector: a valid checkpoint commits to the case's size and
// root, cosigned by exactly the witnesses it names, in signature order, at
// the times it names. A case with a `now` is verified with that clock
// (VerifyCheckpointAt: the policy's max-age); the others without.
func checkCheckpointVector(t *testing.T, c *vectorfile.Case) string {
	p, err := vectorPolicy(t, c)
	if err != nil {
		return outcome(err, "valid")
	}
	var cp *releaselog.Checkpoint
	if c.Has("now") {
		cp, err = p.VerifyCheckpointAt(c.Data, time.Unix(int64(c.Uint(t, "now")), 0))
	} else {
		if p.MaxAge != 0 {
			t.Fatal("a case whose policy has a max-age and no now")
		}
		cp, err = p.VerifyCheckpoint(c.Data)
	}
	if err != nil || c.Expect != "valid" {
		return outcome(err, "valid")
	}
	var times []string
	for _, ts := range cp.Cosigned {
		times = append(times, strconv.FormatInt(ts.Unix(), 10))
	}
	if got := strings.Join(times, ","); got != c.Header["cosigned"] {
		t.Errorf("cosigned at %s, the vector has %q", got, c.Header["cosigned"])
	}
	if cp.Size != c.Uint(t, "size") || cp.Origin != p.Origin {
		t.Errorf("checkpoint of %q size %d, the vector has size %s", cp.Origin, cp.Size, c.Header["size"])
	}
	equalHex(t, "root", cp.Hash, c.Hex(t, "root"))
	equalHex(t, "raw", cp.Raw, c.Data)
	if got := strings.Join(cp.Witnessed, ","); got != c.Header["witnessed"] {
		t.Errorf("witnessed by %q, the vector has %q", got, c.Header["witnessed"])
	}
	return "valid"
}

// checkProofVector: an included entry is the case's entry, at its index, in
// the tree of its size and root.
func checkProofVector(t *testing.T, c *vectorfile.Case) string {
	p, err := vectorPolicy(t, c)
	if err != nil {
		t.Fatalf("a proof case's policy: %v", err)
	}
	pr, err := releaselog.ParseProof(c.Data)
	if err != nil {
		return "malformed"
	}
	e, cp, err := p.VerifyProof(pr)
	if err != nil || c.Expect != "included" {
		return outcome(err, "included")
	}
	if pr.Index != c.Uint(t, "index") || cp.Size != c.Uint(t, "size") {
		t.Errorf("entry %d of %d, the vector has %s of %s", pr.Index, cp.Size, c.Header["index"], c.Header["size"])
	}
	equalHex(t, "root", cp.Hash, c.Hex(t, "root"))
	equalHex(t, "leaf hash", releaselog.LeafHash(pr.Entry), c.Hex(t, "leaf-hash"))
	again, err := e.Marshal()
	if err != nil {
		t.Fatalf("the included entry does not encode: %v", err)
	}
	equalHex(t, "the entry encoded again", again, pr.Entry)
	bundle, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	equalHex(t, "the proof bundle encoded again", bundle, c.Data)
	return "included"
}

// viewStep is one step of a view case: a checkpoint and the entries it adds.
type viewStep struct {
	_          struct{} `cbor:",toarray"`
	Checkpoint []byte
	Entries    [][]byte
}

// checkViewVector runs a view from empty through the case's steps: every
// step but the last must be accepted; the last gives the outcome. Either
// way the view must end at final-size and final-root: a refused step leaves
// it where it was.
func checkViewVector(t *testing.T, c *vectorfile.Case) string {
	p, err := vectorPolicy(t, c)
	if err != nil {
		t.Fatalf("a view case's policy: %v", err)
	}
	var steps []viewStep
	if err := cbor.Unmarshal(c.Data, &steps); err != nil || uint64(len(steps)) != c.Uint(t, "steps") {
		t.Fatalf("the case's steps do not decode: %v", err)
	}
	var v releaselog.View
	result := ""
	for i, s := range steps {
		cp, err := p.VerifyCheckpoint(s.Checkpoint)
		if err != nil {
			t.Fatalf("step %d: the checkpoint does not verify: %v", i, err)
		}
		before := v.Size
		err = v.Extend(cp, s.Entries)
		if i < len(steps)-1 && err != nil {
			t.Fatalf("step %d (%d to %d): %v", i, before, cp.Size, err)
		}
		result = outcome(err, "consistent")
	}
	if v.Size != c.Uint(t, "final-size") {
		t.Errorf("the view ends at size %d, the vector has %s", v.Size, c.Header["final-size"])
	}
	equalHex(t, "the view's root", v.Root, c.Hex(t, "final-root"))
	if v.Size > 0 {
		// The range the view kept, refused step or not, still gives its root.
		r, err := (&compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}).NewRange(0, v.Size, v.Range)
		if err != nil {
			t.Fatalf("the view's range: %v", err)
		}
		root, err := r.GetRootHash(nil)
		if err != nil {
			t.Fatal(err)
		}
		equalHex(t, "the root of the view's range", root, v.Root)
	}
	return result
}

// checkPolicyVector: a valid policy has the case's max-age and prints as
// its canonical text.
func checkPolicyVector(t *testing.T, c *vectorfile.Case) string {
	p, err := releaselog.ParsePolicy(c.Data)
	if err != nil || c.Expect != "valid" {
		return outcome(err, "valid")
	}
	if got := uint64(p.MaxAge / time.Second); got != c.Uint(t, "max-age-seconds") || p.MaxAge%time.Second != 0 {
		t.Errorf("max-age %v, the vector has %s seconds", p.MaxAge, c.Header["max-age-seconds"])
	}
	if p.String() != string(c.Hex(t, "canonical")) {
		t.Errorf("prints as\n%s\nthe vector has\n%s", p, c.Hex(t, "canonical"))
	}
	return "valid"
}
