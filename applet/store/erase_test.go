package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/crypto/chacha20"

	"github.com/cofferhsm/coffer/applet/store/storetest"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

// The erasure tests play someone who keeps every sector of the device and
// knows the device sealing key (the strongest off-chip position short of
// reading RAM): from the current anchor storage they derive every key that
// is still derivable, by trying every known key on every block until no new
// key appears, then try every key on every sector as a record. An erased
// record must not come out.

// anchorBlocks returns every anchor-sized block an attacker can read from
// the anchor's medium: for a file anchor, both copies in the file.
type anchorBlocks func() [][storage.AnchorSize]byte

var markers = [][]byte{[]byte("SECRET"), []byte("new value"), []byte("ordinary"), []byte("fresh")}

// keystreamOpen decrypts b as ChaCha20-Poly1305 ciphertext under key and
// the all-zero nonce the store uses, without checking the tag: an attacker
// needs neither the associated data nor a valid tag to read a block.
func keystreamOpen(key [32]byte, ct []byte) []byte {
	c, err := chacha20.NewUnauthenticatedCipher(key[:], make([]byte, chacha20.NonceSize))
	if err != nil {
		panic(err)
	}
	c.SetCounter(1) // block 0 keys Poly1305 (RFC 8439)
	p := make([]byte, len(ct))
	c.XORKeyStream(p, ct)
	return p
}

// derivableKeys returns every key derivable from the sealing key, the anchor
// blocks and the device, and every sector of the device decrypted under
// every one of them.
func derivableKeys(t *testing.T, sealing [32]byte, blocks [][storage.AnchorSize]byte, dev storage.Device) (keys map[[32]byte]bool, plaintexts [][]byte) {
	t.Helper()
	dk := deriveDeviceKeys(&sealing)
	keys = map[[32]byte]bool{}
	for _, b := range blocks {
		if st, err := decodeAnchor(&b, &dk); err == nil {
			keys[st.root.key] = true
		}
	}
	type try struct {
		loc uint64
		k   [32]byte
	}
	tried := map[try]bool{}
	groups := dev.Sectors() / nodeSectors
	buf := make([]byte, NodeSize)
	for grew := true; grew; {
		grew = false
		for g := uint64(1); g < groups; g++ {
			loc := g * nodeSectors
			if err := dev.ReadSectors(loc, buf); err != nil {
				t.Fatal(err)
			}
			for k := range keys {
				if tried[try{loc, k}] {
					continue
				}
				tried[try{loc, k}] = true
				n, err := decodeNode(keystreamOpen(k, buf[:nodePlain]))
				if err != nil {
					continue
				}
				for _, e := range n.ents {
					if !keys[e.ref.key] {
						keys[e.ref.key] = true
						grew = true
					}
				}
			}
		}
	}
	sec := make([]byte, storage.SectorSize)
	for lba := uint64(nodeSectors); lba < groups*nodeSectors; lba++ {
		dev.ReadSectors(lba, sec)
		for k := range keys {
			// As a record, and as the first sector of a node. Keep what
			// holds a marker the tests look for.
			for _, p := range [][]byte{keystreamOpen(k, sec[recordHeader:recordHeader+recordPlain]), keystreamOpen(k, sec)} {
				for _, m := range markers {
					if bytes.Contains(p, m) {
						plaintexts = append(plaintexts, p)
						break
					}
				}
			}
		}
	}
	return keys, plaintexts
}

func anyContains(ps [][]byte, secret []byte) bool {
	for _, p := range ps {
		if bytes.Contains(p, secret) {
			return true
		}
	}
	return false
}

func TestErasure(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "anchor")
	anc, err := emulate.OpenFileAnchor(path, testAuthKey)
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	fileBlocks := func() [][storage.AnchorSize]byte {
		raw, _ := os.ReadFile(path)
		var out [][storage.AnchorSize]byte
		for i := 0; i+storage.AnchorSize <= len(raw); i += 4 { // any offset, not just where the format puts it
			out = append(out, [storage.AnchorSize]byte(raw[i:i+storage.AnchorSize]))
		}
		return out
	}
	opts := testOpts(4)
	dev := storetest.NewMemDevice(768)
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 20; i++ {
		s.Put(id(i), []byte(fmt.Sprint("ordinary ", i)))
	}
	victim, changer := id(7), id(8)
	secret := func(who []byte, v int) []byte { return []byte(fmt.Sprintf("SECRET %s v%d", who, v)) }
	for v := 0; v < 4; v++ { // several committed versions, each left behind by copy-on-write
		s.Put(victim, secret(victim, v))
		s.Put(changer, secret(changer, v))
		commit(t, s)
	}

	// Positive control: the scan does find live records, and an old anchor
	// block (which real RPMB does not keep, and the file anchor overwrites)
	// would give back the old versions.
	staleAnchor := fileBlocks()
	_, pts := derivableKeys(t, opts.SealingKey, fileBlocks(), dev)
	if !anyContains(pts, secret(victim, 3)) {
		t.Fatal("control: the scan does not find a live record")
	}
	if anyContains(pts, secret(victim, 2)) {
		t.Fatal("an earlier committed version is still derivable before any Shred")
	}
	victimLoc := recordLoc(t, s, victim)
	victimBlock := readSector(t, dev, victimLoc)

	s.Delete(victim)
	s.Put(changer, []byte("new value"))
	s.Shred()
	commit(t, s)

	// The old ciphertext is still on the device (nothing was overwritten)...
	if !bytes.Equal(readSector(t, dev, victimLoc), victimBlock) {
		t.Log("note: the victim's last block was overwritten by reuse")
	}
	// ...but no key derivable from the current device and anchor opens it.
	keys, pts := derivableKeys(t, opts.SealingKey, fileBlocks(), dev)
	for v := 0; v < 4; v++ {
		if anyContains(pts, secret(victim, v)) {
			t.Fatalf("deleted record version %d still decrypts", v)
		}
		if anyContains(pts, secret(changer, v)) {
			t.Fatalf("overwritten record version %d still decrypts", v)
		}
	}
	if !anyContains(pts, []byte("new value")) || !anyContains(pts, []byte("ordinary 19")) {
		t.Fatal("control: live records no longer found by the scan")
	}
	t.Logf("%d keys derivable after the shred, %d record plaintexts", len(keys), len(pts))

	// And the control that shows the test can fail: with the anchor block
	// from before the shred, the deleted record comes back.
	_, pts = derivableKeys(t, opts.SealingKey, append(fileBlocks(), staleAnchor...), dev)
	if !anyContains(pts, secret(victim, 3)) {
		t.Fatal("control: an old anchor should have exposed the deleted record")
	}
}

// TestErasureEveryCommit runs the same check with an RPMB anchor and a crash
// device, after a commit that supersedes a record without an explicit
// Shred: every commit erases what it supersedes.
func TestErasureEveryCommit(t *testing.T) {
	opts := testOpts(0)
	s, dev, _, rp := newMemStore(t, 256, opts)
	for i := 0; i < 5; i++ {
		s.Put(id(i), []byte(fmt.Sprint("SECRET old ", i)))
	}
	commit(t, s)
	for i := 0; i < 5; i++ {
		s.Put(id(i), []byte(fmt.Sprint("fresh ", i)))
	}
	if _, err := s.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	_, pts := derivableKeys(t, opts.SealingKey, [][storage.AnchorSize]byte{rp.Block(0)}, dev)
	if anyContains(pts, []byte("SECRET")) {
		t.Fatal("a superseded record still decrypts")
	}
	if !anyContains(pts, []byte("fresh 4")) {
		t.Fatal("control: live record not found")
	}
}
