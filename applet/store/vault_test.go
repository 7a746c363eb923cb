package store_test

import (
	"errors"
	"testing"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/applet/vault"
	"github.com/cofferhsm/coffer/internal/storage"
)

var _ vault.Store = (*store.Store)(nil)

func TestMatchesVaultContract(t *testing.T) {
	if store.MaxRecordSize != vault.MaxRecordSize {
		t.Fatalf("store.MaxRecordSize %d, vault.MaxRecordSize %d", store.MaxRecordSize, vault.MaxRecordSize)
	}
	// The vault cannot import the store; it recognises integrity failures
	// through this interface.
	dev := storetest.NewMemDevice(256)
	anc, _ := storetest.NewMemAnchor([32]byte{1})
	if err := store.Format(dev, anc, store.Options{}); err != nil {
		t.Fatal(err)
	}
	_, err := store.Open(storetest.NewMemDevice(256), anc, store.Options{})
	var tm interface{ Tampered() bool }
	if !errors.Is(err, storage.ErrTampered) || !errors.As(err, &tm) || !tm.Tampered() {
		t.Fatalf("Open of a wiped device: %v", err)
	}
}
