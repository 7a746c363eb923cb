package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/rfc6962"
	"golang.org/x/mod/sumdb/note"
)

// TestKeygenAndServe runs the command as an operator would: a key, then a
// server that cosigns a log's checkpoint with that key.
func TestKeygenAndServe(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "w.key")
	var out strings.Builder
	if err := run(context.Background(), []string{"keygen", "-name", "witness.test", "-o", keyFile}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	cosigKey := strings.TrimSpace(strings.TrimPrefix(out.String(), "witness key (cosignature/v1): "))
	wv, err := fnote.NewVerifierForCosignatureV1(cosigKey)
	if err != nil {
		t.Fatalf("keygen printed %q: %v", out.String(), err)
	}
	if err := run(context.Background(), []string{"keygen", "-name", "witness.test", "-o", keyFile}, io.Discard, io.Discard); err == nil {
		t.Fatal("keygen overwrote a key")
	}

	skey, vkey, _ := note.GenerateKey(rand.Reader, "log.test")
	logSigner, _ := note.NewSigner(skey)
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-key", keyFile, "-state", filepath.Join(dir, "state"), "-listen", "127.0.0.1:0", "-log", "log.test=" + vkey}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, pr)
	url := line[strings.Index(line, "http://"):]
	url = strings.TrimSpace(url)

	cp, _ := note.Sign(&note.Note{Text: string(log.Checkpoint{Origin: "log.test", Size: 0, Hash: rfc6962.DefaultHasher.EmptyRoot()}.Marshal())}, logSigner)
	resp, err := http.Post(url, "text/plain", strings.NewReader("old 0\n\n"+string(cp)))
	if err != nil {
		t.Fatal(err)
	}
	sig, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	logV, _ := note.NewVerifier(vkey)
	if _, _, n, err := log.ParseCheckpoint(append(cp, sig...), "log.test", logV, wv); resp.StatusCode != 200 || err != nil || len(n.Sigs) != 2 {
		t.Fatalf("served cosignature %d %q does not verify: %v", resp.StatusCode, sig, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve did not stop cleanly: %v", err)
	}
	if err := run(context.Background(), []string{"serve", "-key", keyFile, "-state", filepath.Join(dir, "s2"), "-log", "nokey"}, io.Discard, io.Discard); err == nil {
		t.Fatal("a -log without a key accepted")
	}
}
