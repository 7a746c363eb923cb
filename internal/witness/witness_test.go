package witness

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/merkle/testonly"
	"golang.org/x/mod/sumdb/note"
)

const origin = "example.org/coffer-test"

// testLog is a log the tests control, honest or not: a key and a tree.
type testLog struct {
	t      *testing.T
	signer note.Signer
	vkey   string
	tree   *testonly.Tree
}

func newTestLog(t *testing.T, name string) *testLog {
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return &testLog{t: t, signer: s, vkey: vkey, tree: testonly.New(rfc6962.DefaultHasher)}
}

func (l *testLog) grow(n int, tag string) {
	for i := range n {
		l.tree.AppendData([]byte(fmt.Sprintf("%s entry %d", tag, l.tree.Size()+uint64(i))))
	}
}

// checkpoint signs (origin, size, root) with the log's key.
func (l *testLog) checkpointWith(size uint64, root []byte) []byte {
	l.t.Helper()
	b, err := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: origin, Size: size, Hash: root}.Marshal())}, l.signer)
	if err != nil {
		l.t.Fatal(err)
	}
	return b
}

func (l *testLog) checkpoint() []byte { return l.checkpointWith(l.tree.Size(), l.tree.Hash()) }

// request is an honest add-checkpoint from old to the current tree.
func (l *testLog) request(old uint64) []byte {
	l.t.Helper()
	var pf [][]byte
	if old > 0 && old < l.tree.Size() {
		var err error
		if pf, err = l.tree.ConsistencyProof(old, l.tree.Size()); err != nil {
			l.t.Fatal(err)
		}
	}
	return (&Request{OldSize: old, Proof: pf, Checkpoint: l.checkpoint()}).Marshal()
}

type testWitness struct {
	*Witness
	vkey string // cosignature/v1 verifier key
	skey string
	dir  string
}

func newTestWitness(t *testing.T, logVkey string) *testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "witness.example.org")
	if err != nil {
		t.Fatal(err)
	}
	cosigV, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w, err := New(skey, dir, map[string]string{origin: logVkey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return &testWitness{Witness: w, vkey: cosigV, skey: skey, dir: dir}
}

// restart closes the witness and opens a new one on the same state.
func (w *testWitness) restart(t *testing.T, logVkey string) {
	t.Helper()
	w.Close()
	nw, err := New(w.skey, w.dir, map[string]string{origin: logVkey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nw.Close)
	w.Witness = nw
}

// mustCosign adds a checkpoint and checks the cosignature verifies on it.
func (w *testWitness) mustCosign(t *testing.T, l *testLog, body []byte) {
	t.Helper()
	sig, err := w.AddCheckpoint(body)
	if err != nil {
		t.Fatalf("an honest checkpoint was refused: %v", err)
	}
	req, _ := ParseRequest(body)
	v, err := fnote.NewVerifierForCosignatureV1(w.vkey)
	if err != nil {
		t.Fatal(err)
	}
	logV, _ := note.NewVerifier(l.vkey)
	full := append(append([]byte(nil), req.Checkpoint...), sig...)
	_, _, n, err := log.ParseCheckpoint(full, origin, logV, v)
	if err != nil || len(n.Sigs) != 2 {
		t.Fatalf("the cosignature does not verify: %v (%d signatures)", err, len(n.Sigs))
	}
}

func wantRefusal(t *testing.T, err error, status int, what string) *Error {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("%s: cosigned (err %v), want a %d refusal", what, err, status)
	}
	if e.Status != status {
		t.Fatalf("%s: refused with %d (%v), want %d", what, e.Status, e, status)
	}
	return e
}

func TestHonestLogIsCosignedAsItGrows(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	w.mustCosign(t, l, l.request(0)) // the empty tree
	l.grow(3, "a")
	w.mustCosign(t, l, l.request(0))
	w.mustCosign(t, l, l.request(3)) // the same checkpoint again
	l.grow(14, "b")
	w.mustCosign(t, l, l.request(3))
	l.grow(1, "c")
	w.mustCosign(t, l, l.request(17))
}

func TestForkAtOneSizeIsRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(5, "a")
	w.mustCosign(t, l, l.request(0))
	fork := newTestLog(t, origin)
	fork.signer = l.signer
	fork.grow(5, "fork")
	_, err := w.AddCheckpoint(fork.request(5))
	wantRefusal(t, err, http.StatusConflict, "a second root for size 5")

	// The witness restarted still knows the first root: the fork, retrying
	// with whatever size the witness says it knows, is still refused.
	w.restart(t, l.vkey)
	_, err = w.AddCheckpoint(fork.request(5))
	wantRefusal(t, err, http.StatusConflict, "the fork after a restart")
	if e := (*Error)(nil); errors.As(err, &e) && e.HasSize {
		_, err = w.AddCheckpoint(fork.request(e.Size))
		wantRefusal(t, err, http.StatusConflict, fmt.Sprintf("the fork retried from the size the witness knows (%d)", e.Size))
	}
	fork.grow(2, "fork")
	_, err = w.AddCheckpoint(fork.request(5))
	wantRefusal(t, err, http.StatusUnprocessableEntity, "the fork grown, after a restart")
	l.grow(2, "a")
	w.mustCosign(t, l, l.request(5))
}

func TestForkThatGrowsIsRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(6, "a")
	w.mustCosign(t, l, l.request(0))
	// Another tree whose first 6 entries differ, grown to 9: its honest
	// proof from its own size 6 does not lead from the witness's root.
	fork := newTestLog(t, origin)
	fork.signer = l.signer
	fork.grow(9, "fork")
	_, err := w.AddCheckpoint(fork.request(6))
	wantRefusal(t, err, http.StatusUnprocessableEntity, "a fork grown past the cosigned size")
}

func TestRollbackIsRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(8, "a")
	w.mustCosign(t, l, l.request(0))
	old := l.checkpointWith(4, l.tree.HashAt(4))
	// Saying the truth about the old size: 4 < 8 is refused as a bad request.
	_, err := w.AddCheckpoint((&Request{OldSize: 8, Checkpoint: old}).Marshal())
	wantRefusal(t, err, http.StatusBadRequest, "a smaller tree (old 8)")
	// Lying that the witness saw 4: told the size it knows.
	_, err = w.AddCheckpoint((&Request{OldSize: 4, Checkpoint: old}).Marshal())
	if e := wantRefusal(t, err, http.StatusConflict, "a smaller tree (old 4)"); !e.HasSize || e.Size != 8 {
		t.Fatalf("told size %d (%v), want 8", e.Size, e.HasSize)
	}
	w.restart(t, l.vkey)
	_, err = w.AddCheckpoint((&Request{OldSize: 0, Checkpoint: l.checkpointWith(0, rfc6962.DefaultHasher.EmptyRoot())}).Marshal())
	wantRefusal(t, err, http.StatusConflict, "the empty tree after a restart")
}

func TestWrongConsistencyProofIsRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(5, "a")
	w.mustCosign(t, l, l.request(0))
	l.grow(6, "b")
	good, _ := l.tree.ConsistencyProof(5, 11)
	for name, pf := range map[string][][]byte{
		"empty":     nil,
		"truncated": good[:len(good)-1],
		"flipped":   flipLast(good),
		"extra":     append(append([][]byte(nil), good...), make([]byte, 32)),
		"to 10":     mustProof(t, l.tree, 5, 10),
	} {
		_, err := w.AddCheckpoint((&Request{OldSize: 5, Proof: pf, Checkpoint: l.checkpoint()}).Marshal())
		wantRefusal(t, err, http.StatusUnprocessableEntity, "proof "+name)
	}
	// A proof where none belongs: same size, same root.
	l2 := l.checkpointWith(5, l.tree.HashAt(5))
	_, err := w.AddCheckpoint((&Request{OldSize: 5, Proof: good[:1], Checkpoint: l2}).Marshal())
	wantRefusal(t, err, http.StatusUnprocessableEntity, "a proof between equal sizes")
	w.mustCosign(t, l, l.request(5))
}

func flipLast(p [][]byte) [][]byte {
	out := make([][]byte, len(p))
	for i := range p {
		out[i] = append([]byte(nil), p[i]...)
	}
	out[len(out)-1][0] ^= 1
	return out
}

