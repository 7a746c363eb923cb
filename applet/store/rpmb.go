package store

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"sync"
)

// This file implements the client side of an eMMC Replay Protected Memory
// Block (JEDEC JESD84-B51 §6.6.22); rpmbemu.go emulates the device side.
//
// An RPMB partition holds 256-byte blocks and a 32-bit write counter. Every
// write carries the current counter value and an HMAC-SHA256 under the
// authentication key, which is programmed once into the device and never
// leaves it; the device refuses a write with a wrong MAC or counter and
// increments the counter after each accepted write. Reads return the data
// with a MAC over it and a nonce chosen by the reader, so stale responses
// cannot be replayed. The counter never goes down and stops at 2^32-1.

// RPMBFrameSize is the size of an RPMB data frame.
const RPMBFrameSize = 512

// RPMBBlockSize is the size of an RPMB data block.
const RPMBBlockSize = 256

// Request and response types (JESD84-B51 Table 18).
const (
	rpmbReqProgramKey = 0x0001
	rpmbReqCounter    = 0x0002
	rpmbReqWrite      = 0x0003
	rpmbReqRead       = 0x0004
	rpmbReqResult     = 0x0005
	rpmbRespShift     = 8 // response type = request type << 8
)

// Operation results (JESD84-B51 Table 20).
const (
	RPMBOK               = 0x0000
	RPMBGeneralFailure   = 0x0001
	RPMBAuthFailure      = 0x0002
	RPMBCounterFailure   = 0x0003
	RPMBAddressFailure   = 0x0004
	RPMBWriteFailure     = 0x0005
	RPMBReadFailure      = 0x0006
	RPMBKeyNotProgrammed = 0x0007
	RPMBCounterExpired   = 0x0080 // bit set with the result once the counter is spent
)

// Frame field offsets (JESD84-B51 Table 17). The MAC covers [rpmbData:].
const (
	rpmbMAC     = 196
	rpmbData    = 228
	rpmbNonce   = 484
	rpmbCounter = 500
	rpmbAddr    = 504
	rpmbCount   = 506
	rpmbResult  = 508
	rpmbType    = 510
)

// RPMBTransport moves raw 512-byte RPMB frames to and from an RPMB partition.
// It is the shape of tamago's usdhc driver (WriteRPMB sends a request frame,
// reliable for authenticated writes and key programming; ReadRPMB reads the
// response frame), so the firmware can pass its card directly.
type RPMBTransport interface {
	WriteRPMB(frame []byte, reliable bool) error
	ReadRPMB(frame []byte) error
}

// RPMBError is a non-zero RPMB operation result.
type RPMBError struct{ Result uint16 }

func (e *RPMBError) Error() string {
	names := map[uint16]string{
		RPMBGeneralFailure: "general failure", RPMBAuthFailure: "authentication failure",
		RPMBCounterFailure: "counter failure", RPMBAddressFailure: "address failure",
		RPMBWriteFailure: "write failure", RPMBReadFailure: "read failure",
		RPMBKeyNotProgrammed: "authentication key not programmed",
	}
	s := names[e.Result&^RPMBCounterExpired]
	if s == "" {
		s = fmt.Sprintf("result %#04x", e.Result)
	}
	if e.Result&RPMBCounterExpired != 0 {
		s += " (write counter expired)"
	}
	return "store: rpmb: " + s
}

func rpmbMACOf(key *[32]byte, f []byte) [32]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(f[rpmbData:RPMBFrameSize])
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// DeriveRPMBKey derives an RPMB authentication key from a device-unique key,
// for the software vault's emulated partition. (The firmware's Trusted OS
// derives its own, firmware/tos DeriveKeys.)
func DeriveRPMBKey(deviceKey [32]byte) [32]byte {
	k, err := hkdf.Key(sha256.New, deviceKey[:], nil, "coffer/store rpmb auth v1", 32)
	if err != nil {
		panic(err) // only on invalid lengths
	}
	return [32]byte(k)
}

// RPMBAnchor is an Anchor kept in one block of an RPMB partition. It checks
// the MAC and nonce of every response, so a forged or replayed response is
// reported as ErrTampered.
type RPMBAnchor struct {
	mu      sync.Mutex
	t       RPMBTransport
	key     [32]byte
	addr    uint16
	counter uint32 // last authenticated write counter
	known   bool
}

// NewRPMBAnchor returns an anchor at block addr of the RPMB partition behind
// t, authenticated with authKey.
func NewRPMBAnchor(t RPMBTransport, authKey [32]byte, addr uint16) *RPMBAnchor {
	return &RPMBAnchor{t: t, key: authKey, addr: addr}
}

// ProgramKey programs the authentication key into the device. On an eMMC this
// is a one-time, irreversible operation, and it sends the key over the bus
// in clear: call it only at provisioning, never because a partition says it
// has no key (that answer is not authenticated; see firmware/tos OpenAnchor).
func (a *RPMBAnchor) ProgramKey() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var f [RPMBFrameSize]byte
	copy(f[rpmbMAC:], a.key[:])
	binary.BigEndian.PutUint16(f[rpmbType:], rpmbReqProgramKey)
	if err := a.t.WriteRPMB(f[:], true); err != nil {
		return err
	}
	resp, err := a.resultRead()
	if err != nil {
		return err
	}
	// The key programming response carries no MAC.
	if typ := binary.BigEndian.Uint16(resp[rpmbType:]); typ != rpmbReqProgramKey<<rpmbRespShift {
		return fmt.Errorf("store: rpmb: unexpected response type %#04x", typ)
	}
	if r := binary.BigEndian.Uint16(resp[rpmbResult:]); r != RPMBOK {
		return &RPMBError{r}
	}
	return nil
}

