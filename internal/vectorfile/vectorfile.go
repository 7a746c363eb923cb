// Package vectorfile reads Coffer's test-vector files: one file per case,
// as filippo.io/age keeps its test kit, so that an implementation in any
// language can walk a folder and check that it reaches each case's expected
// outcome. A case is a header of "name: value" lines (lower-case names;
// "expect" names the outcome, "comment" may repeat, byte values are hex),
// an empty line, and the bytes under test in hex, wrapped at will.
//
// The files are written by generators independent of the code under test
// (protocol/testdata/vectors, applet/opaque/testdata/vectors,
// applet/store/testdata/format); each folder has a SHA256SUMS the generator
// writes, which Load checks so that a case edited by hand fails the tests.
package vectorfile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Case is one vector file.
type Case struct {
	Path     string            // relative to the vector folder, with '/'
	Expect   string            // the outcome an implementation must reach
	Header   map[string]string // every other header line but the comments
	Comments []string
	Data     []byte
}

// Parse reads one case file; path only names it in errors.
func Parse(path string, raw []byte) (Case, error) {
	c := Case{Path: path, Header: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	inHeader := true
	var body strings.Builder
	for sc.Scan() {
		line := sc.Text()
		if !inHeader {
			body.WriteString(strings.TrimSpace(line))
			continue
		}
		if line == "" {
			inHeader = false
			continue
		}
		name, value, ok := strings.Cut(line, ": ")
		if !ok || name == "" || strings.ToLower(name) != name {
			return c, fmt.Errorf("%s: bad header line %q", path, line)
		}
		switch name {
		case "comment":
			c.Comments = append(c.Comments, value)
		case "expect":
			if c.Expect != "" {
				return c, fmt.Errorf("%s: expect twice", path)
			}
			c.Expect = value
		default:
			if _, dup := c.Header[name]; dup {
				return c, fmt.Errorf("%s: header %q twice", path, name)
			}
			c.Header[name] = value
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	if inHeader || c.Expect == "" {
		return c, fmt.Errorf("%s: no expect line, or no empty line after the header", path)
	}
	var err error
	if c.Data, err = hex.DecodeString(body.String()); err != nil {
		return c, fmt.Errorf("%s: body: %v", path, err)
	}
	return c, nil
}

// Hex returns a header value that holds bytes. A missing or bad one fails
// the test: the case file is wrong, not the code under test.
func (c *Case) Hex(t testing.TB, name string) []byte {
	t.Helper()
	v, ok := c.Header[name]
	if !ok {
		t.Fatalf("%s: no %q header", c.Path, name)
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		t.Fatalf("%s: header %q: %v", c.Path, name, err)
	}
	return b
}

// Uint returns a header value that holds a decimal number.
func (c *Case) Uint(t testing.TB, name string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(c.Header[name], 10, 64)
	if err != nil {
		t.Fatalf("%s: header %q: %v", c.Path, name, err)
	}
	return n
}

// Has reports whether the case has a header.
func (c *Case) Has(name string) bool { _, ok := c.Header[name]; return ok }

// Load reads every case in the subfolders of dir, sorted by path, and
// checks each against dir/SHA256SUMS: a case edited, added or removed
// without running the generator fails the test, whatever it holds. Files at
// the top of dir (the generator, README.md, SHA256SUMS) are not cases.
func Load(t testing.TB, dir string) []Case {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		sum, path, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("%s/SHA256SUMS: bad line %q", dir, line)
		}
		want[path] = sum
	}
	var cases []Case
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if !strings.Contains(rel, "/") || strings.HasPrefix(rel, "__pycache__/") {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		if want[rel] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s/%s: not the file its generator wrote (SHA256SUMS): regenerate, do not edit", dir, rel)
		}
		delete(want, rel)
		c, err := Parse(rel, raw)
		if err != nil {
			return err
		}
		cases = append(cases, c)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for p := range want {
		t.Errorf("%s/%s: listed in SHA256SUMS but missing", dir, p)
	}
	if len(cases) == 0 {
		t.Fatalf("%s: no cases", dir)
	}
	sort.Slice(cases, func(i, j int) bool { return cases[i].Path < cases[j].Path })
	return cases
}

// Group returns the first path element of a case: its folder.
func (c *Case) Group() string { g, _, _ := strings.Cut(c.Path, "/"); return g }
