package opaque

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
)

// hexBytes decodes a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return err
	}
	*h = d
	return nil
}

type rfcVector struct {
	Name          string              `json:"name"`
	Fake          bool                `json:"fake"`
	Context       hexBytes            `json:"context"`
	Inputs        map[string]hexBytes `json:"inputs"`
	Intermediates map[string]hexBytes `json:"intermediates"`
	Outputs       map[string]hexBytes `json:"outputs"`
}

// loadRFCVectors reads testdata and insists on the three vectors the tests
// are written for, so a truncated file cannot make them pass vacuously.
func loadRFCVectors(t testing.TB) (real []rfcVector, fake []rfcVector) {
	t.Helper()
	raw, err := os.ReadFile("testdata/rfc9807_ristretto255_sha512.json")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Source  string      `json:"source"`
		Vectors []rfcVector `json:"vectors"`
	}
	if err := json.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	for _, v := range file.Vectors {
		if v.Fake {
			fake = append(fake, v)
		} else {
			real = append(real, v)
		}
	}
	if len(real) != 2 || len(fake) != 1 {
		t.Fatalf("want 2 real and 1 fake vector, got %d and %d", len(real), len(fake))
	}
	return real, fake
}

// field returns a named value and fails the test if it is missing.
func field(t testing.TB, m map[string]hexBytes, name string) []byte {
	t.Helper()
	v, ok := m[name]
	if !ok {
		t.Fatalf("vector has no %q", name)
	}
	return v
}

func array32(t testing.TB, b []byte) (a [32]byte) {
	t.Helper()
	if len(b) != 32 {
		t.Fatalf("want 32 bytes, got %d", len(b))
	}
	copy(a[:], b)
	return a
}

func equalHex(t testing.TB, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}

// scriptedReader hands out fixed chunks in order and fails past the end, so
// a test both replays the RFC's "random" values and proves the code asks
// for exactly those, in that order.
type scriptedReader struct {
	chunks [][]byte
}

func script(chunks ...[]byte) *scriptedReader {
	return &scriptedReader{chunks: chunks}
}

func (r *scriptedReader) Read(p []byte) (int, error) {
	if len(r.chunks) == 0 {
		return 0, errors.New("scripted reader exhausted")
	}
	c := r.chunks[0]
	if len(p) != len(c) {
		return 0, errors.New("scripted reader: read of unexpected size")
	}
	copy(p, c)
	r.chunks = r.chunks[1:]
	return len(c), nil
}

func (r *scriptedReader) done(t testing.TB) {
	t.Helper()
	if len(r.chunks) != 0 {
		t.Errorf("%d scripted random values left unread", len(r.chunks))
	}
}

// failingReader always errors, to test the randomness error paths.
type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, io.ErrUnexpectedEOF }

func wantErr(t testing.TB, err, target error, what string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want %v", what, target)
		return
	}
	if !errors.Is(err, target) {
		t.Errorf("%s: error %q, want %v", what, err, target)
	}
}

// mustNotContain checks that an error message does not leak a secret.
func mustNotContain(t testing.TB, err error, secret []byte) {
	t.Helper()
	if err == nil || len(secret) == 0 {
		return
	}
	msg := err.Error()
	if strings.Contains(msg, hex.EncodeToString(secret)) || strings.Contains(msg, string(secret)) {
		t.Errorf("error %q leaks a secret", msg)
	}
}
