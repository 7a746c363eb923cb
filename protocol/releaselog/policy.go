package releaselog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// Errors of checkpoint verification, wrapped with details.
var (
	// ErrBadCheckpoint: not a checkpoint of the pinned log signed by its
	// release key.
	ErrBadCheckpoint = errors.New("releaselog: the checkpoint is not signed by the pinned release key")
	// ErrNotWitnessed: signed by the log, but fewer witnesses than the
	// policy's quorum cosigned it.
	ErrNotWitnessed = errors.New("releaselog: the checkpoint lacks the witness cosignatures the policy requires")
	// ErrBadPolicy: a policy that does not parse or cannot be met.
	ErrBadPolicy = errors.New("releaselog: bad log policy")
)

// MaxWitnesses bounds a policy's witnesses.
const MaxWitnesses = 16

// Policy is what a verifier pins: which log (its origin and release key)
// and which witnesses, of which Quorum must cosign every checkpoint it
// accepts. A checkpoint only the log signed proves nothing to anyone else:
// the log could show each verifier its own tree. Witnesses that check
// consistency before they cosign make that split view detectable.
type Policy struct {
	Origin    string   // the checkpoint's origin line; also the release key's name
	LogKey    string   // the release key, as a note verifier key (Ed25519)
	Witnesses []string // witness keys, as cosignature/v1 verifier keys
	Quorum    int      // how many distinct witnesses must cosign
	// MaxAge, when not 0, is how old a checkpoint's witnessing may be:
	// VerifyCheckpointAt requires Quorum of the witnesses to have
	// cosigned it within MaxAge of the verifier's clock (freshness.go).
	// 0: the policy sets no bound (no max-age line).
	MaxAge time.Duration
}

// ParsePolicy reads a policy's text form (RELEASES.md):
//
//	origin ORIGIN
//	log VKEY
//	witness VKEY        (one line per witness)
//	quorum K
//	max-age DURATION    (optional: N followed by s, m or h, e.g. 168h)
//
// Blank lines and lines starting with # are ignored.
func ParsePolicy(text []byte) (*Policy, error) {
	p := &Policy{Quorum: -1}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		value = strings.TrimSpace(value)
		switch {
		case key == "origin" && p.Origin == "":
			p.Origin = value
		case key == "log" && p.LogKey == "":
			p.LogKey = value
		case key == "witness":
			p.Witnesses = append(p.Witnesses, value)
		case key == "quorum" && p.Quorum < 0:
			q, err := strconv.Atoi(value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: quorum %q", ErrBadPolicy, n, value)
			}
			p.Quorum = q
		case key == "max-age" && p.MaxAge == 0:
			d, err := parseMaxAge(value)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: %v", ErrBadPolicy, n, err)
			}
			p.MaxAge = d
		default:
			return nil, fmt.Errorf("%w: line %d: unexpected %q", ErrBadPolicy, n, key)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPolicy, err)
	}
	if err := p.Check(); err != nil {
		return nil, err
	}
	return p, nil
}

// String is the policy's text form, which ParsePolicy reads back.
func (p *Policy) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "origin %s\nlog %s\n", p.Origin, p.LogKey)
	for _, w := range p.Witnesses {
		fmt.Fprintf(&b, "witness %s\n", w)
	}
	fmt.Fprintf(&b, "quorum %d\n", p.Quorum)
	if p.MaxAge != 0 {
		fmt.Fprintf(&b, "max-age %s\n", formatMaxAge(p.MaxAge))
	}
	return b.String()
}

// Check reports whether the policy is complete and can be met: its keys
// parse, the release key is named after the origin, no witness is listed
// twice, the quorum is at least 1 and at most the witnesses, and a max-age,
// if any, is within its bounds.
func (p *Policy) Check() error {
	_, _, err := p.verifiers()
	return err
}

