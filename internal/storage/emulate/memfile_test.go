package emulate

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// A MemFile reads and writes as a host file does: reads past the end are
// short with io.EOF, writes past the end grow it with zeros, and a copy
// taken with Bytes does not change with the file.
func TestMemFileBehavesAsAHostFile(t *testing.T) {
	f := NewMemFile([]byte("abc"))
	p := make([]byte, 5)
	if n, err := f.ReadAt(p, 1); n != 2 || !errors.Is(err, io.EOF) || string(p[:n]) != "bc" {
		t.Fatalf("short read: %d %v %q", n, err, p[:n])
	}
	if n, err := f.ReadAt(p, 3); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("read at the end: %d %v", n, err)
	}
	old := f.Bytes()
	if n, err := f.WriteAt([]byte("z"), 5); n != 1 || err != nil {
		t.Fatalf("write past the end: %d %v", n, err)
	}
	if got := f.Bytes(); !bytes.Equal(got, []byte("abc\x00\x00z")) {
		t.Fatalf("after the write: %q", got)
	}
	if size, err := f.Size(); size != 6 || err != nil {
		t.Fatalf("size %d %v", size, err)
	}
	if string(old) != "abc" {
		t.Fatalf("the copy changed with the file: %q", old)
	}
	f.SetBytes(old)
	old[0] = 'x'
	if got := f.Bytes(); string(got) != "abc" {
		t.Fatalf("after SetBytes: %q", got)
	}
	if _, err := f.WriteAt([]byte("y"), -1); err == nil {
		t.Fatal("a write at a negative offset succeeded")
	}
	if _, err := f.ReadAt(p, -1); err == nil {
		t.Fatal("a read at a negative offset succeeded")
	}
}
