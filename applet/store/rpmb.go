package store

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// This file implements the client side of an eMMC Replay Protected Memory
// Block (JEDEC JESD84-B51 §6.6.22) and an emulation of the device side for
// tests and for the software vault.
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
// for firmware and software vaults that have no other source for it.
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
// is a one-time, irreversible operation.
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

// rpmbState is the state of an emulated RPMB partition.
type rpmbState struct {
	gen     uint64 // persistence generation (file emulation only)
	keySet  bool
	key     [32]byte
	counter uint32
	blocks  [][RPMBBlockSize]byte
}

func (s *rpmbState) clone() rpmbState {
	c := *s
	c.blocks = append([][RPMBBlockSize]byte(nil), s.blocks...)
	return c
}

// rpmbEmulator is the device side of an RPMB partition.
type rpmbEmulator struct {
	mu       sync.Mutex
	st       rpmbState
	resp     [RPMBFrameSize]byte // response for the next ReadRPMB
	haveResp bool
	result   [RPMBFrameSize]byte // response to the next result read request
	persist  func(*rpmbState) error
}

func (e *rpmbEmulator) respond(f *[RPMBFrameSize]byte, req uint16, result uint16, mac bool) {
	binary.BigEndian.PutUint16(f[rpmbType:], req<<rpmbRespShift)
	if e.st.counter == ^uint32(0) && result != RPMBKeyNotProgrammed {
		result |= RPMBCounterExpired
	}
	binary.BigEndian.PutUint16(f[rpmbResult:], result)
	if mac && e.st.keySet {
		m := rpmbMACOf(&e.st.key, f[:])
		copy(f[rpmbMAC:], m[:])
	}
}

func (e *rpmbEmulator) WriteRPMB(frame []byte, reliable bool) error {
	if len(frame) != RPMBFrameSize {
		return errors.New("store: rpmb: frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	req := binary.BigEndian.Uint16(frame[rpmbType:])
	var r [RPMBFrameSize]byte
	switch req {
	case rpmbReqProgramKey:
		res := uint16(RPMBOK)
		switch {
		case !reliable:
			res = RPMBGeneralFailure
		case e.st.keySet:
			res = RPMBGeneralFailure
		default:
			next := e.st.clone()
			next.keySet = true
			copy(next.key[:], frame[rpmbMAC:rpmbData])
			if err := e.commit(&next); err != nil {
				res = RPMBWriteFailure
			}
		}
		e.respond(&r, req, res, false)
		e.result, e.haveResp = r, false
	case rpmbReqCounter:
		copy(r[rpmbNonce:rpmbCounter], frame[rpmbNonce:rpmbCounter])
		res := uint16(RPMBOK)
		if !e.st.keySet {
			res = RPMBKeyNotProgrammed
		} else {
			binary.BigEndian.PutUint32(r[rpmbCounter:], e.st.counter)
		}
		e.respond(&r, req, res, true)
		e.resp, e.haveResp = r, true
	case rpmbReqWrite:
		addr := binary.BigEndian.Uint16(frame[rpmbAddr:])
		res := uint16(RPMBOK)
		switch {
		case !e.st.keySet:
			res = RPMBKeyNotProgrammed
		case !reliable || binary.BigEndian.Uint16(frame[rpmbCount:]) != 1:
			res = RPMBGeneralFailure
		default:
			mac := rpmbMACOf(&e.st.key, frame)
			switch {
			case subtle.ConstantTimeCompare(mac[:], frame[rpmbMAC:rpmbData]) != 1:
				res = RPMBAuthFailure
			case e.st.counter == ^uint32(0):
				res = RPMBWriteFailure
			case binary.BigEndian.Uint32(frame[rpmbCounter:]) != e.st.counter:
				res = RPMBCounterFailure
			case int(addr) >= len(e.st.blocks):
				res = RPMBAddressFailure
			default:
				next := e.st.clone()
				copy(next.blocks[addr][:], frame[rpmbData:rpmbNonce])
				next.counter++
				if err := e.commit(&next); err != nil {
					res = RPMBWriteFailure
				}
			}
		}
		binary.BigEndian.PutUint32(r[rpmbCounter:], e.st.counter)
		binary.BigEndian.PutUint16(r[rpmbAddr:], addr)
		e.respond(&r, req, res, true)
		e.result, e.haveResp = r, false
	case rpmbReqRead:
		addr := binary.BigEndian.Uint16(frame[rpmbAddr:])
		copy(r[rpmbNonce:rpmbCounter], frame[rpmbNonce:rpmbCounter])
		binary.BigEndian.PutUint16(r[rpmbAddr:], addr)
		binary.BigEndian.PutUint16(r[rpmbCount:], 1)
		res := uint16(RPMBOK)
		switch {
		case !e.st.keySet:
			res = RPMBKeyNotProgrammed
		case int(addr) >= len(e.st.blocks):
			res = RPMBAddressFailure
		default:
			copy(r[rpmbData:rpmbNonce], e.st.blocks[addr][:])
		}
		e.respond(&r, req, res, true)
		e.resp, e.haveResp = r, true
	case rpmbReqResult:
		e.resp, e.haveResp = e.result, true
	default:
		e.respond(&r, req, RPMBGeneralFailure, false)
		e.resp, e.haveResp = r, true
	}
	return nil
}

func (e *rpmbEmulator) commit(next *rpmbState) error {
	next.gen = e.st.gen + 1
	if e.persist != nil {
		if err := e.persist(next); err != nil {
			return err
		}
	}
	e.st = *next
	return nil
}

func (e *rpmbEmulator) ReadRPMB(frame []byte) error {
	if len(frame) != RPMBFrameSize {
		return errors.New("store: rpmb: frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.haveResp {
		return errors.New("store: rpmb: no response pending")
	}
	copy(frame, e.resp[:])
	e.haveResp = false
	return nil
}

// MemRPMB is an emulated RPMB partition in memory, for tests.
type MemRPMB struct{ rpmbEmulator }

// NewMemRPMB returns an emulated RPMB partition of the given number of
// 256-byte blocks, with no key programmed.
func NewMemRPMB(blocks int) *MemRPMB {
	m := &MemRPMB{}
	m.st.blocks = make([][RPMBBlockSize]byte, blocks)
	return m
}

// Clone returns an independent copy of the partition.
func (m *MemRPMB) Clone() *MemRPMB {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := &MemRPMB{}
	c.st = m.st.clone()
	return c
}

// Counter returns the write counter, unauthenticated (test helper).
func (m *MemRPMB) Counter() uint32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.counter
}

// Block returns a copy of a data block, unauthenticated (test helper: what
// anyone with access to the chip could read).
func (m *MemRPMB) Block(addr int) [RPMBBlockSize]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.blocks[addr]
}

// NewMemAnchor returns an anchor on a fresh in-memory RPMB partition whose
// key has been programmed with authKey, and the partition itself.
func NewMemAnchor(authKey [32]byte) (*RPMBAnchor, *MemRPMB) {
	m := NewMemRPMB(1)
	a := NewRPMBAnchor(m, authKey, 0)
	if err := a.ProgramKey(); err != nil {
		panic(err) // cannot fail on a fresh emulator
	}
	return a, m
}
