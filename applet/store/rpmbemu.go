package store

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
)

// RPMBEmulator is the device side of an RPMB partition, for the places that
// have none: tests (MemRPMB), the software vault (FileRPMB) and emulated
// boards (the QEMU board keeps one in a host file).
//
// Towards its client it behaves as the eMMC's partition does: an
// authentication key programmed once, a write counter that only goes up and
// stops at 2^32-1, authenticated writes, and reads answered with the
// reader's nonce. It is not replay protected against whoever holds its
// persisted state, who can put back an old copy of it, or write a new one.
//
// Its state is in memory; persistence is plugged in (NewRPMBEmulator,
// OpenRPMBEmulator): every change (the key programming, each accepted
// authenticated write) is handed to it first, and takes effect only if that
// succeeds; otherwise the request fails with a write failure.
type RPMBEmulator struct {
	mu       sync.Mutex
	st       rpmbState
	resp     [RPMBFrameSize]byte // response for the next ReadRPMB
	haveResp bool
	result   [RPMBFrameSize]byte // response to the next result read request
	persist  func(*rpmbState) error
}

// rpmbState is the state of an emulated RPMB partition.
type rpmbState struct {
	gen     uint64 // persistence generation
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

const maxRPMBBlocks = 1 << 16

// NewRPMBEmulator returns an emulated RPMB partition of the given number of
// 256-byte blocks. state is the encoded state persist was last given, or
// nil for a new partition with no key programmed. persist, if not nil, is
// given the encoded new state before each change takes effect; the encoding
// carries a checksum, so a torn copy is recognised when given back as state,
// and it holds the authentication key: it is as secret as the anchor.
func NewRPMBEmulator(blocks int, persist func(state []byte) error, state []byte) (*RPMBEmulator, error) {
	if blocks < 1 || blocks > maxRPMBBlocks {
		return nil, fmt.Errorf("store: rpmb: %d blocks", blocks)
	}
	e := &RPMBEmulator{st: rpmbState{blocks: make([][RPMBBlockSize]byte, blocks)}}
	if len(state) > 0 {
		st, err := decodeRPMBState(state, blocks)
		if err != nil {
			return nil, fmt.Errorf("store: rpmb: state: %w", err)
		}
		e.st = st
	}
	if persist != nil {
		e.persist = func(st *rpmbState) error { return persist(encodeRPMBState(st)) }
	}
	return e, nil
}

// Counter returns the write counter, unauthenticated (for tests and logs).
func (e *RPMBEmulator) Counter() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.counter
}

