package store_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// The software vault's wiring: a store image and an emulated RPMB file.
// Formatting is explicit: only a never-anchored store is formatted, so a
// wiped image under an existing anchor is refused rather than started over.
func Example() {
	dir, _ := os.MkdirTemp("", "coffer-example-")
	defer os.RemoveAll(dir)
	var deviceKey [32]byte // from the OS: device-unique, never exported

	dev, err := emulate.OpenFileDevice(filepath.Join(dir, "store.img"), 1<<16) // 32 MiB
	if err != nil {
		log.Fatal(err)
	}
	defer dev.Close()
	anc, err := emulate.OpenFileAnchor(filepath.Join(dir, "anchor.rpmb"), storage.DeriveRPMBKey(deviceKey))
	if err != nil {
		log.Fatal(err)
	}
	defer anc.Close()
	opts := store.Options{SealingKey: deviceKey} // MinAnchorInterval: 100 ms on hardware

	s, err := store.Open(dev, anc, opts)
	if errors.Is(err, store.ErrNotFormatted) {
		if err = store.Format(dev, anc, opts); err == nil {
			s, err = store.Open(dev, anc, opts)
		}
	}
	if err != nil {
		log.Fatal(err) // errors.Is(err, storage.ErrTampered): refuse service
	}
	defer s.Close()

	s.Put([]byte("alice"), []byte("attempts=1"))
	if _, err := s.Commit(context.Background()); err != nil {
		log.Fatal(err)
	}
	rec, found, err := s.Get([]byte("alice"))
	fmt.Println(string(rec), found, err, s.Stats().Records)
	// Output: attempts=1 true <nil> 1
}
