package client

import "strings"

// bech32 encoding (BIP 173) as age uses it for its keys: age's own encoder is
// internal, and it exposes none for "AGE-SECRET-KEY-". Only encoding is
// needed here; what we encode is always parsed back by age itself
// (age.ParseX25519Identity, age.ParseX25519Recipient), which checks it.

const bech32Charset = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"

func bech32Polymod(values []byte) uint32 {
	gen := [5]uint32{0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3}
	chk := uint32(1)
	for _, v := range values {
		top := chk >> 25
		chk = (chk&0x1ffffff)<<5 ^ uint32(v)
		for i := range 5 {
			if top>>i&1 == 1 {
				chk ^= gen[i]
			}
		}
	}
	return chk
}

// bech32Encode encodes data under the human-readable part hrp. An upper-case
// hrp gives an upper-case string, as age writes its secret keys.
func bech32Encode(hrp string, data []byte) string {
	upper := strings.ToUpper(hrp) == hrp && strings.ToLower(hrp) != hrp
	hrp = strings.ToLower(hrp)

	// 8-bit groups to 5-bit groups, zero-padded.
	var values []byte
	acc, bits := uint32(0), uint(0)
	for _, b := range data {
		acc = acc<<8 | uint32(b)
		bits += 8
		for bits >= 5 {
			bits -= 5
			values = append(values, byte(acc>>bits)&31)
		}
	}
	if bits > 0 {
		values = append(values, byte(acc<<(5-bits))&31)
	}

	expanded := make([]byte, 0, 2*len(hrp)+1+len(values)+6)
	for i := 0; i < len(hrp); i++ {
		expanded = append(expanded, hrp[i]>>5)
	}
	expanded = append(expanded, 0)
	for i := 0; i < len(hrp); i++ {
		expanded = append(expanded, hrp[i]&31)
	}
	expanded = append(expanded, values...)
	expanded = append(expanded, 0, 0, 0, 0, 0, 0)
	mod := bech32Polymod(expanded) ^ 1

	var sb strings.Builder
	sb.WriteString(hrp)
	sb.WriteByte('1')
	for _, v := range values {
		sb.WriteByte(bech32Charset[v])
	}
	for p := range 6 {
		sb.WriteByte(bech32Charset[mod>>(5*(5-p))&31])
	}
	if upper {
		return strings.ToUpper(sb.String())
	}
	return sb.String()
}
