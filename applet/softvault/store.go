package softvault

import (
	"context"
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/applet/startup"
	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

const (
	StoreFile  = "store.img"
	anchorFile = "anchor.rpmb"
	// storeSectors sizes the store file: 256 MiB of 512-byte sectors, room
	// for about 375,000 records as the store estimates it empty (its
	// status's record_capacity; some 400,000 once filled). The file is
	// sparse until written.
	storeSectors = 256 << 20 / storage.SectorSize
)

// fileStore is the vault on its record store, on a file device with a file
// anchor: the software vault's stand-ins for eMMC and RPMB.
type fileStore struct {
	*startup.Vault
	dev    *emulate.FileDevice
	anchor *emulate.FileAnchor
}

// openStore opens the vault in dir on its store (applet/startup; with
// create, formatting the store and creating the identity where an init left
// them undone).
func openStore(ctx context.Context, dir string, deviceKey [32]byte, create bool, flushLatency time.Duration, vopts vault.Options) (*fileStore, error) {
	dev, err := emulate.OpenFileDevice(filepath.Join(dir, StoreFile), storeSectors)
	if err != nil {
		return nil, err
	}
	anchor, err := emulate.OpenFileAnchor(filepath.Join(dir, anchorFile), storage.DeriveRPMBKey(deviceKey))
	if err != nil {
		dev.Close()
		return nil, err
	}
	vopts.AnchorWrites = func() uint64 { return uint64(anchor.WriteCounter()) }
	var d storage.Device = dev
	if flushLatency > 0 {
		d = emulate.WithFlushLatency(dev, flushLatency)
	}
	v, err := startup.Open(ctx, d, anchor, startup.Options{
		Store:  store.Options{SealingKey: deviceKey},
		Vault:  vopts,
		Create: create,
	})
	if err != nil {
		dev.Close()
		anchor.Close()
		return nil, err
	}
	return &fileStore{Vault: v, dev: dev, anchor: anchor}, nil
}

func (f *fileStore) Close() error {
	err := f.Vault.Close()
	if e := f.dev.Close(); err == nil {
		err = e
	}
	if e := f.anchor.Close(); err == nil {
		err = e
	}
	return err
}
