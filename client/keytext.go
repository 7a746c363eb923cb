package client

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// The 64-digit key (SPEC.md, "64-digit key"): K as 64 upper-case hex
// digits in 16 groups of 4, then one check group of 4 more digits, the
// CRC-16 of K. A single mistyped digit or two swapped neighbours always
// change the check, so a typo is caught before any decryption is tried.
const (
	KeyDigits   = 2 * KeySize // 64
	CheckDigits = 4
	GroupSize   = 4
	TextDigits  = KeyDigits + CheckDigits // 68: what the user types
)

// ErrKeyCheck is wrapped by ParseKeyText when the digits are well formed but
// the check group does not match them: a typo.
var ErrKeyCheck = errors.New("the check group does not match: the key has a typo")

// KeyTextError says what is wrong with a typed key. Groups, when not empty,
// are the 1-based groups where a single typo (one wrong digit, or two
// neighbouring digits swapped) would explain the mismatch.
type KeyTextError struct {
	Msg    string
	Groups []int
	err    error
}

func (e *KeyTextError) Error() string {
	s := "64-digit key: " + e.Msg
	if len(e.Groups) > 0 {
		names := make([]string, len(e.Groups))
		for i, g := range e.Groups {
			names[i] = groupName(g)
		}
		s += "; look again at " + strings.Join(names, " and ")
	}
	return s
}

func (e *KeyTextError) Unwrap() error { return e.err }

func groupName(g int) string {
	if g == KeyDigits/GroupSize+1 {
		return "the check group"
	}
	return fmt.Sprintf("group %d", g)
}

// crc16 is CRC-16/IBM-3740 (also called CRC-16/CCITT-FALSE): polynomial
// 0x1021, initial value 0xFFFF, no reflection, no final XOR. Its check value
// for "123456789" is 0x29B1.
func crc16(data []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, b := range data {
		crc ^= uint16(b) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

const hexUpper = "0123456789ABCDEF"

// keyDigits returns the 68 digits of K: its 64 hex digits and the check.
func (k *BackupKey) keyDigits() []byte {
	d := make([]byte, 0, TextDigits)
	for _, b := range k.k {
		d = append(d, hexUpper[b>>4], hexUpper[b&15])
	}
	c := crc16(k.k[:])
	return append(d, hexUpper[c>>12], hexUpper[c>>8&15], hexUpper[c>>4&15], hexUpper[c&15])
}

// KeyGroups returns the 17 groups of the 64-digit key: 16 of K, then the
// check group.
func (k *BackupKey) KeyGroups() []string {
	d := k.keyDigits()
	defer clear(d)
	groups := make([]string, 0, TextDigits/GroupSize)
	for i := 0; i < len(d); i += GroupSize {
		groups = append(groups, string(d[i:i+GroupSize]))
	}
	return groups
}

// KeyText is the canonical 64-digit key: 17 groups joined by hyphens
// ("0123-4567-…-89AB-CHEK"). It is as secret as K.
func (k *BackupKey) KeyText() string { return strings.Join(k.KeyGroups(), "-") }

// ParseKeyText reads a typed 64-digit key: 68 hex digits in any case, with
// or without spaces, tabs, line breaks or hyphens between them. It refuses
// a key without its check group, and one whose check group does not match.
func ParseKeyText(s string) (*BackupKey, error) {
	d := make([]byte, 0, TextDigits)
	defer clear(d)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-' || c == '\t' || c == '\n' || c == '\r':
			continue
		case '0' <= c && c <= '9', 'A' <= c && c <= 'F':
		case 'a' <= c && c <= 'f':
			c -= 'a' - 'A'
		default:
			what := fmt.Sprintf("%q", c)
			if c >= 0x80 {
				what = "a non-ASCII character"
			}
			return nil, &KeyTextError{Msg: fmt.Sprintf("%s after digit %d is not a hex digit (0-9, A-F)", what, len(d))}
		}
		if len(d) == TextDigits {
			return nil, &KeyTextError{Msg: fmt.Sprintf("more than %d digits", TextDigits)}
		}
		d = append(d, c)
	}
	switch {
	case len(d) == KeyDigits:
		return nil, &KeyTextError{Msg: fmt.Sprintf("only %d digits: the check group is missing (the key is %d digits: %d, then a check group of %d)", KeyDigits, TextDigits, KeyDigits, CheckDigits)}
	case len(d) != TextDigits:
		return nil, &KeyTextError{Msg: fmt.Sprintf("%d digits, want %d (%d, then a check group of %d)", len(d), TextDigits, KeyDigits, CheckDigits)}
	}
	if !checkDigitsMatch(d) {
		return nil, &KeyTextError{Msg: ErrKeyCheck.Error(), Groups: suspectGroups(d), err: ErrKeyCheck}
	}
	var k BackupKey
	for i := range KeySize {
		k.k[i] = unhex(d[2*i])<<4 | unhex(d[2*i+1])
	}
	return &k, nil
}

func unhex(c byte) byte {
	if c <= '9' {
		return c - '0'
	}
	return c - 'A' + 10
}

// checkDigitsMatch reports whether 68 upper-case hex digits are a key and
// its check group.
func checkDigitsMatch(d []byte) bool { return syndrome(d) == 0 }

// syndrome is CRC-16(K) XOR the check group: 0 exactly when they match.
func syndrome(d []byte) uint16 {
	var k [KeySize]byte
	defer clear(k[:])
	for i := range KeySize {
		k[i] = unhex(d[2*i])<<4 | unhex(d[2*i+1])
	}
	c := uint16(unhex(d[64]))<<12 | uint16(unhex(d[65]))<<8 | uint16(unhex(d[66]))<<4 | uint16(unhex(d[67]))
	return crc16(k[:]) ^ c
}

// typoEffect[i][x] is how XORing x into digit i changes the syndrome. A CRC
// is affine, so a change's effect does not depend on the other digits.
var typoEffect = func() (t [TextDigits][16]uint16) {
	var zero, e [KeySize]byte
	base := crc16(zero[:])
	for i := range TextDigits {
		for x := range 16 {
			if i < KeyDigits {
				e = zero
				e[i/2] = byte(x) << (4 * (1 - i%2))
				t[i][x] = crc16(e[:]) ^ base
			} else {
				t[i][x] = uint16(x) << (4 * (TextDigits - 1 - i))
			}
		}
	}
	return t
}()

// suspectGroups finds where one typo would explain a check mismatch: every
// single-digit change and every swap of neighbours that would make the check
// match. It returns their groups only when they are few (otherwise the hint
// would mislead); it never corrects anything itself.
func suspectGroups(d []byte) []int {
	s := syndrome(d)
	var groups []int
	add := func(pos int) {
		g := pos/GroupSize + 1
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	for i := range TextDigits {
		for x := 1; x < 16; x++ {
			if typoEffect[i][x] == s {
				add(i)
			}
		}
	}
	for i := 0; i+1 < TextDigits; i++ {
		if x := unhex(d[i]) ^ unhex(d[i+1]); x != 0 && typoEffect[i][x]^typoEffect[i+1][x] == s {
			add(i)
			add(i + 1)
		}
	}
	if len(groups) == 0 || len(groups) > 2 {
		return nil
	}
	slices.Sort(groups)
	return groups
}
