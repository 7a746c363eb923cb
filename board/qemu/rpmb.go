package qemu

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/cofferhsm/coffer/applet/store"
)

// EmulatedRPMB is the device side of an eMMC Replay Protected Memory Block
// partition (JEDEC JESD84-B51 §6.6.22), persisted in a host file: what the
// QEMU board offers in place of the eMMC's RPMB.
//
// Towards the applet it behaves as the real partition does: an
// authentication key programmed once, a write counter that only goes up,
// authenticated writes and reads with the reader's nonce. It is not replay
// protected against the host, which can put back an old copy of the file.
//
// The file holds two copies of the state, each with a checksum, written one
// after the other, so a write cut by a crash leaves one intact copy.
type EmulatedRPMB struct {
	mu     sync.Mutex
	f      File
	st     rpmbState
	resp   []byte // frame for the next ReadRPMB
	result []byte // frame for the next result read request
}

type rpmbState struct {
	gen     uint64
	keySet  bool
	key     [32]byte
	counter uint32
	block   [store.RPMBBlockSize]byte // one block: the anchor's
}

// Frame layout (JESD84-B51 Table 17); the MAC covers [data:].
const (
	fMAC     = 196
	fData    = 228
	fNonce   = 484
	fCounter = 500
	fAddr    = 504
	fCount   = 506
	fResult  = 508
	fType    = 510
	fSize    = 512

	reqProgramKey = 1
	reqCounter    = 2
	reqWrite      = 3
	reqRead       = 4
	reqResult     = 5

	resOK           = 0
	resGeneral      = 1
	resAuth         = 2
	resCounter      = 3
	resAddress      = 4
	resWrite        = 5
	resNoKey        = 7
	resCounterSpent = 0x80
)

const (
	rpmbMagic    = "CQRPMB01"
	rpmbSlotLen  = 8 + 8 + 4 + 4 + 32 + store.RPMBBlockSize + sha256.Size
	rpmbSlotSize = 512 // slot stride in the file
)

// OpenEmulatedRPMB reads the partition kept in f: an empty file is a new
// partition with no key programmed.
func OpenEmulatedRPMB(f File) (*EmulatedRPMB, error) {
	e := &EmulatedRPMB{f: f}
	size, err := f.Size()
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return e, nil
	}
	var best *rpmbState
	for i := int64(0); i < 2; i++ {
		b := make([]byte, rpmbSlotLen)
		if _, err := f.ReadAt(b, i*rpmbSlotSize); err != nil {
			continue
		}
		st, ok := decodeRPMB(b)
		if ok && (best == nil || st.gen > best.gen) {
			best = &st
		}
	}
	if best == nil {
		return nil, errors.New("qemu: the emulated RPMB file holds no valid state")
	}
	e.st = *best
	return e, nil
}