func mustProof(t *testing.T, tr *testonly.Tree, a, b uint64) [][]byte {
	p, err := tr.ConsistencyProof(a, b)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLieAboutOldSizeGetsTheKnownSize(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(4, "a")
	w.mustCosign(t, l, l.request(0))
	l.grow(4, "b")
	for _, old := range []uint64{0, 2, 7} {
		_, err := w.AddCheckpoint(l.request(old))
		if e := wantRefusal(t, err, http.StatusConflict, fmt.Sprintf("old %d", old)); !e.HasSize || e.Size != 4 {
			t.Fatalf("old %d: told %d, want 4", old, e.Size)
		}
	}
	_, err := w.AddCheckpoint((&Request{OldSize: 9, Checkpoint: l.checkpoint()}).Marshal())
	wantRefusal(t, err, http.StatusBadRequest, "old size above the checkpoint")
	w.mustCosign(t, l, l.request(4))
}

func TestOtherKeyAndUnknownOriginAreRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	impostor := newTestLog(t, origin) // same origin, another key
	impostor.grow(3, "a")
	_, err := w.AddCheckpoint(impostor.request(0))
	wantRefusal(t, err, http.StatusForbidden, "a checkpoint signed by another key")

	stranger := newTestLog(t, "example.org/other")
	b, _ := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: "example.org/other", Size: 1, Hash: make([]byte, 32)}.Marshal())}, stranger.signer)
	_, err = w.AddCheckpoint((&Request{Checkpoint: b}).Marshal())
	wantRefusal(t, err, http.StatusNotFound, "an unknown origin")

	// Nothing was stored by the refusals: the honest log starts from 0.
	l.grow(2, "a")
	w.mustCosign(t, l, l.request(0))
}

func TestEmptyTreeMustHaveTheEmptyRoot(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	_, err := w.AddCheckpoint((&Request{Checkpoint: l.checkpointWith(0, make([]byte, 32))}).Marshal())
	wantRefusal(t, err, http.StatusBadRequest, "size 0 with another root")
}

func TestStateThatDoesNotReadBackIsNotAFreshStart(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(3, "a")
	w.mustCosign(t, l, l.request(0))
	files, _ := filepath.Glob(filepath.Join(w.dir, "log-*.json"))
	if len(files) != 1 {
		t.Fatalf("%d state files", len(files))
	}
	os.WriteFile(files[0], []byte("{"), 0o600)
	_, err := w.AddCheckpoint(l.request(0))
	wantRefusal(t, err, http.StatusInternalServerError, "a torn state file")
}

func TestNoCosignatureWithoutSavedState(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	l.grow(3, "a")
	// The state folder vanishes (a full or unmounted disk): nothing to
	// load, and nothing can be saved.
	if err := os.RemoveAll(w.dir); err != nil {
		t.Fatal(err)
	}
	sig, err := w.AddCheckpoint(l.request(0))
	wantRefusal(t, err, http.StatusInternalServerError, "a checkpoint whose state cannot be saved")
	if sig != nil {
		t.Fatal("a cosignature left with the state unsaved")
	}
}

func TestSecondWitnessOnOneStateFolderIsRefused(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	if _, err := New(w.skey, w.dir, map[string]string{origin: l.vkey}); err == nil {
		t.Fatal("a second witness opened the same state folder")
	}
}

func TestHTTP(t *testing.T) {
	l := newTestLog(t, origin)
	w := newTestWitness(t, l.vkey)
	srv := httptest.NewServer(w)
	defer srv.Close()
	post := func(body string) (*http.Response, string) {
		resp, err := http.Post(srv.URL+"/add-checkpoint", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	l.grow(2, "a")
	resp, body := post(string(l.request(0)))
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "— witness.example.org ") || strings.Count(body, "\n") != 1 {
		t.Fatalf("cosigning: %d %q", resp.StatusCode, body)
	}
	l.grow(2, "b")
	resp, body = post(string(l.request(0)))
	if resp.StatusCode != http.StatusConflict || resp.Header.Get("Content-Type") != "text/x.tlog.size" || body != "2\n" {
		t.Fatalf("wrong old size: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	resp, _ = post("old 0\n\n" + strings.Repeat("x", MaxRequestSize))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("an oversized body: %d", resp.StatusCode)
	}
	resp, body = post("garbage")
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "malformed") {
		t.Fatalf("garbage: %d %q", resp.StatusCode, body)
	}
	r, _ := http.Get(srv.URL + "/add-checkpoint")
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET: %d", r.StatusCode)
	}
	r.Body.Close()
}
