// Package testwait bounds what a test waits for, so that a hang fails that
// test with a message instead of stalling the whole run until go test's
// timeout. The bound is far beyond what the code needs: it is not a timing
// assertion. For tests only.
package testwait

import (
	"testing"
	"time"
)

// Bound is how long Within waits.
const Bound = 10 * time.Second

// Within returns the next value from ch, or fails t, saying what it waited
// for, when none comes within Bound.
func Within[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Bound):
		t.Fatalf("%s: still waiting after %v", what, Bound)
	}
	panic("unreachable")
}