func encodeRPMB(st *rpmbState) []byte {
	b := make([]byte, 0, rpmbSlotLen)
	b = append(b, rpmbMagic...)
	b = binary.BigEndian.AppendUint64(b, st.gen)
	var k uint32
	if st.keySet {
		k = 1
	}
	b = binary.BigEndian.AppendUint32(b, k)
	b = binary.BigEndian.AppendUint32(b, st.counter)
	b = append(b, st.key[:]...)
	b = append(b, st.block[:]...)
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

func decodeRPMB(b []byte) (rpmbState, bool) {
	var st rpmbState
	if len(b) != rpmbSlotLen || string(b[:8]) != rpmbMagic {
		return st, false
	}
	sum := sha256.Sum256(b[:len(b)-sha256.Size])
	if !bytes.Equal(sum[:], b[len(b)-sha256.Size:]) {
		return st, false
	}
	st.gen = binary.BigEndian.Uint64(b[8:])
	k := binary.BigEndian.Uint32(b[16:])
	if k > 1 {
		return st, false
	}
	st.keySet = k == 1
	st.counter = binary.BigEndian.Uint32(b[20:])
	copy(st.key[:], b[24:56])
	copy(st.block[:], b[56:56+store.RPMBBlockSize])
	return st, true
}

// persist writes next to both slots; the state changes only if that works.
func (e *EmulatedRPMB) persist(next *rpmbState) error {
	next.gen = e.st.gen + 1
	b := encodeRPMB(next)
	for i := int64(0); i < 2; i++ {
		if _, err := e.f.WriteAt(b, i*rpmbSlotSize); err != nil {
			return err
		}
	}
	e.st = *next
	return nil
}

func (e *EmulatedRPMB) mac(f []byte) [32]byte {
	m := hmac.New(sha256.New, e.st.key[:])
	m.Write(f[fData:fSize])
	var out [32]byte
	m.Sum(out[:0])
	return out
}

// answer fills in a response frame's type and result, and its MAC.
func (e *EmulatedRPMB) answer(r []byte, req, result uint16, withMAC bool) {
	if e.st.counter == ^uint32(0) {
		result |= resCounterSpent
	}
	binary.BigEndian.PutUint16(r[fType:], req<<8)
	binary.BigEndian.PutUint16(r[fResult:], result)
	if withMAC && e.st.keySet {
		m := e.mac(r)
		copy(r[fMAC:fData], m[:])
	}
}

// WriteRPMB receives a request frame.
func (e *EmulatedRPMB) WriteRPMB(frame []byte, reliable bool) error {
	if len(frame) != fSize {
		return errors.New("qemu: rpmb frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	req := binary.BigEndian.Uint16(frame[fType:])
	r := make([]byte, fSize)
	switch req {
	case reqProgramKey:
		res := uint16(resOK)
		if !reliable || e.st.keySet {
			res = resGeneral
		} else {
			next := e.st
			next.keySet = true
			copy(next.key[:], frame[fMAC:fData])
			if e.persist(&next) != nil {
				res = resWrite
			}
		}
		e.answer(r, req, res, false)
		e.result, e.resp = r, nil
	case reqCounter:
		copy(r[fNonce:fCounter], frame[fNonce:fCounter])
		res := uint16(resOK)
		if !e.st.keySet {
			res = resNoKey
		} else {
			binary.BigEndian.PutUint32(r[fCounter:], e.st.counter)
		}
		e.answer(r, req, res, true)
		e.resp = r
	case reqWrite:
		addr := binary.BigEndian.Uint16(frame[fAddr:])
		res := uint16(resOK)
		switch {
		case !e.st.keySet:
			res = resNoKey
		case !reliable || binary.BigEndian.Uint16(frame[fCount:]) != 1:
			res = resGeneral
		default:
			m := e.mac(frame)
			switch {
			case subtle.ConstantTimeCompare(m[:], frame[fMAC:fData]) != 1:
				res = resAuth
			case e.st.counter == ^uint32(0):
				res = resWrite
			case binary.BigEndian.Uint32(frame[fCounter:]) != e.st.counter:
				res = resCounter
			case addr != 0:
				res = resAddress
			default:
				next := e.st
				copy(next.block[:], frame[fData:fNonce])
				next.counter++
				if e.persist(&next) != nil {
					res = resWrite
				}
			}
		}
		binary.BigEndian.PutUint32(r[fCounter:], e.st.counter)
		binary.BigEndian.PutUint16(r[fAddr:], addr)
		e.answer(r, req, res, true)
		e.result, e.resp = r, nil
	case reqRead:
		addr := binary.BigEndian.Uint16(frame[fAddr:])
		copy(r[fNonce:fCounter], frame[fNonce:fCounter])
		binary.BigEndian.PutUint16(r[fAddr:], addr)
		binary.BigEndian.PutUint16(r[fCount:], 1)
		res := uint16(resOK)
		switch {
		case !e.st.keySet:
			res = resNoKey
		case addr != 0:
			res = resAddress
		default:
			copy(r[fData:fNonce], e.st.block[:])
		}
		e.answer(r, req, res, true)
		e.resp = r
	case reqResult:
		e.resp = e.result
	default:
		e.answer(r, req, resGeneral, false)
		e.resp = r
	}
	return nil
}

// ReadRPMB returns the response to the last request.
func (e *EmulatedRPMB) ReadRPMB(frame []byte) error {
	if len(frame) != fSize {
		return errors.New("qemu: rpmb frame must be 512 bytes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.resp == nil {
		return errors.New("qemu: rpmb: no response pending")
	}
	copy(frame, e.resp)
	e.resp = nil
	return nil
}

// Counter is the write counter (for logs; unauthenticated).
func (e *EmulatedRPMB) Counter() uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.counter
}
