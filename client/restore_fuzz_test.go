package client

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// FuzzRestore feeds arbitrary tar streams through the whole restore:
// decryption, extraction and the move into place. Whatever the input,
// nothing may appear outside the restore folder, no symlink restored may
// point outside it, and a failed restore leaves nothing behind. ReadBackup
// (ls, verify) must accept exactly what the restore accepts, and list
// exactly what it restored. The seeds include padded archives (SPEC.md,
// "Padding"), with and without a stray byte in the padding.
//
// The fuzzed bytes are a packed tar stream (unpackTar): runs of zeros, which
// fill most of every 512-byte tar block, are written as two bytes, and a
// flag asks for tar header checksums to be set, so that a mutated header is
// read rather than refused for its checksum. Every byte string remains a
// possible input (flag clear, no runs), so nothing the raw stream could
// reach is lost; but the inputs are a tenth of the size, which Go's
// minimiser needs: it spends up to -fuzzminimizetime (60 s) on every new
// interesting input with a pass quadratic in its length, and reports no
// executions meanwhile, which is why the raw harness showed about one
// execution a second. The stream is encrypted to a test-only age recipient
// that carries the file key in clear: the X25519 of a real recipient was
// 40% of each execution, and is not what this target tests. The rest is the
// filesystem: run it with TMPDIR on a tmpfs (TMPDIR=/dev/shm), which is 2 to
// 20 times faster than a busy disk.
func FuzzRestore(f *testing.F) {
	for name, plain := range craftedCases(f, "/tmp/coffer-fuzz-outside") {
		switch name {
		case "data after the end", "not a tar":
			continue // hundreds of one repeated byte: short versions below
		}
		f.Add(packTar(plain))
	}
	f.Add(packTar(append(craft(f, rawEntry{typ: tar.TypeReg, name: "f", body: "x"}), '!')))
	f.Add(packTar([]byte("not an archive")))
	f.Add(packTar(craft(f, rawEntry{typ: tar.TypeDir, name: "a/"}, rawEntry{typ: tar.TypeReg, name: "a/f", body: "x"},
		rawEntry{typ: tar.TypeSymlink, name: "a/s", linkname: "f"}, rawEntry{typ: tar.TypeLink, name: "h", linkname: "a/f"})))
	f.Add([]byte{})
	for _, padded := range paddedSeeds(f) {
		f.Add(packTar(padded))
	}
	f.Fuzz(func(t *testing.T, packed []byte) {
		plain := unpackTar(packed)
		parent := t.TempDir()
		outside := filepath.Join(parent, "outside")
		os.Mkdir(outside, 0o755)
		dst := filepath.Join(parent, "out")
		data := encrypt(t, fuzzRecipient{}, plain)
		_, err := RestoreBackup(bytes.NewReader(data), fuzzIdentity{}, dst, nil)
		listed := map[string]bool{}
		_, lerr := ReadBackup(bytes.NewReader(data), fuzzIdentity{}, func(e Entry) { listed[e.Name] = true })
		if (err == nil) != (lerr == nil) {
			t.Fatalf("restore: %v; ReadBackup: %v", err, lerr)
		}
		if err != nil {
			assertOnly(t, parent, "outside")
		} else {
			filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if rel, _ := filepath.Rel(dst, p); err == nil && rel != "." && !listed[filepath.ToSlash(rel)] {
					t.Fatalf("restored %s, which ReadBackup did not list", rel)
				}
				delete(listed, filepath.ToSlash(must(filepath.Rel(dst, p))))
				return nil
			})
			if len(listed) > 0 {
				t.Fatalf("ReadBackup listed %v, which the restore did not make", listed)
			}
			assertOnly(t, outside)
			filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					t.Fatal(err)
				}
				rel, _ := filepath.Rel(dst, p)
				if d.Type()&fs.ModeSymlink != 0 {
					target, _ := os.Readlink(p)
					if checkSymlink(filepath.ToSlash(rel), target) != nil {
						t.Fatalf("restored symlink %s -> %s points outside", rel, target)
					}
				}
				if strings.HasPrefix(d.Name(), ".coffer-") {
					t.Fatalf("temporary folder %s left", rel)
				}
				return nil
			})
		}
		filepath.WalkDir(parent, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755) // so that the test's cleanup can remove it
			}
			return nil
		})
	})
}

