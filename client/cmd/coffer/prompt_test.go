package main

import (
	"bytes"
	"testing"
)

// The refused set knows a password in any Unicode normalization (OPAQUE
// gets it in NFC, so "é" typed precomposed or decomposed is one password),
// keeps no password and no unkeyed hash, and forgets everything when wiped.
func TestRefusedSet(t *testing.T) {
	r, err := newRefusedSet()
	if err != nil {
		t.Fatal(err)
	}
	pw := []byte("caf\u00e9")
	r.add(pw)
	if !r.has([]byte("cafe\u0301")) || !r.has(pw) || r.has([]byte("cafe")) || r.has(nil) {
		t.Fatal("the refused set does not match the NFC password exactly")
	}
	other, _ := newRefusedSet()
	if bytes.Equal(r.sum(pw), other.sum(pw)) {
		t.Fatal("two runs hash a password alike: the hash is not keyed per run")
	}
	for _, h := range r.hashes {
		if bytes.Contains(h, pw) {
			t.Fatal("the set keeps the password")
		}
	}
	key, hashes := r.key, r.hashes
	r.wipe()
	if !bytes.Equal(key, make([]byte, len(key))) || !bytes.Equal(hashes[0], make([]byte, len(hashes[0]))) || r.has(pw) {
		t.Fatal("wipe left the key or a hash")
	}
}
