package releaselog

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/fxamacker/cbor/v2"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/cofferhsm/coffer/protocol"
)

// Kind says what a log entry records.
type Kind uint

const (
	KindRelease    Kind = 1 // a firmware release: what a vault may run
	KindIdentity   Kind = 2 // a vault identity bundle the provisioning key signed
	KindRevocation Kind = 3 // a release or an identity that must no longer be trusted
)

func (k Kind) String() string {
	switch k {
	case KindRelease:
		return "release"
	case KindIdentity:
		return "identity"
	case KindRevocation:
		return "revocation"
	}
	return fmt.Sprintf("kind %d", uint(k))
}

// ErrMalformedEntry is wrapped by every error of ParseEntry.
var ErrMalformedEntry = errors.New("releaselog: malformed entry")

// MaxEntrySize bounds an encoded entry (an identity bundle is at most 512
// bytes plus its signature; a release a few hundred).
const MaxEntrySize = 2048

// Entry is one leaf of the log: exactly one of its parts is set, the one
// Kind names. Its leaf data is its canonical CBOR encoding.
type Entry struct {
	Kind       Kind                     `cbor:"1,keyasint"`
	Release    *Release                 `cbor:"2,keyasint,omitempty"`
	Identity   *protocol.SignedIdentity `cbor:"3,keyasint,omitempty"`
	Revocation *Revocation              `cbor:"4,keyasint,omitempty"`
}

// Release is one firmware release, as reproducible builds give it.
type Release struct {
	// Version numbers releases; it only grows from one release to the
	// next, and the bootloader refuses to boot below the highest it has
	// booted (RELEASES.md, the boot chain).
	Version   uint64 `cbor:"1,keyasint"`
	Name      string `cbor:"2,keyasint"` // a human name, e.g. "v0.4.0"
	Commit    string `cbor:"3,keyasint"` // the source commit (hex)
	Toolchain string `cbor:"4,keyasint"` // e.g. "tamago-go1.26.0"
	Board     string `cbor:"5,keyasint"` // "usbarmory", "qemu" or "software"
	// Firmware is the SHA-256 of the unsigned OS ELF (which embeds the
	// applet), as the bootloader measures it: what a vault running this
	// release reports as Identity.FirmwareHash. For a software release,
	// the SHA-256 of the softvault binary.
	Firmware []byte `cbor:"6,keyasint"`
	Applet   []byte `cbor:"7,keyasint"` // SHA-256 of the applet ELF
	// BootImage is the SHA-256 of the unsigned bootloader .imx, the image
	// HAB signs (empty where there is none).
	BootImage []byte `cbor:"8,keyasint,omitempty"`
}

// Revocation withdraws trust from a release or an identity.
type Revocation struct {
	Target Kind `cbor:"1,keyasint"` // KindRelease or KindIdentity
	// Hash names what is revoked: a release by its Firmware hash, an
	// identity by BundleHash of its signed bundle.
	Hash   []byte `cbor:"2,keyasint"`
	Reason string `cbor:"3,keyasint"`
}

// Boards a release may be for.
var boards = map[string]bool{"usbarmory": true, "qemu": true, "software": true}

func (e *Entry) validate() error {
	parts := 0
	for _, set := range []bool{e.Release != nil, e.Identity != nil, e.Revocation != nil} {
		if set {
			parts++
		}
	}
	if parts != 1 {
		return fmt.Errorf("%w: an entry holds %d parts, want exactly 1", ErrMalformedEntry, parts)
	}
	switch {
	case e.Kind == KindRelease && e.Release != nil:
		return e.Release.validate()
	case e.Kind == KindIdentity && e.Identity != nil:
		return checkIdentity(e.Identity)
	case e.Kind == KindRevocation && e.Revocation != nil:
		return e.Revocation.validate()
	}
	return fmt.Errorf("%w: kind %v does not match its part", ErrMalformedEntry, e.Kind)
}

