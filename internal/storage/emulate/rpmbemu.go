package emulate

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/cofferhsm/coffer/internal/storage"
)

// RPMBEmulator is the device side of an RPMB partition, for the places that
// have none: tests (applet/store/storetest MemRPMB), the software vault
// (FileRPMB) and emulated boards (the QEMU board keeps one in a host file).
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
	resp     [storage.RPMBFrameSize]byte // response for the next ReadRPMB
	haveResp bool
	result   [storage.RPMBFrameSize]byte // response to the next result read request
	persist  func(*rpmbState) error
}

// rpmbState is the state of an emulated RPMB partition.
type rpmbState struct {
	gen     uint64 // persistence generation
	keySet  bool
	key     [32]byte
	counter uint32
	blocks  [][storage.RPMBBlockSize]byte
}

func (s *rpmbState) clone() rpmbState {
	c := *s
	c.blocks = append([][storage.RPMBBlockSize]byte(nil), s.blocks...)
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
		return nil, fmt.Errorf("rpmb: %d blocks", blocks)
	}
	e := &RPMBEmulator{st: rpmbState{blocks: make([][storage.RPMBBlockSize]byte, blocks)}}
	if len(state) > 0 {
		st, err := decodeRPMBState(state, blocks)
		if err != nil {
			return nil, fmt.Errorf("rpmb: state: %w", err)
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

func (e *RPMBEmulator) respond(f *[storage.RPMBFrameSize]byte, req uint16, result uint16, mac bool) {
	binary.BigEndian.PutUint16(f[storage.RPMBOffType:], req<<storage.RPMBRespShift)
	if e.st.counter == ^uint32(0) && result != storage.RPMBKeyNotProgrammed {
		result |= storage.RPMBCounterExpired
	}
	binary.BigEndian.PutUint16(f[storage.RPMBOffResult:], result)
	if mac && e.st.keySet {
		m := storage.RPMBMAC(&e.st.key, f[:])
		copy(f[storage.RPMBOffMAC:], m[:])
	}
}

// WriteRPMB receives a request frame.
func (e *RPMBEmulator) WriteRPMB(frame []byte, reliable bool) error {
	if len(frame) != storage.RPMBFrameSize {
		return errors.New("rpmb: frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	req := binary.BigEndian.Uint16(frame[storage.RPMBOffType:])
	var r [storage.RPMBFrameSize]byte
	switch req {
	case storage.RPMBReqProgramKey:
		res := uint16(storage.RPMBOK)
		switch {
		case !reliable:
			res = storage.RPMBGeneralFailure
		case e.st.keySet:
			res = storage.RPMBGeneralFailure
		default:
			next := e.st.clone()
			next.keySet = true
			copy(next.key[:], frame[storage.RPMBOffMAC:storage.RPMBOffData])
			if err := e.commit(&next); err != nil {
				res = storage.RPMBWriteFailure
			}
		}
		e.respond(&r, req, res, false)
		e.result, e.haveResp = r, false
	case storage.RPMBReqCounter:
		copy(r[storage.RPMBOffNonce:storage.RPMBOffCounter], frame[storage.RPMBOffNonce:storage.RPMBOffCounter])
		res := uint16(storage.RPMBOK)
		if !e.st.keySet {
			res = storage.RPMBKeyNotProgrammed
		} else {
			binary.BigEndian.PutUint32(r[storage.RPMBOffCounter:], e.st.counter)
		}
		e.respond(&r, req, res, true)
		e.resp, e.haveResp = r, true
	case storage.RPMBReqWrite:
		addr := binary.BigEndian.Uint16(frame[storage.RPMBOffAddr:])
		res := uint16(storage.RPMBOK)
		switch {
		case !e.st.keySet:
			res = storage.RPMBKeyNotProgrammed
		case !reliable || binary.BigEndian.Uint16(frame[storage.RPMBOffCount:]) != 1:
			res = storage.RPMBGeneralFailure
		default:
			mac := storage.RPMBMAC(&e.st.key, frame)
			switch {
			case subtle.ConstantTimeCompare(mac[:], frame[storage.RPMBOffMAC:storage.RPMBOffData]) != 1:
				res = storage.RPMBAuthFailure
			case e.st.counter == ^uint32(0):
				res = storage.RPMBWriteFailure
			case binary.BigEndian.Uint32(frame[storage.RPMBOffCounter:]) != e.st.counter:
				res = storage.RPMBCounterFailure
			case int(addr) >= len(e.st.blocks):
				res = storage.RPMBAddressFailure
			default:
				next := e.st.clone()
				copy(next.blocks[addr][:], frame[storage.RPMBOffData:storage.RPMBOffNonce])
				next.counter++
				if err := e.commit(&next); err != nil {
					res = storage.RPMBWriteFailure
				}
			}
		}
		binary.BigEndian.PutUint32(r[storage.RPMBOffCounter:], e.st.counter)
		binary.BigEndian.PutUint16(r[storage.RPMBOffAddr:], addr)
		e.respond(&r, req, res, true)
		e.result, e.haveResp = r, false
	case storage.RPMBReqRead:
		addr := binary.BigEndian.Uint16(frame[storage.RPMBOffAddr:])
		copy(r[storage.RPMBOffNonce:storage.RPMBOffCounter], frame[storage.RPMBOffNonce:storage.RPMBOffCounter])
		binary.BigEndian.PutUint16(r[storage.RPMBOffAddr:], addr)
		binary.BigEndian.PutUint16(r[storage.RPMBOffCount:], 1)
		res := uint16(storage.RPMBOK)
		switch {
		case !e.st.keySet:
			res = storage.RPMBKeyNotProgrammed
		case int(addr) >= len(e.st.blocks):
			res = storage.RPMBAddressFailure
		default:
			copy(r[storage.RPMBOffData:storage.RPMBOffNonce], e.st.blocks[addr][:])
		}
		e.respond(&r, req, res, true)
		e.resp, e.haveResp = r, true
	case storage.RPMBReqResult:
		e.resp, e.haveResp = e.result, true
	default:
		e.respond(&r, req, storage.RPMBGeneralFailure, false)
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
	if len(frame) != storage.RPMBFrameSize {
		return errors.New("rpmb: frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.haveResp {
		return errors.New("rpmb: no response pending")
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

func fileRPMBSlotLen(blocks int) int {
	return fileRPMBHeader + blocks*storage.RPMBBlockSize + sha256.Size
}

func fileRPMBStride(blocks int) int64 {
	return int64((fileRPMBSlotLen(blocks) + storage.SectorSize - 1) / storage.SectorSize * storage.SectorSize)
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
		copy(b[fileRPMBHeader+i*storage.RPMBBlockSize:], st.blocks[i][:])
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
	if b[16] > 1 || string(b[17:20]) != "\x00\x00\x00" || int(binary.BigEndian.Uint32(b[24:])) != blocks || string(b[28:32]) != "\x00\x00\x00\x00" {
		return st, errors.New("bad header")
	}
	st.gen = binary.BigEndian.Uint64(b[8:])
	st.keySet = b[16] == 1
	st.counter = binary.BigEndian.Uint32(b[20:])
	copy(st.key[:], b[32:64])
	st.blocks = make([][storage.RPMBBlockSize]byte, blocks)
	for i := range st.blocks {
		copy(st.blocks[i][:], b[fileRPMBHeader+i*storage.RPMBBlockSize:])
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
		return nil, fmt.Errorf("rpmb: %d blocks", blocks)
	}
	e := &RPMBEmulator{st: rpmbState{blocks: make([][storage.RPMBBlockSize]byte, blocks)}}
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
	grown := false
	switch {
	case ok[0] && (!ok[1] || slots[0].gen >= slots[1].gen):
		e.st, good = slots[0], 0
	case ok[1]:
		e.st, good = slots[1], 1
	case !empty:
		st, found := readSmallerRPMBState(f, blocks)
		if !found {
			return nil, errors.New("rpmb: the file holds no valid state")
		}
		e.st, grown = st, true
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
		switch {
		case good == 0:
			err = write(&e.st, 1)
		case good == 1:
			err = write(&e.st, 0)
		case grown:
			// A partition grown from an older file: the new second
			// copy first, which lies past the old first copy, so a
			// cut leaves either the old file's first copy or the
			// new second copy intact.
			err = write(&e.st, 1, 0)
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

// readSmallerRPMBState reads the state of a file written for a partition of
// fewer blocks (by an older build: the QEMU board's partition grew from one
// block to two for the boot chain's minimum version), grown to blocks with
// zeroed blocks, which is what the new blocks of a real partition hold.
func readSmallerRPMBState(f RPMBBacking, blocks int) (rpmbState, bool) {
	var hdr [fileRPMBHeader]byte
	if n, _ := f.ReadAt(hdr[:], 0); n != len(hdr) || string(hdr[:8]) != fileRPMBMagic {
		return rpmbState{}, false
	}
	old := int(binary.BigEndian.Uint32(hdr[24:]))
	if old < 1 || old >= blocks {
		return rpmbState{}, false
	}
	var best rpmbState
	found := false
	for i := int64(0); i < 2; i++ {
		b := make([]byte, fileRPMBSlotLen(old))
		if _, err := f.ReadAt(b, i*fileRPMBStride(old)); err != nil {
			continue
		}
		st, err := decodeRPMBState(b, old)
		if err == nil && (!found || st.gen > best.gen) {
			best, found = st, true
		}
	}
	if found {
		best.blocks = append(best.blocks, make([][storage.RPMBBlockSize]byte, blocks-old)...)
	}
	return best, found
}

// Clone returns an independent copy of the partition, in memory: what
// whoever holds the persisted state can put back later (tests of rollback).
func (e *RPMBEmulator) Clone() *RPMBEmulator {
	e.mu.Lock()
	defer e.mu.Unlock()
	return &RPMBEmulator{st: e.st.clone()}
}

// Block returns a copy of a data block, unauthenticated: what anyone with
// access to the chip could read.
func (e *RPMBEmulator) Block(addr int) [storage.RPMBBlockSize]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.blocks[addr]
}

// SetBlock replaces a data block unauthenticated, leaving the counter as it
// is: what someone who opened the chip could do (tamper tests).
func (e *RPMBEmulator) SetBlock(addr int, b [storage.RPMBBlockSize]byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.st.blocks[addr] = b
}
