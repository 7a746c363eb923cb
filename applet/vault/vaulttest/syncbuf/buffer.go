// Package syncbuf is a byte buffer that several goroutines may write while a
// test reads it: a server's log, a child process's stdout and stderr.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer collects output written from several goroutines (a server's log,
// a child process's stdout and stderr) for a test to read while they run.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Bytes returns a copy of everything written so far.
func (s *Buffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Clone(s.b.Bytes())
}
