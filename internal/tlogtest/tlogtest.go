// Package tlogtest writes a real release log for tests: a directory in the
// C2SP tlog-tiles layout written by tessera's POSIX driver, checkpoints
// signed by a release key and cosigned over HTTP (C2SP tlog-witness
// add-checkpoint) by witnesses that run in the test. Readers under test
// (cofferd's /v1/log/, client/logcheck's HTTPSource, coffer-monitor) read
// exactly what a deployed log would serve. Only tests import it.
package tlogtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// Log is a tessera POSIX log in a temporary directory.
type Log struct {
	Dir    string
	Policy *releaselog.Policy // the release key and every witness, all of which must cosign

	t        testing.TB
	appender *tessera.Appender
	awaiter  *tessera.PublicationAwaiter
	ctx      context.Context
}

// New starts a log named origin with n witnesses (n >= 1), each an HTTP
// server of the test; the log publishes a checkpoint only once all of them
// have cosigned it.
func New(t testing.TB, origin string, n int) *Log {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, origin)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	p := &releaselog.Policy{Origin: origin, LogKey: vkey, Quorum: n}
	var ws []tessera.Witness
	for i := range n {
		w := newWitness(t, fmt.Sprintf("witness-%d.test", i+1), logV)
		p.Witnesses = append(p.Witnesses, w.vkey)
		u, _ := url.Parse(w.srv.URL)
		tw, err := tessera.NewWitness(w.vkey, u)
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, tw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	opts := tessera.NewAppendOptions().
		WithCheckpointSigner(signer).
		WithWitnesses(allOf(tessera.NewWitnessGroup, ws), &tessera.WitnessOptions{Timeout: 30 * time.Second}).
		WithBatching(512, 10*time.Millisecond).
		WithCheckpointInterval(100 * time.Millisecond)
	app, shutdown, reader, err := tessera.NewAppender(ctx, driver, opts)
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{Dir: dir, Policy: p, t: t, appender: app, ctx: ctx,
		awaiter: tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)}
	t.Cleanup(func() {
		sctx, c := context.WithTimeout(context.Background(), 30*time.Second)
		defer c()
		shutdown(sctx)
		cancel()
	})
	return l
}

// allOf is the witness group of all of ws. tessera's group takes its
// components as an unexported interface type, which only inference can
// name: T is that type.
func allOf[T any](group func(int, ...T) tessera.WitnessGroup, ws []tessera.Witness) tessera.WitnessGroup {
	cs := make([]T, len(ws))
	for i, w := range ws {
		cs[i] = any(w).(T)
	}
	return group(len(cs), cs...)
}

// Add appends leaf data and returns once a published checkpoint covers
// all of it.
func (l *Log) Add(data ...[]byte) {
	l.t.Helper()
	futures := make([]tessera.IndexFuture, len(data))
	for i, d := range data {
		futures[i] = l.appender.Add(l.ctx, tessera.NewEntry(d))
	}
	for _, f := range futures {
		if _, _, err := l.awaiter.Await(l.ctx, f); err != nil {
			l.t.Fatal(err)
		}
	}
}

// AddEntries appends entries (Marshal'd) as Add does.
func (l *Log) AddEntries(es ...*releaselog.Entry) {
	l.t.Helper()
	data := make([][]byte, len(es))
	for i, e := range es {
		b, err := e.Marshal()
		if err != nil {
			l.t.Fatal(err)
		}
		data[i] = b
	}
	l.Add(data...)
}

// witness is a C2SP tlog-witness server that cosigns every checkpoint the
// release key signed. It keeps no state: the readers under test are what
// checks consistency here.
type witness struct {
	vkey string
	srv  *httptest.Server
}

func newWitness(t testing.TB, name string, logV note.Verifier) *witness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	cosigner, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cosigKey, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/add-checkpoint" {
			http.NotFound(w, r)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// "old N", consistency proof lines, a blank line, the checkpoint.
		_, cp, ok := bytes.Cut(body, []byte("\n\n"))
		if !ok {
			http.Error(w, "no checkpoint", http.StatusBadRequest)
			return
		}
		n, err := note.Open(cp, note.VerifierList(logV))
		if err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		signed, err := note.Sign(&note.Note{Text: n.Text}, cosigner)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(signed[len(n.Text)+1:]) // the signature line alone
	}))
	t.Cleanup(srv.Close)
	return &witness{vkey: cosigKey, srv: srv}
}
