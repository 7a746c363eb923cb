package client

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"unicode"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

func TestCRC16CheckValue(t *testing.T) {
	if got := crc16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("crc16 check value %04X, want 29B1 (CRC-16/IBM-3740)", got)
	}
}

func randomKey(t testing.TB) *BackupKey {
	k, err := NewBackupKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyTextRoundTrip(t *testing.T) {
	for range 100 {
		k := randomKey(t)
		text := k.KeyText()
		groups := strings.Split(text, "-")
		if len(groups) != 17 || len(strings.ReplaceAll(text, "-", "")) != 68 {
			t.Fatalf("key text %q is not 17 groups of 4", text)
		}
		if strings.Join(groups[:16], "") != strings.ToUpper(strings.ReplaceAll(hexOf(k), " ", "")) {
			t.Fatalf("the first 16 groups are not K in hex")
		}
		for _, variant := range []string{
			text,
			strings.ToLower(text),
			strings.ReplaceAll(text, "-", ""),
			strings.ReplaceAll(text, "-", " "),
			strings.Join(k.KeyGroups()[:8], " ") + "\n" + strings.Join(k.KeyGroups()[8:], "\t") + "\r\n",
			mixCase(text),
		} {
			back, err := ParseKeyText(variant)
			if err != nil {
				t.Fatalf("%q: %v", variant, err)
			}
			if !back.Equal(k) {
				t.Fatalf("%q parsed to another key", variant)
			}
		}
	}
}

func hexOf(k *BackupKey) string {
	const digits = "0123456789abcdef"
	var sb strings.Builder
	for _, b := range k.k {
		sb.WriteByte(digits[b>>4])
		sb.WriteByte(digits[b&15])
	}
	return sb.String()
}

func mixCase(s string) string {
	r := []rune(s)
	for i := range r {
		if i%2 == 0 {
			r[i] = unicode.ToLower(r[i])
		}
	}
	return string(r)
}

// Every single-digit change and every swap of two different neighbouring
// digits, anywhere in the 68 (check group included), is caught.
func TestKeyTextCatchesEveryTypo(t *testing.T) {
	keys := []*BackupKey{mustKey(t, make([]byte, 32))}
	for _, kb := range vectorKeys() {
		keys = append(keys, mustKey(t, kb))
	}
	n := 40
	if testing.Short() {
		n = 5
	}
	for range n {
		keys = append(keys, randomKey(t))
	}
	hinted, typos := 0, 0
	for _, k := range keys {
		d := []byte(strings.ReplaceAll(k.KeyText(), "-", ""))
		check := func(typo []byte, what string, group int) {
			t.Helper()
			typos++
			_, err := ParseKeyText(string(typo))
			if !errors.Is(err, ErrKeyCheck) {
				t.Fatalf("%s in %s not caught: %v", what, k.KeyText(), err)
			}
			var kte *KeyTextError
			if !errors.As(err, &kte) {
				t.Fatalf("%s: error is %T", what, err)
			}
			if len(kte.Groups) > 0 {
				hinted++
				found := false
				for _, g := range kte.Groups {
					found = found || g == group
				}
				if !found {
					t.Fatalf("%s: hint points at groups %v, the typo is in group %d", what, kte.Groups, group)
				}
			}
		}
		for i := range d {
			for _, c := range []byte(hexUpper) {
				if c == d[i] {
					continue
				}
				typo := append([]byte(nil), d...)
				typo[i] = c
				check(typo, "digit "+string(rune('0'+i/10))+string(rune('0'+i%10))+" changed", i/4+1)
			}
		}
		for i := 0; i+1 < len(d); i++ {
			if d[i] == d[i+1] {
				continue
			}
			typo := append([]byte(nil), d...)
			typo[i], typo[i+1] = typo[i+1], typo[i]
			check(typo, "swap", i/4+1)
		}
	}
	t.Logf("%d typos caught, %d (%.0f%%) with a hint naming the right group", typos, hinted, 100*float64(hinted)/float64(typos))
}

func TestKeyTextErrors(t *testing.T) {
	k := randomKey(t)
	text := strings.ReplaceAll(k.KeyText(), "-", "")
	for _, tc := range []struct {
		in, want string
	}{
		{text[:64], "check group is missing"},
		{text[:67], "67 digits, want 68"},
		{text + "0", "more than 68 digits"},
		{"", "0 digits"},
		{text[:10] + "G" + text[11:], `'G' after digit 10 is not a hex digit`},
		{text[:10] + "O" + text[11:], `'O'`},
		{text[:3] + "é" + text[4:], "non-ASCII"},
	} {
		_, err := ParseKeyText(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseKeyText(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseKeyText(f *testing.F) {
	for _, kb := range vectorKeys() {
		f.Add(mustKey(f, kb).KeyText())
	}
	f.Add("")
	f.Add("0000")
	f.Add(strings.Repeat("f", 68))
	f.Add(strings.Repeat("0", 64) + "1D0F")
	f.Add("0123-4567-89ab-cdef-0123-4567-89ab-cdef-0123-4567-89ab-cdef-0123-4567-89ab-cdef-ZZZZ")
	for _, c := range vectorfile.Load(f, vectorDir) {
		if c.Group() == "keytext" { // every spelling the vectors accept or refuse
			f.Add(string(c.Data))
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseKeyText(s)
		if err != nil {
			if k != nil {
				t.Fatal("key and error")
			}
			return
		}
		digits := 0
		for _, c := range s {
			if strings.ContainsRune("0123456789abcdefABCDEF", c) {
				digits++
			} else if !strings.ContainsRune(" -\t\r\n", c) {
				t.Fatalf("accepted %q with a %q in it", s, c)
			}
		}
		if digits != TextDigits {
			t.Fatalf("accepted %d digits", digits)
		}
		back, err := ParseKeyText(k.KeyText())
		if err != nil || !back.Equal(k) {
			t.Fatalf("canonical form of %q does not round-trip: %v", s, err)
		}
		if strings.ToUpper(strings.NewReplacer(" ", "", "-", "", "\t", "", "\r", "", "\n", "").Replace(s)) !=
			strings.ReplaceAll(k.KeyText(), "-", "") {
			t.Fatalf("%q parsed to another key", s)
		}
	})
}
