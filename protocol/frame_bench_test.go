package protocol

import (
	"bytes"
	"io"
	"testing"
)

// BenchmarkFrameReader reads 1 MiB streams through a FrameReader: maximal
// frames as a sender writes them, and the costliest stream FRAMING.md
// ("Cost under attack") knows of: a forged header every 16 bytes, each
// verifying and declaring a maximal payload, so that each is checksummed
// over 16 KiB before it is rejected. The ratio of their MB/s is what an
// attack costs per byte; it is bounded (one maximal checksum per forged
// header, never a wait or an allocation beyond one frame), which is why it
// is measured here and not asserted.
func BenchmarkFrameReader(b *testing.B) {
	const streamLen = 1 << 20
	var benign []byte
	payload := bytes.Repeat([]byte{0xA5}, MaxPayload)
	for len(benign) < streamLen {
		benign = frameAppendRaw(benign, FrameVersion, 0, 1, MaxPayload, payload)
	}
	var forged []byte
	for len(forged) < streamLen {
		forged = append(forged, frameAppendRaw(nil, FrameVersion, 0, 1, MaxPayload, nil)[:frameHeaderLen]...)
	}
	falseMagics := bytes.Repeat([]byte("CFCFxCFCF"), streamLen/9)
	for _, c := range []struct {
		name   string
		stream []byte
	}{{"benign", benign}, {"forged-headers", forged}, {"false-magics", falseMagics}} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(c.stream)))
			for b.Loop() {
				r := NewFrameReader(bytes.NewReader(c.stream))
				for {
					_, err := r.Next()
					if err == io.EOF || err == io.ErrUnexpectedEOF {
						break
					}
				}
			}
		})
	}
}