func (e *RPMBEmulator) respond(f *[RPMBFrameSize]byte, req uint16, result uint16, mac bool) {
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

// WriteRPMB receives a request frame.
func (e *RPMBEmulator) WriteRPMB(frame []byte, reliable bool) error {
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

func (e *RPMBEmulator) commit(next *rpmbState) error {
	next.gen = e.st.gen + 1
	if e.persist != nil {
		if err := e.persist(next); err != nil {
			return err
		}
	}
	e.st = *next
	return nil
}

// ReadRPMB returns the response to the last request.
func (e *RPMBEmulator) ReadRPMB(frame []byte) error {
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

// The encoded state: a header, the blocks, and a SHA-256 checksum.
const (
	fileRPMBMagic  = "CRPMBv1\n"
	fileRPMBHeader = 64
)

func fileRPMBSlotLen(blocks int) int { return fileRPMBHeader + blocks*RPMBBlockSize + sha256.Size }

func fileRPMBStride(blocks int) int64 {
	return int64((fileRPMBSlotLen(blocks) + SectorSize - 1) / SectorSize * SectorSize)
}

func encodeRPMBState(st *rpmbState) []byte {
	b := make([]byte, fileRPMBSlotLen(len(st.blocks)))
	copy(b, fileRPMBMagic)
	binary.BigEndian.PutUint64(b[8:], st.gen)
	if st.keySet {
		b[16] = 1
	}
	binary.BigEndian.PutUint32(b[20:], st.counter)
	binary.BigEndian.PutUint32(b[24:], uint32(len(st.blocks)))
	copy(b[32:64], st.key[:])
	for i := range st.blocks {
		copy(b[fileRPMBHeader+i*RPMBBlockSize:], st.blocks[i][:])
	}
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	copy(b[len(b)-sha256.Size:], sum[:])
	return b
}

// decodeRPMBState parses an encoded state. A torn or damaged one is an
// error; it is not a security check (the host can write any valid state),
// only crash detection.
func decodeRPMBState(b []byte, blocks int) (rpmbState, error) {
	var st rpmbState
	if len(b) != fileRPMBSlotLen(blocks) || string(b[:8]) != fileRPMBMagic {
		return st, errors.New("bad magic")
	}
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	if !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
		return st, errors.New("bad checksum")
	}
	if b[16] > 1 || !isZero(b[17:20]) || int(binary.BigEndian.Uint32(b[24:])) != blocks || !isZero(b[28:32]) {
		return st, errors.New("bad header")
	}
	st.gen = binary.BigEndian.Uint64(b[8:])
	st.keySet = b[16] == 1
	st.counter = binary.BigEndian.Uint32(b[20:])
	copy(st.key[:], b[32:64])
	st.blocks = make([][RPMBBlockSize]byte, blocks)
	for i := range st.blocks {
		copy(st.blocks[i][:], b[fileRPMBHeader+i*RPMBBlockSize:])
	}
	return st, nil
}

// RPMBBacking is the file an emulated RPMB partition is kept in
// (OpenRPMBEmulator): an *os.File, or a board's host file. If it has a
// Sync() error method, each copy of the state is synced once written.
type RPMBBacking interface {
	io.ReaderAt
	io.WriterAt
}

// OpenRPMBEmulator returns the emulated RPMB partition of the given number
// of 256-byte blocks kept in f, or a new one with no key programmed if f is
// empty. A file that is not empty and holds no valid state is an error,
// never started over.
//
// f holds two copies of the state, each with a checksum; every change
// rewrites the first copy (and syncs it, if f can), then the second, so a
// crash leaves at least one intact copy and, once the change is done, no
// copy of the previous state remains in f (which matters for cryptographic
// erasure: the anchor holds the store's root key).
func OpenRPMBEmulator(f RPMBBacking, blocks int) (*RPMBEmulator, error) {
	if blocks < 1 || blocks > maxRPMBBlocks {
		return nil, fmt.Errorf("store: rpmb: %d blocks", blocks)
	}
	e := &RPMBEmulator{st: rpmbState{blocks: make([][RPMBBlockSize]byte, blocks)}}
	stride := fileRPMBStride(blocks)
	var slots [2]rpmbState
	var ok [2]bool
	empty := false
	for i := range slots {
		b := make([]byte, fileRPMBSlotLen(blocks))
		n, err := f.ReadAt(b, int64(i)*stride)
		if i == 0 && n == 0 && err == io.EOF {
			empty = true
		}
		if err == nil {
			slots[i], err = decodeRPMBState(b, blocks)
			ok[i] = err == nil
		}
	}
	good := -1
	switch {
	case ok[0] && (!ok[1] || slots[0].gen >= slots[1].gen):
		e.st, good = slots[0], 0
	case ok[1]:
		e.st, good = slots[1], 1
	case !empty:
		return nil, errors.New("store: rpmb: the file holds no valid state")
	}
	write := func(st *rpmbState, slots ...int64) error {
		b := encodeRPMBState(st)
		defer clear(b)
		for _, i := range slots {
			if _, err := f.WriteAt(b, i*stride); err != nil {
				return err
			}
			if s, ok := f.(interface{ Sync() error }); ok {
				if err := s.Sync(); err != nil {
					return err
				}
			}
		}
		return nil
	}
	// Make both copies equal before the first change, so that a change
	// interrupted while rewriting the first copy leaves the second intact.
	// Only the copy that is not the current state is rewritten, so a cut
	// during the repair cannot damage the good one.
	if !ok[0] || !ok[1] || slots[0].gen != slots[1].gen {
		var err error
		switch good {
		case 0:
			err = write(&e.st, 1)
		case 1:
			err = write(&e.st, 0)
		default:
			err = write(&e.st, 0, 1)
		}
		if err != nil {
			return nil, err
		}
	}
	e.persist = func(st *rpmbState) error { return write(st, 0, 1) }
	return e, nil
}

// MemRPMB is an emulated RPMB partition in memory, for tests.
type MemRPMB struct{ RPMBEmulator }

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
