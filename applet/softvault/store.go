package softvault

import (
	"path/filepath"
	"time"

	"github.com/cofferhsm/coffer/applet/store"
)

const (
	StoreFile  = "store.img"
	anchorFile = "anchor.rpmb"
	// storeSectors sizes the store file: 256 MiB of 512-byte sectors, room
	// for about 250,000 records with copy-on-write headroom. The file is
	// sparse until written.
	storeSectors = 256 << 20 / store.SectorSize
)

// fileStore is the record store on a file device with a file anchor: the
// software vault's stand-ins for eMMC and RPMB.
type fileStore struct {
	*store.Store
	dev    *store.FileDevice
	anchor *store.FileAnchor
}

func openStore(dir string, deviceKey [32]byte, create bool, flushLatency time.Duration) (*fileStore, error) {
	dev, err := store.OpenFileDevice(filepath.Join(dir, StoreFile), storeSectors)
	if err != nil {
		return nil, err
	}
	anchor, err := store.OpenFileAnchor(filepath.Join(dir, anchorFile), store.DeriveRPMBKey(deviceKey))
	if err != nil {
		dev.Close()
		return nil, err
	}
	var d store.Device = dev
	if flushLatency > 0 {
		d = store.WithFlushLatency(dev, flushLatency)
	}
	opts := store.Options{SealingKey: deviceKey}
	if create {
		if err := store.Format(d, anchor, opts); err != nil {
			dev.Close()
			anchor.Close()
			return nil, err
		}
	}
	s, err := store.Open(d, anchor, opts)
	if err != nil {
		dev.Close()
		anchor.Close()
		return nil, err
	}
	return &fileStore{Store: s, dev: dev, anchor: anchor}, nil
}

// AnchorWrites is the anchor's write counter, for the vault's status.
func (f *fileStore) AnchorWrites() uint64 { return uint64(f.Store.Stats().WriteCounter) }

func (f *fileStore) Close() error {
	err := f.Store.Close()
	if e := f.dev.Close(); err == nil {
		err = e
	}
	if e := f.anchor.Close(); err == nil {
		err = e
	}
	return err
}
