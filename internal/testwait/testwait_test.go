package testwait

import "testing"

func TestWithinReturnsTheValue(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if got := Within(t, "the value", ch); got != 7 {
		t.Fatalf("Within = %d, want 7", got)
	}
}