func (r *Release) validate() error {
	if r.Version == 0 {
		return fmt.Errorf("%w: release version 0", ErrMalformedEntry)
	}
	if !boards[r.Board] {
		return fmt.Errorf("%w: release for unknown board %q", ErrMalformedEntry, r.Board)
	}
	for _, s := range []string{r.Name, r.Commit, r.Toolchain} {
		if len(s) > 128 || !utf8.ValidString(s) {
			return fmt.Errorf("%w: release text field of %d bytes", ErrMalformedEntry, len(s))
		}
	}
	if len(r.Firmware) != sha256.Size || len(r.Applet) != sha256.Size {
		return fmt.Errorf("%w: release hashes must be %d bytes", ErrMalformedEntry, sha256.Size)
	}
	if len(r.BootImage) != 0 && len(r.BootImage) != sha256.Size {
		return fmt.Errorf("%w: boot image hash of %d bytes", ErrMalformedEntry, len(r.BootImage))
	}
	return nil
}

func (r *Revocation) validate() error {
	if r.Target != KindRelease && r.Target != KindIdentity {
		return fmt.Errorf("%w: revocation of a %v", ErrMalformedEntry, r.Target)
	}
	if len(r.Hash) != sha256.Size {
		return fmt.Errorf("%w: revoked hash of %d bytes", ErrMalformedEntry, len(r.Hash))
	}
	if len(r.Reason) > 256 || !utf8.ValidString(r.Reason) {
		return fmt.Errorf("%w: revocation reason of %d bytes", ErrMalformedEntry, len(r.Reason))
	}
	return nil
}

// checkIdentity checks that a logged bundle is a well-formed signed
// identity. Whose signature it carries is the verifier's business (it
// pins the provisioning key).
func checkIdentity(si *protocol.SignedIdentity) error {
	b, err := protocol.Marshal(si)
	if err != nil {
		return fmt.Errorf("%w: identity: %v", ErrMalformedEntry, err)
	}
	var back protocol.SignedIdentity
	if err := protocol.Unmarshal(b, &back); err != nil {
		return fmt.Errorf("%w: identity: %v", ErrMalformedEntry, err)
	}
	var id protocol.Identity
	if err := protocol.Unmarshal(si.Body, &id); err != nil {
		return fmt.Errorf("%w: identity body: %v", ErrMalformedEntry, err)
	}
	return nil
}

// Marshal encodes e canonically: its leaf data in the log.
func (e *Entry) Marshal() ([]byte, error) {
	if err := e.validate(); err != nil {
		return nil, err
	}
	b, err := encMode.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("releaselog: encoding entry: %w", err)
	}
	if len(b) > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformedEntry, len(b))
	}
	return b, nil
}

// ParseEntry decodes leaf data strictly: canonical CBOR of a valid entry,
// nothing else.
func ParseEntry(data []byte) (*Entry, error) {
	var e Entry
	if err := decodeCanonical(data, MaxEntrySize, &e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformedEntry, err)
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	return &e, nil
}

// LeafHash is the RFC 6962 leaf hash of an entry's data, as the log's tree
// holds it.
func LeafHash(data []byte) []byte {
	return rfc6962.DefaultHasher.HashLeaf(data)
}

// BundleHash names a signed identity bundle: SHA-256 of its signed body,
// as clients pin it and revocations name it.
func BundleHash(si *protocol.SignedIdentity) []byte {
	sum := sha256.Sum256(si.Body)
	return sum[:]
}

var (
	encMode cbor.EncMode
	decMode cbor.DecMode
)

func init() {
	var err error
	if encMode, err = cbor.CoreDetEncOptions().EncMode(); err != nil {
		panic(err)
	}
	decMode, err = cbor.DecOptions{
		DupMapKey:         cbor.DupMapKeyEnforcedAPF,
		IndefLength:       cbor.IndefLengthForbidden,
		TagsMd:            cbor.TagsForbidden,
		ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		MaxNestedLevels:   8,
		MaxArrayElements:  64,
		MaxMapPairs:       16,
		IntDec:            cbor.IntDecConvertNone,
		UTF8:              cbor.UTF8RejectInvalid,
	}.DecMode()
	if err != nil {
		panic(err)
	}
}

// decodeCanonical decodes b into v and refuses any encoding but the one
// encMode gives v back: one entry has one leaf, so one hash.
func decodeCanonical(b []byte, max int, v any) error {
	if len(b) > max {
		return fmt.Errorf("%d bytes exceeds %d", len(b), max)
	}
	if err := decMode.Unmarshal(b, v); err != nil {
		return err
	}
	again, err := encMode.Marshal(v)
	if err != nil {
		return err
	}
	if !bytes.Equal(again, b) {
		return errors.New("not in canonical encoding")
	}
	return nil
}