// paddedSeeds are archives padded as a writer pads them, to their Padmé
// length, and the same with one stray byte in the padding.
func paddedSeeds(t testing.TB) [][]byte {
	var out [][]byte
	for _, a := range [][]byte{
		craft(t, rawEntry{typ: tar.TypeDir, name: "a/"}, rawEntry{typ: tar.TypeReg, name: "a/f", body: strings.Repeat("x", 600)}),
		craft(t, rawEntry{typ: tar.TypeReg, name: "f", body: "x"}),
	} {
		p := append(a, make([]byte, PadmeLength(int64(len(a)))-int64(len(a)))...)
		if len(p) == len(a) {
			p = append(a, make([]byte, 512)...)
		}
		out = append(out, p)
		bad := bytes.Clone(p)
		bad[len(a)+(len(p)-len(a))/2] = 'x'
		out = append(out, bad)
	}
	return out
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}

// A packed tar stream is a flags byte, then the stream with every run of
// 1 to 256 zero bytes written as 0x00 and the run's length minus one.
const packFixChecksums = 1 // flag: set the checksum of every ustar header block

// unpackTar expands a packed tar stream (at most 128 times its length).
func unpackTar(packed []byte) []byte {
	if len(packed) == 0 {
		return nil
	}
	flags, body := packed[0], packed[1:]
	var plain []byte
	for i := 0; i < len(body); i++ {
		if body[i] != 0 {
			plain = append(plain, body[i])
			continue
		}
		n := 1
		if i+1 < len(body) {
			i++
			n += int(body[i])
		}
		plain = append(plain, make([]byte, n)...)
	}
	if flags&packFixChecksums != 0 {
		for off := 0; off+512 <= len(plain); off += 512 {
			if b := plain[off : off+512]; bytes.HasPrefix(b[257:], []byte("ustar")) {
				setTarChecksum(b)
			}
		}
	}
	return plain
}

// packTar is unpackTar's inverse, for seeds; it sets the checksum flag,
// which changes nothing in a valid stream.
func packTar(plain []byte) []byte {
	packed := []byte{packFixChecksums}
	for i := 0; i < len(plain); {
		if plain[i] != 0 {
			packed = append(packed, plain[i])
			i++
			continue
		}
		n := 1
		for n < 256 && i+n < len(plain) && plain[i+n] == 0 {
			n++
		}
		packed = append(packed, 0, byte(n-1))
		i += n
	}
	return packed
}

// setTarChecksum writes a tar header block's checksum: the sum of its bytes
// with the checksum field (148–155) counted as spaces, in octal.
func setTarChecksum(block []byte) {
	copy(block[148:156], "        ")
	var sum int
	for _, c := range block {
		sum += int(c)
	}
	copy(block[148:156], fmt.Sprintf("%06o\x00 ", sum))
}

// fuzzRecipient and fuzzIdentity wrap an age file key in clear: a test-only
// age recipient type, so that encrypting each fuzz input costs no X25519.
// The age header, its MAC and the payload's STREAM encryption are the real
// ones.
type fuzzRecipient struct{}
type fuzzIdentity struct{}

const fuzzStanza = "coffer-fuzz-plain"

func (fuzzRecipient) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	return []*age.Stanza{{Type: fuzzStanza, Body: bytes.Clone(fileKey)}}, nil
}

func (fuzzIdentity) Unwrap(stanzas []*age.Stanza) ([]byte, error) {
	for _, s := range stanzas {
		if s.Type == fuzzStanza {
			return bytes.Clone(s.Body), nil
		}
	}
	return nil, age.ErrIncorrectIdentity
}

func TestPackTar(t *testing.T) {
	for name, plain := range craftedCases(t, "/tmp/coffer-fuzz-outside") {
		packed := packTar(plain)
		if got := unpackTar(packed); !bytes.Equal(got, plain) {
			t.Fatalf("%s: unpack(pack(x)) != x", name)
		}
		if len(plain)%512 == 0 && len(packed)*4 > len(plain) { // a tar stream
			t.Errorf("%s: packed %d bytes into %d", name, len(plain), len(packed))
		}
	}
	// Raw bytes, zeros included, stay reachable with the flag clear.
	raw := []byte{0, 0, 0, 7, 0, 'C'}
	if got := unpackTar([]byte{0, 0, 2, 7, 0, 0, 'C'}); !bytes.Equal(got, raw) {
		t.Fatalf("unpack = %x", got)
	}
	// A mutated header gets its checksum back with the flag set.
	plain := craft(t, rawEntry{typ: tar.TypeReg, name: "f", body: "x"})
	packed := packTar(plain)
	packed[1] = 'g' // the name's first byte
	r := tar.NewReader(bytes.NewReader(unpackTar(packed)))
	if h, err := r.Next(); err != nil || h.Name != "g" {
		t.Fatalf("mutated header: %v %v", h, err)
	}
	packed[0] = 0
	if _, err := tar.NewReader(bytes.NewReader(unpackTar(packed))).Next(); !errors.Is(err, tar.ErrHeader) {
		t.Fatalf("mutated header without the flag: %v", err)
	}
}
