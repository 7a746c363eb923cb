package storage

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

// This file holds the RPMB frame codec and the client side of an eMMC
// Replay Protected Memory Block (JEDEC JESD84-B51 §6.6.22); the device side
// is emulated in internal/storage/emulate.
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

// Request types (JESD84-B51 Table 18). A response carries its request's
// type shifted left by RPMBRespShift.
const (
	RPMBReqProgramKey = 0x0001
	RPMBReqCounter    = 0x0002
	RPMBReqWrite      = 0x0003
	RPMBReqRead       = 0x0004
	RPMBReqResult     = 0x0005
	RPMBRespShift     = 8
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

// Frame field offsets (JESD84-B51 Table 17), big-endian. The MAC covers
// [RPMBOffData:].
const (
	RPMBOffMAC     = 196 // 32 bytes: HMAC-SHA256, or the key being programmed
	RPMBOffData    = 228 // RPMBBlockSize bytes
	RPMBOffNonce   = 484 // 16 bytes
	RPMBOffCounter = 500 // uint32
	RPMBOffAddr    = 504 // uint16
	RPMBOffCount   = 506 // uint16: blocks
	RPMBOffResult  = 508 // uint16
	RPMBOffType    = 510 // uint16
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
	return "rpmb: " + s
}

// RPMBMAC is the MAC of frame f under key: HMAC-SHA256 over
// f[RPMBOffData:RPMBFrameSize].
func RPMBMAC(key *[32]byte, f []byte) [32]byte {
	m := hmac.New(sha256.New, key[:])
	m.Write(f[RPMBOffData:RPMBFrameSize])
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// DeriveRPMBKey derives an RPMB authentication key from a device-unique key,
// for the emulated partitions of the software vault and the QEMU tests. (The firmware's Trusted OS
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
	copy(f[RPMBOffMAC:], a.key[:])
	binary.BigEndian.PutUint16(f[RPMBOffType:], RPMBReqProgramKey)
	if err := a.t.WriteRPMB(f[:], true); err != nil {
		return err
	}
	resp, err := a.resultRead()
	if err != nil {
		return err
	}
	// The key programming response carries no MAC.
	if typ := binary.BigEndian.Uint16(resp[RPMBOffType:]); typ != RPMBReqProgramKey<<RPMBRespShift {
		return fmt.Errorf("rpmb: unexpected response type %#04x", typ)
	}
	if r := binary.BigEndian.Uint16(resp[RPMBOffResult:]); r != RPMBOK {
		return &RPMBError{r}
	}
	return nil
}

func (a *RPMBAnchor) resultRead() ([RPMBFrameSize]byte, error) {
	var f, resp [RPMBFrameSize]byte
	binary.BigEndian.PutUint16(f[RPMBOffType:], RPMBReqResult)
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return resp, err
	}
	err := a.t.ReadRPMB(resp[:])
	return resp, err
}

// checkResponse verifies the MAC, type and (if non-nil) nonce of a response.
func (a *RPMBAnchor) checkResponse(resp *[RPMBFrameSize]byte, req uint16, nonce []byte) error {
	mac := RPMBMAC(&a.key, resp[:])
	if subtle.ConstantTimeCompare(mac[:], resp[RPMBOffMAC:RPMBOffData]) != 1 {
		// A device without a key answers without a MAC; report that
		// rather than tampering.
		if r := binary.BigEndian.Uint16(resp[RPMBOffResult:]); r&^RPMBCounterExpired == RPMBKeyNotProgrammed {
			return &RPMBError{r}
		}
		return &TamperError{"rpmb response MAC mismatch"}
	}
	if typ := binary.BigEndian.Uint16(resp[RPMBOffType:]); typ != req<<RPMBRespShift {
		return Tamperedf("rpmb response type %#04x to request %#04x", typ, req)
	}
	if nonce != nil && subtle.ConstantTimeCompare(nonce, resp[RPMBOffNonce:RPMBOffCounter]) != 1 {
		return &TamperError{"rpmb response nonce mismatch (replayed response)"}
	}
	if r := binary.BigEndian.Uint16(resp[RPMBOffResult:]); r != RPMBOK {
		return &RPMBError{r}
	}
	return nil
}

// readCounter performs an authenticated write counter read.
func (a *RPMBAnchor) readCounter() (uint32, error) {
	var f, resp [RPMBFrameSize]byte
	binary.BigEndian.PutUint16(f[RPMBOffType:], RPMBReqCounter)
	rand.Read(f[RPMBOffNonce:RPMBOffCounter])
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return 0, err
	}
	if err := a.t.ReadRPMB(resp[:]); err != nil {
		return 0, err
	}
	if err := a.checkResponse(&resp, RPMBReqCounter, f[RPMBOffNonce:RPMBOffCounter]); err != nil {
		return 0, err
	}
	c := binary.BigEndian.Uint32(resp[RPMBOffCounter:])
	if a.known && c < a.counter {
		return 0, Tamperedf("rpmb write counter went back from %d to %d", a.counter, c)
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
	binary.BigEndian.PutUint16(f[RPMBOffType:], RPMBReqRead)
	binary.BigEndian.PutUint16(f[RPMBOffAddr:], a.addr)
	binary.BigEndian.PutUint16(f[RPMBOffCount:], 1)
	rand.Read(f[RPMBOffNonce:RPMBOffCounter])
	if err := a.t.WriteRPMB(f[:], false); err != nil {
		return data, 0, err
	}
	if err := a.t.ReadRPMB(resp[:]); err != nil {
		return data, 0, err
	}
	if err := a.checkResponse(&resp, RPMBReqRead, f[RPMBOffNonce:RPMBOffCounter]); err != nil {
		return data, 0, err
	}
	if binary.BigEndian.Uint16(resp[RPMBOffAddr:]) != a.addr {
		return data, 0, &TamperError{"rpmb read response for another address"}
	}
	copy(data[:], resp[RPMBOffData:RPMBOffNonce])
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
	copy(f[RPMBOffData:], data[:])
	binary.BigEndian.PutUint32(f[RPMBOffCounter:], c)
	binary.BigEndian.PutUint16(f[RPMBOffAddr:], a.addr)
	binary.BigEndian.PutUint16(f[RPMBOffCount:], 1)
	binary.BigEndian.PutUint16(f[RPMBOffType:], RPMBReqWrite)
	mac := RPMBMAC(&a.key, f[:])
	copy(f[RPMBOffMAC:], mac[:])
	a.known = false
	if err := a.t.WriteRPMB(f[:], true); err != nil {
		return 0, err
	}
	resp, err := a.resultRead()
	if err != nil {
		return 0, err
	}
	if err := a.checkResponse(&resp, RPMBReqWrite, nil); err != nil {
		return 0, err
	}
	nc := binary.BigEndian.Uint32(resp[RPMBOffCounter:])
	if nc != c+1 || binary.BigEndian.Uint16(resp[RPMBOffAddr:]) != a.addr {
		return 0, Tamperedf("rpmb write response counter %d, want %d", nc, c+1)
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
