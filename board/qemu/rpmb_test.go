package qemu

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cofferhsm/coffer/applet/store"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

func openFile(t *testing.T, path string) emulate.OSFile {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return emulate.OSFile{File: f}
}

// The store's own RPMB client must accept the emulation: program the key,
// write and read the anchor, and see the counter survive a reopen.
func TestEmulatedRPMBWithStoreClient(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, AnchorFile)
	e, err := OpenEmulatedRPMB(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	key := storage.DeriveRPMBKey(DevSealingKey)
	a := storage.NewRPMBAnchor(e, key, 0)
	_, _, err = a.Read()
	var re *storage.RPMBError
	if !errors.As(err, &re) || re.Result != storage.RPMBKeyNotProgrammed {
		t.Fatalf("read before key programming: %v, want key not programmed", err)
	}
	if err := a.ProgramKey(); err != nil {
		t.Fatal(err)
	}
	if err := a.ProgramKey(); err == nil {
		t.Fatal("a second key programming succeeded")
	}
	var blk [storage.AnchorSize]byte
	blk[0] = 42
	c, err := a.Write(blk)
	if err != nil || c != 1 {
		t.Fatalf("write: counter %d, %v", c, err)
	}
	got, c, err := a.Read()
	if err != nil || c != 1 || got != blk {
		t.Fatalf("read: %v counter %d err %v", got[0], c, err)
	}

	// Reopen from the file.
	e2, err := OpenEmulatedRPMB(openFile(t, path))
	if err != nil {
		t.Fatal(err)
	}
	a2 := storage.NewRPMBAnchor(e2, key, 0)
	got, c, err = a2.Read()
	if err != nil || c != 1 || got != blk {
		t.Fatalf("after reopen: %v counter %d err %v", got[0], c, err)
	}
	// A wrong key cannot write.
	wrong := storage.NewRPMBAnchor(e2, storage.DeriveRPMBKey([32]byte{1}), 0)
	if _, err := wrong.Write(blk); err == nil {
		t.Fatal("write with a wrong key succeeded")
	}
}

// A whole store on the QEMU board's file device and emulated RPMB, and the
// rollback the anchor detects: an old copy of the store file.
func TestStoreOnBoardFilesDetectsRollback(t *testing.T) {
	dir := t.TempDir()
	storePath := filepath.Join(dir, StoreFile)
	open := func() (*store.Store, error) {
		dev, err := emulate.NewFileDevice(openFile(t, storePath), 4096)
		if err != nil {
			t.Fatal(err)
		}
		e, err := OpenEmulatedRPMB(openFile(t, filepath.Join(dir, AnchorFile)))
		if err != nil {
			t.Fatal(err)
		}
		a := storage.NewRPMBAnchor(e, storage.DeriveRPMBKey(DevSealingKey), 0)
		if _, _, err := a.Read(); err != nil {
			if err := a.ProgramKey(); err != nil {
				t.Fatal(err)
			}
		}
		opts := store.Options{SealingKey: DevSealingKey}
		s, err := store.Open(dev, a, opts)
		if errors.Is(err, store.ErrNotFormatted) {
			if err := store.Format(dev, a, opts); err != nil {
				t.Fatal(err)
			}
			s, err = store.Open(dev, a, opts)
		}
		return s, err
	}
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	s.Put([]byte("alice"), []byte("v1"))
	if _, err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	old, err := os.ReadFile(storePath)
	if err != nil {
		t.Fatal(err)
	}
	s, err = open()
	if err != nil {
		t.Fatal(err)
	}
	s.Put([]byte("alice"), []byte("v2"))
	if _, err := s.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.WriteFile(storePath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = open()
	if err == nil {
		v, _, gerr := s.Get([]byte("alice"))
		s.Close()
		if gerr == nil {
			t.Fatalf("rolled-back store served %q", v)
		}
		err = gerr
	}
	var tam interface{ Tampered() bool }
	if !errors.As(err, &tam) || !tam.Tampered() {
		t.Fatalf("rollback gave %v, want a tamper error", err)
	}
}

// An anchor file from before the board used the store's emulator is refused
// with a message saying so, and left as it was.
func TestEmulatedRPMBRefusesOldFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), AnchorFile)
	old := append([]byte("CQRPMB01"), make([]byte, 848)...)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenEmulatedRPMB(openFile(t, path)); err == nil || !strings.Contains(err.Error(), "older build") {
		t.Fatalf("old format: %v", err)
	}
	if b, _ := os.ReadFile(path); !bytes.Equal(b, old) {
		t.Fatal("the old file was changed")
	}
}

// The fake fuse is blown once written, survives a reopen, and a damaged file
// is an error rather than a fuse that is not blown.
func TestFileFuse(t *testing.T) {
	path := filepath.Join(t.TempDir(), FuseFile)
	u := NewFileFuse(openFile(t, path))
	if b, err := u.Blown(); err != nil || b {
		t.Fatalf("new fuse: %v %v", b, err)
	}
	if err := u.Blow(); err != nil {
		t.Fatal(err)
	}
	if b, err := NewFileFuse(openFile(t, path)).Blown(); err != nil || !b {
		t.Fatalf("after blowing and reopening: %v %v", b, err)
	}
	if err := os.WriteFile(path, []byte("coffer fake OTP fuse: RPMB key not\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := NewFileFuse(openFile(t, path)).Blown(); err == nil {
		t.Fatalf("damaged file read as %v", b)
	}
}

// Whatever the host puts in the fake fuse file, Blown reads it as blown only
// when it holds exactly the blown marker, as not blown only when empty, and
// as an error otherwise.
func FuzzFileFuse(f *testing.F) {
	f.Add([]byte{})
	f.Add(append([]byte(nil), fileFuseBlown...))
	f.Add(append(append([]byte(nil), fileFuseBlown...), 0))
	f.Fuzz(func(t *testing.T, content []byte) {
		b, err := NewFileFuse(emulate.NewMemFile(content)).Blown()
		switch {
		case len(content) == 0:
			if b || err != nil {
				t.Fatalf("empty: %v %v", b, err)
			}
		case bytes.Equal(content, fileFuseBlown):
			if !b || err != nil {
				t.Fatalf("blown: %v %v", b, err)
			}
		default:
			if err == nil {
				t.Fatalf("%q read as %v", content, b)
			}
		}
	})
}
