package client

import (
	"strings"

	"rsc.io/qr"
)

// qrQuiet is the blank border a QR code needs around it, in modules.
const qrQuiet = 2

// ANSI colours around each QR line: black on white whatever the terminal's
// own colours, so that dark-background terminals show a scannable code.
const (
	qrLineStart = "\x1b[30;107m"
	qrLineEnd   = "\x1b[0m"
)

// KeyQR renders the 64-digit key (KeyText, upper case, which QR encodes in
// its compact alphanumeric mode) as a QR code for a terminal: two modules
// per character cell using Unicode half blocks. It is as secret as K.
func (k *BackupKey) KeyQR() (string, error) {
	return terminalQR(k.KeyText())
}

func terminalQR(text string) (string, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", err
	}
	return renderQR(code.Size, code.Black), nil
}

// renderQR draws a size×size module grid, black(x, y) telling the dark
// modules, with a quiet border.
func renderQR(size int, black func(x, y int) bool) string {
	dark := func(x, y int) bool {
		return x >= 0 && y >= 0 && x < size && y < size && black(x, y)
	}
	var sb strings.Builder
	for y := -qrQuiet; y < size+qrQuiet; y += 2 {
		sb.WriteString(qrLineStart)
		for x := -qrQuiet; x < size+qrQuiet; x++ {
			top, bottom := dark(x, y), dark(x, y+1) && y+1 < size+qrQuiet
			switch {
			case top && bottom:
				sb.WriteString("█")
			case top:
				sb.WriteString("▀")
			case bottom:
				sb.WriteString("▄")
			default:
				sb.WriteByte(' ')
			}
		}
		sb.WriteString(qrLineEnd)
		sb.WriteByte('\n')
	}
	return sb.String()
}
