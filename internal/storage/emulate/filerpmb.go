package emulate

import (
	"fmt"
	"os"

	"github.com/cofferhsm/coffer/internal/storage"
)

// FileRPMB emulates an RPMB partition in a host file, for the software vault
// (the QEMU board uses the same emulation and format over its semihosting
// file, see OpenRPMBEmulator).
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
	*RPMBEmulator
	f *os.File
}

// OpenFileRPMB opens, or creates with no key programmed, an emulated RPMB
// partition of the given number of 256-byte blocks in the file at path.
func OpenFileRPMB(path string, blocks int) (*FileRPMB, error) {
	if blocks < 1 || blocks > maxRPMBBlocks {
		return nil, fmt.Errorf("rpmb: %d blocks", blocks)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	e, err := OpenRPMBEmulator(f, blocks)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return &FileRPMB{RPMBEmulator: e, f: f}, nil
}

// Close closes the file.
func (r *FileRPMB) Close() error { return r.f.Close() }

// FileAnchor is a storage.RPMBAnchor on a FileRPMB: the software vault's anchor.
type FileAnchor struct {
	*storage.RPMBAnchor
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
	a := storage.NewRPMBAnchor(dev, authKey, 0)
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
