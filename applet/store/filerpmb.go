package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// FileRPMB emulates an RPMB partition in a host file, for the software vault
// and for QEMU builds, where there is no RPMB.
//
// The emulation keeps RPMB's semantics towards the store (authenticated
// writes, a write counter that only increases, atomic block writes), but it
// is not replay protected against the host: the file holds the
// authentication key and the counter, and whoever controls the file can
// restore an old copy of it, or write a new state, at will. A store whose
// anchor is a FileRPMB detects rollback of the store but not a rollback of
// the store and this file together. See FORMAT.md, "Threat model".
//
// The file holds two copies of the partition state, each with a checksum;
// every update rewrites the first copy, syncs, then the second, and syncs,
// so a power cut leaves at least one intact copy and, once the update
// returns, no copy of the previous state remains in the file (which matters
// for cryptographic erasure: the anchor holds the store's root key).
type FileRPMB struct {
	rpmbEmulator
	f      *os.File
	blocks int
}

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

// decodeRPMBState parses one slot of a FileRPMB file. A torn or damaged slot
// is an error; it is not a security check (the host can write any valid
// slot), only crash detection.
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

// OpenFileRPMB opens, or creates with no key programmed, an emulated RPMB
// partition of the given number of 256-byte blocks in the file at path.
func OpenFileRPMB(path string, blocks int) (*FileRPMB, error) {
	if blocks < 1 || blocks > 1<<16 {
		return nil, fmt.Errorf("store: rpmb: %d blocks", blocks)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	r := &FileRPMB{f: f, blocks: blocks}
	stride := fileRPMBStride(blocks)
	n := fileRPMBSlotLen(blocks)
	var slots [2]rpmbState
	var ok [2]bool
	for i := range slots {
		b := make([]byte, n)
		if _, err := f.ReadAt(b, int64(i)*stride); err == nil {
			slots[i], err = decodeRPMBState(b, blocks)
			ok[i] = err == nil
		}
	}
	good := -1
	switch {
	case ok[0] && (!ok[1] || slots[0].gen >= slots[1].gen):
		r.st, good = slots[0], 0
	case ok[1]:
		r.st, good = slots[1], 1
	default:
		st, _ := f.Stat()
		if st != nil && st.Size() > 0 {
			f.Close()
			return nil, fmt.Errorf("store: rpmb: %s holds no valid state", path)
		}
		r.st = rpmbState{blocks: make([][RPMBBlockSize]byte, blocks)}
	}
	// Make both copies equal before the first update, so that an update
	// interrupted while rewriting the first copy leaves the second intact.
	// Only the copy that is not the current state is rewritten, so a cut
	// during the repair cannot damage the good one.
	if !ok[0] || !ok[1] || slots[0].gen != slots[1].gen {
		var err error
		switch good {
		case 0:
			err = r.writeSlots(&r.st, 1)
		case 1:
			err = r.writeSlots(&r.st, 0)
		default:
			err = r.writeSlots(&r.st, 0, 1)
		}
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	r.persist = r.write
	return r, nil
}

func (r *FileRPMB) write(st *rpmbState) error { return r.writeSlots(st, 0, 1) }

func (r *FileRPMB) writeSlots(st *rpmbState, slots ...int64) error {
	b := encodeRPMBState(st)
	for _, i := range slots {
		if _, err := r.f.WriteAt(b, i*fileRPMBStride(r.blocks)); err != nil {
			return err
		}
		if err := r.f.Sync(); err != nil {
			return err
		}
	}
	return nil
}

// Close closes the file.
func (r *FileRPMB) Close() error { return r.f.Close() }

// FileAnchor is an RPMBAnchor on a FileRPMB: the software vault's anchor.
type FileAnchor struct {
	*RPMBAnchor
	dev *FileRPMB
}

// OpenFileAnchor opens (or creates) the emulated RPMB file at path and
// returns an anchor in its block 0, authenticated with authKey. A new file
// has authKey programmed into it. The host controls this file: see FileRPMB.
func OpenFileAnchor(path string, authKey [32]byte) (*FileAnchor, error) {
	dev, err := OpenFileRPMB(path, 1)
	if err != nil {
		return nil, err
	}
	a := NewRPMBAnchor(dev, authKey, 0)
	dev.mu.Lock()
	fresh := !dev.st.keySet
	dev.mu.Unlock()
	if fresh {
		if err := a.ProgramKey(); err != nil {
			dev.Close()
			return nil, err
		}
	}
	return &FileAnchor{RPMBAnchor: a, dev: dev}, nil
}

// Close closes the emulated partition.
func (a *FileAnchor) Close() error { return a.dev.Close() }