func (p *Policy) verifiers() (note.Verifier, []note.Verifier, error) {
	if p.MaxAge != 0 && (p.MaxAge < MinMaxAge || p.MaxAge > MaxMaxAge || p.MaxAge%time.Second != 0) {
		return nil, nil, fmt.Errorf("%w: max-age %v (whole seconds, from %v to %v)", ErrBadPolicy, p.MaxAge, MinMaxAge, MaxMaxAge)
	}
	if p.Origin == "" || strings.ContainsAny(p.Origin, "\n+ ") {
		return nil, nil, fmt.Errorf("%w: origin %q", ErrBadPolicy, p.Origin)
	}
	logV, err := note.NewVerifier(p.LogKey)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: release key: %v", ErrBadPolicy, err)
	}
	if logV.Name() != p.Origin {
		return nil, nil, fmt.Errorf("%w: release key is named %q, not the origin %q", ErrBadPolicy, logV.Name(), p.Origin)
	}
	if len(p.Witnesses) > MaxWitnesses {
		return nil, nil, fmt.Errorf("%w: %d witnesses (at most %d)", ErrBadPolicy, len(p.Witnesses), MaxWitnesses)
	}
	if p.Quorum < 1 || p.Quorum > len(p.Witnesses) {
		return nil, nil, fmt.Errorf("%w: quorum %d of %d witnesses (at least one witness must cosign)", ErrBadPolicy, p.Quorum, len(p.Witnesses))
	}
	ws := make([]note.Verifier, 0, len(p.Witnesses))
	seen := map[string]bool{}
	for _, k := range p.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(k)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: witness key %q: %v", ErrBadPolicy, k, err)
		}
		id := witnessID(v.Name(), v.KeyHash())
		if seen[id] || v.Name() == logV.Name() && v.KeyHash() == logV.KeyHash() {
			return nil, nil, fmt.Errorf("%w: witness %q listed twice", ErrBadPolicy, v.Name())
		}
		seen[id] = true
		ws = append(ws, v)
	}
	return logV, ws, nil
}

func witnessID(name string, hash uint32) string { return fmt.Sprintf("%s+%08x", name, hash) }

// Checkpoint is a verified checkpoint: the tree it commits to, the note as
// it was signed, and the witnesses that cosigned it.
type Checkpoint struct {
	log.Checkpoint
	Raw       []byte   // the signed note, as received
	Witnessed []string // names of the witnesses whose cosignatures verified
	// Cosigned[i] is when Witnessed[i] cosigned, as its cosignature/v1
	// timestamp says (whole seconds, the witness's clock).
	Cosigned []time.Time
}

// VerifyCheckpoint checks a signed checkpoint against the policy: signed by
// the release key, for the pinned origin, and cosigned by at least Quorum
// distinct witnesses of the policy, its size and root lines spelled as
// tlog-checkpoint spells them (no leading zeroes, canonical base64).
// Signatures by keys it does not know are ignored. It does not look at the
// cosignatures' times: VerifyCheckpointAt does, for a policy with a
// max-age.
func (p *Policy) VerifyCheckpoint(raw []byte) (*Checkpoint, error) {
	logV, ws, err := p.verifiers()
	if err != nil {
		return nil, err
	}
	if len(raw) > maxCheckpointSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadCheckpoint, len(raw))
	}
	cp, _, n, err := log.ParseCheckpoint(raw, p.Origin, logV, ws...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	if len(cp.Hash) != 32 {
		return nil, fmt.Errorf("%w: root hash of %d bytes", ErrBadCheckpoint, len(cp.Hash))
	}
	// One tree, one text: tlog-checkpoint's size line has no leading
	// zeroes and its root is standard base64, but the parser also reads
	// "007" and base64 with non-zero padding bits. Two spellings of one
	// checkpoint would be two notes to compare, cache and cosign.
	if !strings.HasPrefix(n.Text, string(cp.Marshal())) {
		return nil, fmt.Errorf("%w: the size or root line is not in its canonical form", ErrBadCheckpoint)
	}
	got := map[string]bool{}
	var names []string
	var times []time.Time
	for _, s := range n.Sigs {
		for _, w := range ws {
			if s.Name == w.Name() && s.Hash == w.KeyHash() && !got[witnessID(s.Name, s.Hash)] {
				// Verified, so it has the cosignature/v1 layout: key ID,
				// 8-byte timestamp, signature over a message holding it.
				t, err := fnote.CoSigV1Timestamp(s)
				if err != nil {
					return nil, fmt.Errorf("%w: the cosignature of %q: %v", ErrBadCheckpoint, s.Name, err)
				}
				got[witnessID(s.Name, s.Hash)] = true
				names = append(names, s.Name)
				times = append(times, t)
			}
		}
	}
	if len(names) < p.Quorum {
		return nil, fmt.Errorf("%w: %d of the %d required cosignatures (from %d witnesses); cosigned by %q",
			ErrNotWitnessed, len(names), p.Quorum, len(ws), names)
	}
	return &Checkpoint{Checkpoint: *cp, Raw: bytes.Clone(raw), Witnessed: names, Cosigned: times}, nil
}

// maxCheckpointSize bounds a signed checkpoint: a few lines and one
// signature line per witness.
const maxCheckpointSize = 8192
