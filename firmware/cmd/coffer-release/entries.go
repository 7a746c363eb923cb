package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"

	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// logged is a log's entries, decoded, with what the commands ask of them.
type logged struct {
	entries []*releaselog.Entry
}

func decode(data [][]byte) (*logged, error) {
	l := &logged{}
	for i, d := range data {
		e, err := releaselog.ParseEntry(d)
		if err != nil {
			return nil, fmt.Errorf("entry %d: %w", i, err)
		}
		l.entries = append(l.entries, e)
	}
	return l, nil
}

// highestVersion is the highest release version logged for board (0 if none).
func (l *logged) highestVersion(board string) uint64 {
	var v uint64
	for _, e := range l.entries {
		if e.Kind == releaselog.KindRelease && e.Release.Board == board && e.Release.Version > v {
			v = e.Release.Version
		}
	}
	return v
}

// newestRelease is the last release entry whose Firmware hash is fw, among
// the first n entries.
func (l *logged) newestRelease(fw []byte, n uint64) (uint64, *releaselog.Release, bool) {
	for i := min(n, uint64(len(l.entries))); i > 0; i-- {
		if e := l.entries[i-1]; e.Kind == releaselog.KindRelease && bytes.Equal(e.Release.Firmware, fw) {
			return i - 1, e.Release, true
		}
	}
	return 0, nil, false
}

// hasIdentity reports whether an identity with BundleHash h is logged.
func (l *logged) hasIdentity(h []byte) bool {
	for _, e := range l.entries {
		if e.Kind == releaselog.KindIdentity && bytes.Equal(releaselog.BundleHash(e.Identity), h) {
			return true
		}
	}
	return false
}

// revoked returns the reason a release or identity was revoked, if it was.
func (l *logged) revoked(target releaselog.Kind, h []byte) (string, bool) {
	for _, e := range l.entries {
		if e.Kind == releaselog.KindRevocation && e.Revocation.Target == target && bytes.Equal(e.Revocation.Hash, h) {
			return e.Revocation.Reason, true
		}
	}
	return "", false
}

// revokedKeys finds an identity revocation that id's bundle falls under:
// one naming the bundle itself (h), or one naming a logged bundle (before
// or after the revocation) that shares any key with id. It describes the
// revocation, or returns "".
func (l *logged) revokedKeys(id *protocol.Identity, h []byte) string {
	for i, e := range l.entries {
		r := e.Revocation
		if e.Kind != releaselog.KindRevocation || r.Target != releaselog.KindIdentity {
			continue
		}
		if bytes.Equal(r.Hash, h) {
			return fmt.Sprintf("the bundle itself is revoked by entry %d: %q", i, r.Reason)
		}
		for j, b := range l.entries {
			if b.Kind != releaselog.KindIdentity || !bytes.Equal(releaselog.BundleHash(b.Identity), r.Hash) {
				continue
			}
			k, err := releaselog.KeysOf(b.Identity)
			if err != nil {
				continue // ParseEntry decoded it: cannot happen
			}
			if role := k.Shared(id); role != "" {
				return fmt.Sprintf("its %s key is the revoked identity's (bundle %x at index %d, revoked by entry %d: %q)", role, r.Hash, j, i, r.Reason)
			}
		}
	}
	return ""
}

func hashFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func parseHash(name, s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != sha256.Size {
		return nil, fmt.Errorf("-%s wants a hex SHA-256 (64 digits), got %q", name, s)
	}
	return b, nil
}

func describe(e *releaselog.Entry) string {
	switch e.Kind {
	case releaselog.KindRelease:
		r := e.Release
		s := fmt.Sprintf("release %s version %d board %s commit %s toolchain %s firmware %x applet %x", r.Name, r.Version, r.Board, r.Commit, r.Toolchain, r.Firmware, r.Applet)
		if len(r.BootImage) > 0 {
			s += fmt.Sprintf(" boot-image %x", r.BootImage)
		}
		return s
	case releaselog.KindIdentity:
		return fmt.Sprintf("identity bundle %x", releaselog.BundleHash(e.Identity))
	case releaselog.KindRevocation:
		return fmt.Sprintf("revocation of %v %x: %q", e.Revocation.Target, e.Revocation.Hash, e.Revocation.Reason)
	}
	return e.Kind.String()
}
