package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
)

// tapMode is what the attacker on the bus does.
type tapMode int

const (
	// tapPass: a healthy bus, every frame recorded.
	tapPass tapMode = iota
	// tapBlank: every request is answered "authentication key not
	// programmed", unauthenticated, as by a blank eMMC swapped in. A key
	// programming request is captured: with the key, the attacker plays
	// an RPMB partition of its own holding an old anchor (a rollback).
	tapBlank
	// tapReplay: every request is answered with the last genuine response
	// of its type seen earlier (an old counter, an old anchor), and
	// nothing reaches the partition.
	tapReplay
	// tapFailWrites: authenticated writes fail on the bus.
	tapFailWrites
)

var errBus = errors.New("bus tap: transfer failed")

// busTap sits on the eMMC bus between the OS and the RPMB partition.
type busTap struct {
	mu     sync.Mutex
	real   storage.RPMBTransport
	mode   tapMode
	sent   [][]byte          // every request frame put on the bus
	seen   map[uint16][]byte // the last genuine response of each type
	last   uint16            // the last request type (a result read answers it)
	forged []byte            // the reply to the next ReadRPMB
	ackKey bool              // answer the next result read "key programmed"

	// What the attacker recorded for a rollback: the anchor block of an
	// authenticated write request, and that write's counter.
	oldBlock   []byte
	oldCounter uint32
	// The attacker's own partition, once it holds a stolen key.
	stolen *storetest.MemRPMB
}

func newBusTap() *busTap { return &busTap{seen: map[uint16][]byte{}} }

// attach puts the tap in front of this boot's partition.
func (b *busTap) attach(real storage.RPMBTransport) storage.RPMBTransport {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.real = real
	b.forged, b.ackKey = nil, false
	return b
}

func (b *busTap) setMode(m tapMode) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mode, b.stolen = m, nil
}

// frames returns every request frame sent so far.
func (b *busTap) frames() [][]byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([][]byte(nil), b.sent...)
}

// forget drops the frames recorded so far (the provisioning, in a trusted
// place, is not the field).
func (b *busTap) forget() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = nil
}

// remember keeps the anchor of the last authenticated write seen on the bus:
// what the attacker will try to roll back to.
func (b *busTap) remember() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.sent) - 1; i >= 0; i-- {
		f := b.sent[i]
		if binary.BigEndian.Uint16(f[storage.RPMBOffType:]) == storage.RPMBReqWrite {
			b.oldBlock = bytes.Clone(f[storage.RPMBOffData:storage.RPMBOffNonce])
			b.oldCounter = binary.BigEndian.Uint32(f[storage.RPMBOffCounter:])
			return
		}
	}
	panic("bus tap: no authenticated write seen")
}

func unauthenticated(typ, result uint16) []byte {
	f := make([]byte, storage.RPMBFrameSize)
	binary.BigEndian.PutUint16(f[storage.RPMBOffType:], typ)
	binary.BigEndian.PutUint16(f[storage.RPMBOffResult:], result)
	return f
}

// steal builds the attacker's partition with a key taken off the bus: it
// holds the remembered anchor, with a write counter past the one that anchor
// was written at, as the genuine partition had then.
func (b *busTap) steal(key []byte) {
	fake := storetest.NewMemRPMB(1)
	a := storage.NewRPMBAnchor(fake, [32]byte(key), 0)
	if err := a.ProgramKey(); err != nil {
		panic(err)
	}
	var blk [storage.AnchorSize]byte
	copy(blk[:], b.oldBlock)
	for fake.Counter() <= b.oldCounter {
		if _, err := a.Write(blk); err != nil {
			panic(err)
		}
	}
	b.stolen = fake
}

func (b *busTap) WriteRPMB(frame []byte, reliable bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sent = append(b.sent, bytes.Clone(frame))
	req := binary.BigEndian.Uint16(frame[storage.RPMBOffType:])
	if req == storage.RPMBReqResult && b.ackKey {
		b.ackKey = false
		b.forged = unauthenticated(storage.RPMBReqProgramKey<<storage.RPMBRespShift, storage.RPMBOK)
		return nil
	}
	if b.stolen != nil {
		return b.stolen.WriteRPMB(frame, reliable)
	}
	answering := req
	if req == storage.RPMBReqResult {
		answering = b.last
	} else {
		b.last = req
	}
	switch b.mode {
	case tapBlank:
		if req == storage.RPMBReqProgramKey && b.oldBlock != nil {
			b.steal(frame[storage.RPMBOffMAC:storage.RPMBOffData])
			b.ackKey = true
			return nil
		}
		b.forged = unauthenticated(answering<<storage.RPMBRespShift, storage.RPMBKeyNotProgrammed)
		return nil
	case tapReplay:
		if old, ok := b.seen[answering<<storage.RPMBRespShift]; ok {
			b.forged = bytes.Clone(old)
		} else {
			b.forged = unauthenticated(answering<<storage.RPMBRespShift, storage.RPMBGeneralFailure)
		}
		return nil
	case tapFailWrites:
		if req == storage.RPMBReqWrite {
			return errBus
		}
	}
	return b.real.WriteRPMB(frame, reliable)
}

func (b *busTap) ReadRPMB(frame []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.forged != nil {
		copy(frame, b.forged)
		b.forged = nil
		return nil
	}
	if b.stolen != nil {
		return b.stolen.ReadRPMB(frame)
	}
	if err := b.real.ReadRPMB(frame); err != nil {
		return err
	}
	b.seen[binary.BigEndian.Uint16(frame[storage.RPMBOffType:])] = bytes.Clone(frame)
	return nil
}
