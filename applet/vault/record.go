package vault

import (
	"encoding/binary"
	"fmt"
	"io"

	"github.com/cofferhsm/coffer/applet/opaque"
	"github.com/fxamacker/cbor/v2"
)

// Store keys are namespaced so that a user id can never name the vault's own
// secrets.
const (
	keyUser     = 'u'
	keyIdentity = 'i'
	keyBundle   = 'b'
)

func userKey(userID []byte) []byte { return append([]byte{keyUser}, userID...) }

type recordState uint8

const (
	stateLive   recordState = 1
	stateLocked recordState = 2 // a tombstone: the secrets are gone for ever
)

// record is what the vault keeps per user. A locked record is a tombstone:
// state, generation, limit and the running totals, and no secrets.
//
// The attempt counter is not stored: it is Attempts − Watermark, the
// attempts counted since the KE1 of the last login its client confirmed
// (SPEC.md, "Counting"). Attempts only grows; Watermark moves forward when a
// login is confirmed, and by one when the login whose guess reached the
// limit proves the password (the revival), so that a record never comes
// back with more than one try left.
type record struct {
	State      recordState `cbor:"1,keyasint"`
	Generation uint64      `cbor:"2,keyasint"`
	Limit      uint        `cbor:"3,keyasint"`
	OPRFKey    []byte      `cbor:"5,keyasint,omitempty"`
	OPAQUE     []byte      `cbor:"6,keyasint,omitempty"` // the RFC 9807 registration record
	WrappedKey []byte      `cbor:"7,keyasint,omitempty"`
	Successes  uint64      `cbor:"8,keyasint,omitempty"`  // logins their clients confirmed
	Attempts   uint64      `cbor:"9,keyasint,omitempty"`  // attempts ever counted on this registration
	Watermark  uint64      `cbor:"10,keyasint,omitempty"` // attempts no longer held against the user
}

// counter is the number of attempts counted against the user now.
func (r *record) counter() uint64 { return r.Attempts - r.Watermark }

func (r *record) triesLeft() uint {
	if c := r.counter(); c < uint64(r.Limit) {
		return r.Limit - uint(c)
	}
	return 0
}

func (r *record) locked() bool { return r.State == stateLocked || r.counter() >= uint64(r.Limit) }

// tombstone is what remains of r once its secrets are erased.
func (r *record) tombstone() *record {
	return &record{State: stateLocked, Generation: r.Generation, Limit: r.Limit,
		Successes: r.Successes, Attempts: r.Attempts, Watermark: r.Watermark}
}

// clone copies r deeply so that the copy can be wiped on its own.
func (r *record) clone() *record {
	c := *r
	c.OPRFKey = append([]byte(nil), r.OPRFKey...)
	c.OPAQUE = append([]byte(nil), r.OPAQUE...)
	c.WrappedKey = append([]byte(nil), r.WrappedKey...)
	return &c
}

// wipe overwrites r's secrets.
func (r *record) wipe() {
	clear(r.OPRFKey)
	clear(r.OPAQUE)
	clear(r.WrappedKey)
}

func (r *record) oprfKey() (k opaque.OPRFKey) {
	copy(k[:], r.OPRFKey)
	return k
}

var recordEnc, _ = cbor.CoreDetEncOptions().EncMode()

var recordDec, _ = cbor.DecOptions{
	DupMapKey:         cbor.DupMapKeyEnforcedAPF,
	IndefLength:       cbor.IndefLengthForbidden,
	TagsMd:            cbor.TagsForbidden,
	ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
}.DecMode()

func (r *record) marshal() ([]byte, error) {
	b, err := recordEnc.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxRecordSize {
		return nil, fmt.Errorf("vault: record of %d bytes exceeds %d", len(b), MaxRecordSize)
	}
	return b, nil
}

// parseRecord decodes a stored record. The store authenticated the bytes, so
// a failure here is a bug or a format change, never an attacker; it is still
// checked, because failing closed is cheaper than trusting.
func parseRecord(b []byte) (*record, error) {
	var r record
	if err := recordDec.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("vault: stored record does not decode: %w", err)
	}
	if r.Watermark > r.Attempts {
		return nil, fmt.Errorf("vault: stored record's watermark is past its attempts")
	}
	switch r.State {
	case stateLive:
		if len(r.OPRFKey) != 32 || len(r.OPAQUE) != opaque.RecordSize || len(r.WrappedKey) == 0 || r.Limit == 0 {
			return nil, fmt.Errorf("vault: stored record is incomplete")
		}
	case stateLocked:
		if len(r.OPRFKey)+len(r.OPAQUE)+len(r.WrappedKey) != 0 {
			return nil, fmt.Errorf("vault: tombstone holds secrets")
		}
	default:
		return nil, fmt.Errorf("vault: stored record has state %d", r.State)
	}
	return &r, nil
}

// newGeneration draws a registration's generation. The top bit is set so that
// every generation has the same CBOR size, which keeps replies for real and
// unknown users the same length.
func newGeneration(random io.Reader) (uint64, error) {
	var b [8]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:]) | 1<<63, nil
}

// newHandle draws a handle from the vault's random source (Options.Rand,
// never nil once defaults are set).
func newHandle(random io.Reader) (h [16]byte, err error) {
	_, err = io.ReadFull(random, h[:])
	return h, err
}