func (a *RPMBAnchor) resultRead() ([RPMBFrameSize]byte, error) {
	var f, resp [RPMBFrameSize]byte
	binary.BigEndian.PutUint16(f[rpmbType:], rpmbReqResult)
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return resp, err
	}
	err := a.t.ReadRPMB(resp[:])
	return resp, err
}

// checkResponse verifies the MAC, type and (if non-nil) nonce of a response.
func (a *RPMBAnchor) checkResponse(resp *[RPMBFrameSize]byte, req uint16, nonce []byte) error {
	mac := rpmbMACOf(&a.key, resp[:])
	if subtle.ConstantTimeCompare(mac[:], resp[rpmbMAC:rpmbData]) != 1 {
		// A device without a key answers without a MAC; report that
		// rather than tampering.
		if r := binary.BigEndian.Uint16(resp[rpmbResult:]); r&^RPMBCounterExpired == RPMBKeyNotProgrammed {
			return &RPMBError{r}
		}
		return tampered("rpmb response MAC mismatch")
	}
	if typ := binary.BigEndian.Uint16(resp[rpmbType:]); typ != req<<rpmbRespShift {
		return tampered(fmt.Sprintf("rpmb response type %#04x to request %#04x", typ, req))
	}
	if nonce != nil && subtle.ConstantTimeCompare(nonce, resp[rpmbNonce:rpmbCounter]) != 1 {
		return tampered("rpmb response nonce mismatch (replayed response)")
	}
	if r := binary.BigEndian.Uint16(resp[rpmbResult:]); r != RPMBOK {
		return &RPMBError{r}
	}
	return nil
}

// readCounter performs an authenticated write counter read.
func (a *RPMBAnchor) readCounter() (uint32, error) {
	var f, resp [RPMBFrameSize]byte
	binary.BigEndian.PutUint16(f[rpmbType:], rpmbReqCounter)
	rand.Read(f[rpmbNonce:rpmbCounter])
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return 0, err
	}
	if err := a.t.ReadRPMB(resp[:]); err != nil {
		return 0, err
	}
	if err := a.checkResponse(&resp, rpmbReqCounter, f[rpmbNonce:rpmbCounter]); err != nil {
		return 0, err
	}
	c := binary.BigEndian.Uint32(resp[rpmbCounter:])
	if a.known && c < a.counter {
		return 0, tampered(fmt.Sprintf("rpmb write counter went back from %d to %d", a.counter, c))
	}
	a.counter, a.known = c, true
	return c, nil
}

// Read returns the anchored block and the current write counter, both
// authenticated with a fresh nonce.
func (a *RPMBAnchor) Read() (data [AnchorSize]byte, counter uint32, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	counter, err = a.readCounter()
	if err != nil {
		return data, 0, err
	}
	var f, resp [RPMBFrameSize]byte
	binary.BigEndian.PutUint16(f[rpmbType:], rpmbReqRead)
	binary.BigEndian.PutUint16(f[rpmbAddr:], a.addr)
	binary.BigEndian.PutUint16(f[rpmbCount:], 1)
	rand.Read(f[rpmbNonce:rpmbCounter])
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return data, 0, err
	}
	if err := a.t.ReadRPMB(resp[:]); err != nil {
		return data, 0, err
	}
	if err := a.checkResponse(&resp, rpmbReqRead, f[rpmbNonce:rpmbCounter]); err != nil {
		return data, 0, err
	}
	if binary.BigEndian.Uint16(resp[rpmbAddr:]) != a.addr {
		return data, 0, tampered("rpmb read response for another address")
	}
	copy(data[:], resp[rpmbData:rpmbNonce])
	return data, counter, nil
}

// Write writes the anchored block and returns the new write counter. An error
// leaves the outcome unknown: the write may or may not have happened.
func (a *RPMBAnchor) Write(data [AnchorSize]byte) (uint32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Always read the counter afresh: a write we could not confirm may have
	// happened after all.
	c, err := a.readCounter()
	if err != nil {
		return 0, err
	}
	var f [RPMBFrameSize]byte
	copy(f[rpmbData:], data[:])
	binary.BigEndian.PutUint32(f[rpmbCounter:], c)
	binary.BigEndian.PutUint16(f[rpmbAddr:], a.addr)
	binary.BigEndian.PutUint16(f[rpmbCount:], 1)
	binary.BigEndian.PutUint16(f[rpmbType:], rpmbReqWrite)
	mac := rpmbMACOf(&a.key, f[:])
	copy(f[rpmbMAC:], mac[:])
	a.known = false
	if err := a.t.WriteRPMB(f[:], true); err != nil {
		return 0, err
	}
	resp, err := a.resultRead()
	if err != nil {
		return 0, err
	}
	if err := a.checkResponse(&resp, rpmbReqWrite, nil); err != nil {
		return 0, err
	}
	nc := binary.BigEndian.Uint32(resp[rpmbCounter:])
	if nc != c+1 || binary.BigEndian.Uint16(resp[rpmbAddr:]) != a.addr {
		return 0, tampered(fmt.Sprintf("rpmb write response counter %d, want %d", nc, c+1))
	}
	a.counter, a.known = nc, true
	return nc, nil
}

// WriteCounter returns the last authenticated value of the RPMB write
// counter (0 before the first access), for metrics: it counts every
// authenticated write the partition has ever accepted, and the partition
// refuses writes once it reaches 2^32-1.
func (a *RPMBAnchor) WriteCounter() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.counter
}
