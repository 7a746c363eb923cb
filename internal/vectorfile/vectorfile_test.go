package vectorfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	c, err := Parse("g/x", []byte("expect: malformed\nmessage: login-start\ncomment: a\ncomment: b\n\nA0\n01\n"))
	if err != nil || c.Expect != "malformed" || c.Header["message"] != "login-start" || len(c.Comments) != 2 ||
		!bytes.Equal(c.Data, []byte{0xa0, 0x01}) || c.Group() != "g" {
		t.Fatalf("%+v %v", c, err)
	}
	if c, err := Parse("g/y", []byte("expect: success\n\n")); err != nil || len(c.Data) != 0 {
		t.Fatalf("an empty body: %+v %v", c, err)
	}
	for _, bad := range []string{
		"expect: success\n",                      // no empty line
		"message: x\n\n00\n",                     // no expect
		"expect: a\nexpect: b\n\n00\n",           // expect twice
		"expect: success\nBad: x\n\n00\n",        // an upper-case name
		"expect: success\nkey x\n\n00\n",         // no ": "
		"expect: success\na: 1\na: 2\n\n00\n",    // a header twice
		"expect: success\n\n0g\n",                // not hex
		"expect: success\nmessage: x\n\n000\n",   // odd hex
		"expect: success\nmessage: x\n\n00\n\n0", // odd across a blank line
	} {
		if _, err := Parse("g/x", []byte(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

// Load takes a folder whose cases match its SHA256SUMS, and refuses one
// whose case differs by one byte.
func TestLoadChecksTheSums(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "g"), 0o755)
	file := []byte("expect: success\n\n00\n")
	os.WriteFile(filepath.Join(dir, "g", "x"), file, 0o644)
	sum := sha256.Sum256(file)
	os.WriteFile(filepath.Join(dir, "SHA256SUMS"), []byte(hex.EncodeToString(sum[:])+"  g/x\n"), 0o644)
	ft := &fakeT{TB: t}
	if cases := Load(ft, dir); ft.failed || len(cases) != 1 || cases[0].Path != "g/x" {
		t.Fatalf("a matching folder: %+v, failed %v", cases, ft.failed)
	}
	file[len(file)-2] ^= 1
	os.WriteFile(filepath.Join(dir, "g", "x"), file, 0o644)
	ft = &fakeT{TB: t}
	Load(ft, dir)
	if !ft.failed {
		t.Fatal("a file whose sum differs loaded")
	}
}

type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Fatalf(string, ...any) { f.failed = true }
func (f *fakeT) Helper()               {}
