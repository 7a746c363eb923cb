package opaque

import (
	"crypto/hmac"
	"crypto/sha512"
)

// The suite's KDF is HKDF-SHA512, its MAC HMAC-SHA512 and its hash SHA-512.

// extract is HKDF-Extract (RFC 5869) with an empty salt, the only salt RFC
// 9807 uses; an empty HMAC key equals the RFC's string of HashLen zeros.
func extract(ikm []byte) []byte {
	return mac(nil, ikm)
}

// expand is HKDF-Expand (RFC 5869), written out over crypto/hmac so that it
// has no error path: every length asked for here is a constant far below
// the 255*64-byte limit.
func expand(prk []byte, info []byte, length int) []byte {
	out := make([]byte, 0, length+HashSize)
	h := hmac.New(sha512.New, prk)
	var block []byte
	for counter := byte(1); len(out) < length; counter++ {
		h.Reset()
		h.Write(block)
		h.Write(info)
		h.Write([]byte{counter})
		block = h.Sum(block[:0])
		out = append(out, block...)
	}
	// The last block may overshoot; do not leave key bytes behind the
	// returned slice's end.
	wipe(block, out[length:])
	return out[:length:length]
}

// expandLabel is RFC 9807's Expand-Label: the info is the TLS 1.3 style
// CustomLabel {uint16 length, opaque "OPAQUE-"+label<8..255>, opaque
// context<0..255>}. context is empty or a 64-byte hash here.
func expandLabel(secret []byte, label string, context []byte, length int) []byte {
	fullLabel := labelExpandPrefix + label
	info := make([]byte, 0, 2+1+len(fullLabel)+1+len(context))
	info = append(info, byte(length>>8), byte(length))
	info = append(info, byte(len(fullLabel)))
	info = append(info, fullLabel...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	return expand(secret, info, length)
}

// deriveSecret is RFC 9807's Derive-Secret: Expand-Label to Nx bytes.
func deriveSecret(secret []byte, label string, transcriptHash []byte) []byte {
	return expandLabel(secret, label, transcriptHash, HashSize)
}

// mac is HMAC-SHA512.
func mac(key []byte, parts ...[]byte) []byte {
	h := hmac.New(sha512.New, key)
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum(nil)
}

// hash is SHA-512.
func hash(msg []byte) []byte {
	sum := sha512.Sum512(msg)
	return sum[:]
}

// concat joins byte strings into a fresh slice.
func concat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// wipe overwrites secret bytes. Best effort: the Go runtime may have copied
// the data elsewhere (stack growth, GC), but the slices we own stop holding
// it.
func wipe(bufs ...[]byte) {
	for _, b := range bufs {
		clear(b)
	}
}
