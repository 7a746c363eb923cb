package client

import (
	"strings"
	"testing"

	"rsc.io/qr"
)

// The terminal rendering draws exactly the code's modules, with its quiet
// border, two rows per line.
func TestKeyQRRendersTheCode(t *testing.T) {
	k := randomKey(t)
	out, err := k.KeyQR()
	if err != nil {
		t.Fatal(err)
	}
	code, err := qr.Encode(k.KeyText(), qr.M)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	width := code.Size + 2*qrQuiet
	if want := (width + 1) / 2; len(lines) != want {
		t.Fatalf("%d lines, want %d", len(lines), want)
	}
	for ly, line := range lines {
		if !strings.HasPrefix(line, qrLineStart) || !strings.HasSuffix(line, qrLineEnd) {
			t.Fatalf("line %d lacks its colours", ly)
		}
		cells := []rune(strings.TrimSuffix(strings.TrimPrefix(line, qrLineStart), qrLineEnd))
		if len(cells) != width {
			t.Fatalf("line %d has %d cells, want %d", ly, len(cells), width)
		}
		for cx, c := range cells {
			x, y := cx-qrQuiet, 2*ly-qrQuiet
			top, bottom := c == '█' || c == '▀', c == '█' || c == '▄'
			if top != code.Black(x, y) || bottom != code.Black(x, y+1) {
				t.Fatalf("module (%d,%d) or the one below drawn wrong", x, y)
			}
		}
	}
}
