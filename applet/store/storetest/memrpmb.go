package storetest

import (
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// MemRPMB is an emulated RPMB partition in memory, with no persistence.
type MemRPMB struct{ *emulate.RPMBEmulator }

// NewMemRPMB returns an emulated RPMB partition of the given number of
// 256-byte blocks (1 to 65536), with no key programmed.
func NewMemRPMB(blocks int) *MemRPMB {
	e, err := emulate.NewRPMBEmulator(blocks, nil, nil)
	if err != nil {
		panic(err) // only for a number of blocks out of range
	}
	return &MemRPMB{e}
}

// Clone returns an independent copy of the partition.
func (m *MemRPMB) Clone() *MemRPMB { return &MemRPMB{m.RPMBEmulator.Clone()} }

// NewMemAnchor returns an anchor on a fresh in-memory RPMB partition whose
// key has been programmed with authKey, and the partition itself.
func NewMemAnchor(authKey [32]byte) (*storage.RPMBAnchor, *MemRPMB) {
	m := NewMemRPMB(1)
	a := storage.NewRPMBAnchor(m, authKey, 0)
	if err := a.ProgramKey(); err != nil {
		panic(err) // cannot fail on a fresh emulator
	}
	return a, m
}
