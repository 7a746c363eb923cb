package store

import (
	"context"
	"fmt"
	"testing"
)

func TestSmoke(t *testing.T) {
	dev := NewMemDevice(1 << 14)
	anc, _ := NewMemAnchor([32]byte{1})
	opts := Options{SealingKey: [32]byte{2}, maxEntries: 4}
	if _, err := Open(dev, anc, opts); err != ErrNotFormatted {
		t.Fatal(err)
	}
	if err := Format(dev, anc, opts); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		s.Put([]byte(fmt.Sprint("u", i)), []byte(fmt.Sprint("rec", i)))
		if i%7 == 0 {
			if _, err := s.Commit(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
	seq, err := s.Commit(context.Background())
	t.Log(seq, err, s.Stats())
	for i := 0; i < 200; i += 3 {
		s.Delete([]byte(fmt.Sprint("u", i)))
	}
	seq, err = s.Commit(context.Background())
	t.Log(seq, err, s.Stats())
	s.Close()
	s, err = Open(dev, anc, opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		r, ok, err := s.Get([]byte(fmt.Sprint("u", i)))
		if err != nil || ok != (i%3 != 0) || (ok && string(r) != fmt.Sprint("rec", i)) {
			t.Fatal(i, string(r), ok, err)
		}
	}
	t.Log(s.Stats())
}
