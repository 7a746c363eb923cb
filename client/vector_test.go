package client

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/cofferhsm/coffer/internal/vectorfile"
)

// vectorDir holds the client's test vectors, one file per case, written by
// its gen_vectors.py from SPEC.md alone (README.md there); vectorfile.Load
// fails a case that differs from what the generator wrote.
const vectorDir = "testdata/vectors"

// clientVectors returns the cases of one folder of vectorDir, and fails on
// a folder no test reads.
func clientVectors(t *testing.T, group string) []vectorfile.Case {
	t.Helper()
	var cases []vectorfile.Case
	for _, c := range vectorfile.Load(t, vectorDir) {
		switch c.Group() {
		case "keys", "keytext", "backup", "padme":
		default:
			t.Errorf("%s: a folder no test reads", c.Path)
		}
		if c.Group() == group {
			cases = append(cases, c)
		}
	}
	return cases
}

// expectAll fails unless every outcome named occurs among cases: a test
// whose failure cases vanished would pass for nothing.
func expectAll(t *testing.T, cases []vectorfile.Case, outcomes ...string) {
	t.Helper()
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.Expect] = true
	}
	for _, o := range outcomes {
		if !seen[o] {
			t.Errorf("no case expects %s", o)
		}
	}
}

// keys/: K → age identity, recipient and 64-digit key.
func TestKeyVectors(t *testing.T) {
	cases := clientVectors(t, "keys")
	if len(cases) < 4 {
		t.Fatalf("only %d key vectors", len(cases))
	}
	for _, c := range cases {
		if c.Expect != "success" {
			t.Fatalf("%s: expect %s", c.Path, c.Expect)
		}
		kb := c.Data
		k := mustKey(t, kb)
		wantID, wantRec, wantText := c.Header["age-identity"], c.Header["age-recipient"], c.Header["key-text"]

		// The code agrees with the file.
		if got := k.AgeIdentityString(); got != wantID {
			t.Errorf("%s: identity %s, vector %s", c.Path, got, wantID)
		}
		r, err := k.AgeRecipient()
		if err != nil || r != wantRec {
			t.Errorf("%s: recipient %s (%v), vector %s", c.Path, r, err, wantRec)
		}
		if got := k.KeyText(); got != wantText {
			t.Errorf("%s: key text %s, vector %s", c.Path, got, wantText)
		}

		// And the file agrees with a derivation by other Go code and with age.
		scalar, recipient := independentDerivation(t, kb)
		if recipient != wantRec {
			t.Errorf("%s: independent recipient %s, vector %s", c.Path, recipient, wantRec)
		}
		id, err := age.ParseX25519Identity(wantID)
		if err != nil {
			t.Fatalf("%s: age rejects the vector identity: %v", c.Path, err)
		}
		if id.String() != wantID || id.Recipient().String() != wantRec {
			t.Errorf("%s: age re-encodes the identity as %s / %s", c.Path, id, id.Recipient())
		}
		if want := strings.ToUpper(bech32Encode("age-secret-key-", scalar)); want != wantID {
			t.Errorf("%s: identity is not the bech32 of the HKDF scalar", c.Path)
		}
		back, err := ParseKeyText(wantText)
		if err != nil || !back.Equal(k) {
			t.Errorf("%s: key text does not parse back: %v", c.Path, err)
		}
	}
}

// keytext/: what the reader of a typed 64-digit key accepts and refuses,
// and how it reports it.
func TestKeyTextVectors(t *testing.T) {
	cases := clientVectors(t, "keytext")
	expectAll(t, cases, "success", "checksum", "malformed")
	for _, c := range cases {
		k, err := ParseKeyText(string(c.Data))
		var kte *KeyTextError
		switch c.Expect {
		case "success":
			if err != nil {
				t.Errorf("%s: %v", c.Path, err)
			} else if want := mustKey(t, c.Hex(t, "backup-key")); !k.Equal(want) {
				t.Errorf("%s: read another key", c.Path)
			}
			continue
		case "checksum":
			if !errors.Is(err, ErrKeyCheck) || !errors.As(err, &kte) {
				t.Errorf("%s: got %v, want a check group mismatch", c.Path, err)
				continue
			}
			got := "none"
			if len(kte.Groups) > 0 {
				got = strings.Trim(fmt.Sprint(kte.Groups), "[]")
			}
			if want := c.Header["suspect-groups"]; got != want {
				t.Errorf("%s: suspects groups %s, vector %s (%v)", c.Path, got, want, err)
			}
		case "malformed":
			if err == nil || errors.Is(err, ErrKeyCheck) || !errors.As(err, &kte) {
				t.Errorf("%s: got %v, want malformed (%s)", c.Path, err, c.Header["rule"])
				continue
			}
			want := map[string]string{
				"missing-check-group": "the check group is missing",
				"length":              "digits, want 68",
				"character":           "is not a hex digit",
			}[c.Header["rule"]]
			if c.Header["rule"] == "length" && strings.Contains(err.Error(), "more than 68 digits") {
				want = "more than 68 digits" // the reader stops at the 69th digit
			}
			if want == "" || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: %v does not report rule %s", c.Path, err, c.Header["rule"])
			}
		default:
			t.Errorf("%s: unknown outcome %s", c.Path, c.Expect)
		}
		if k != nil {
			t.Errorf("%s: a key returned with an error", c.Path)
		}
	}
}

// vectorEntry is one entry-N header of a backup case:
// "TYPE NAME MODE MTIME [CONTENT-HEX | - | TARGET]".
type vectorEntry struct {
	Type, Name, Target string
	Mode               fs.FileMode
	MTime              int64
	Content            []byte
}

func vectorEntries(t *testing.T, c *vectorfile.Case) []vectorEntry {
	t.Helper()
	var entries []vectorEntry
	for i := 1; i <= int(c.Uint(t, "entries")); i++ {
		f := strings.Fields(c.Header["entry-"+strconv.Itoa(i)])
		if len(f) < 4 {
			t.Fatalf("%s: entry-%d: %q", c.Path, i, f)
		}
		mode, err1 := strconv.ParseUint(f[2], 8, 32)
		mtime, err2 := strconv.ParseInt(f[3], 10, 64)
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: entry-%d: %v %v", c.Path, i, err1, err2)
		}
		e := vectorEntry{Type: f[0], Name: f[1], Mode: fs.FileMode(mode), MTime: mtime}
		switch {
		case e.Type == "file" && len(f) == 5:
			if f[4] != "-" {
				e.Content, err1 = hex.DecodeString(f[4])
			}
		case e.Type == "symlink" && len(f) == 5:
			e.Target = f[4]
		case e.Type == "dir" && len(f) == 4:
		default:
			t.Fatalf("%s: entry-%d: %q", c.Path, i, f)
		}
		if err1 != nil {
			t.Fatalf("%s: entry-%d: %v", c.Path, i, err1)
		}
		entries = append(entries, e)
	}
	return entries
}

// backup/: age files made by stock age of archives made by Python's
// tarfile, restored by RestoreBackup with the identity derived from K.
func TestBackupVector(t *testing.T) {
	cases := clientVectors(t, "backup")
	expectAll(t, cases, "success", "wrong-key", "authentication", "bad-archive")
	for _, c := range cases {
		t.Run(c.Path, func(t *testing.T) {
			k := mustKey(t, c.Hex(t, "backup-key"))
			if c.Has("age-identity") && (k.AgeIdentityString() != c.Header["age-identity"]) {
				t.Fatal("the vector's identity does not match its K")
			}
			if c.Has("age-recipient") {
				if r, err := k.AgeRecipient(); err != nil || r != c.Header["age-recipient"] {
					t.Fatalf("the vector's recipient does not match its K: %s %v", r, err)
				}
			}
			if c.Has("file") {
				raw, err := os.ReadFile(filepath.Join(vectorDir, c.Header["file"]))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(raw, c.Data) {
					t.Fatalf("%s differs from the case's bytes", c.Header["file"])
				}
			}
			id, err := k.AgeIdentity()
			if err != nil {
				t.Fatal(err)
			}
			var entries []vectorEntry
			if c.Has("entries") {
				// The archive inside is exactly the entries listed, in order,
				// so a failure below is for the reason the case names.
				entries = vectorEntries(t, &c)
				var plain bytes.Buffer
				if err := decryptTo(&plain, bytes.NewReader(c.Data), id); err != nil {
					t.Fatal(err)
				}
				checkVectorArchive(t, plain.Bytes(), entries)
				stockAgeOpens(t, c, entries)
			}

			parent := t.TempDir()
			dst := filepath.Join(parent, "out")
			st, err := RestoreBackup(bytes.NewReader(c.Data), id, dst, nil)
			if c.Has("payload-length") {
				// The padded layout: the archive, then zeros (or, for the
				// failure, not) to its Padmé length.
				var plain bytes.Buffer
				if err := decryptTo(&plain, bytes.NewReader(c.Data), id); err != nil {
					t.Fatal(err)
				}
				archive, payload := int64(c.Uint(t, "archive-length")), int64(c.Uint(t, "payload-length"))
				if int64(plain.Len()) != payload || PadmeLength(archive) != payload {
					t.Fatalf("payload %d bytes, header %d, PadmeLength(%d) = %d", plain.Len(), payload, archive, PadmeLength(archive))
				}
				if c.Expect == "success" && (st == nil || st.Archive != archive || st.Payload != payload) {
					t.Fatalf("restore read %+v, want archive %d payload %d", st, archive, payload)
				}
			}
			want := map[string]error{
				"wrong-key":      ErrWrongKey,
				"authentication": ErrDamaged,
				"bad-archive":    ErrBadArchive,
			}[c.Expect]
			switch {
			case c.Expect == "success":
				if err != nil {
					t.Fatal(err)
				}
				checkRestored(t, dst, entries)
			case want != nil:
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
				assertOnly(t, parent) // nothing restored, not even the target folder
			default:
				t.Fatalf("unknown outcome %s", c.Expect)
			}
		})
	}
}

// stockAgeOpens decrypts the case's age file with the age CLI, when
// installed, and the exported identity.
func stockAgeOpens(t *testing.T, c vectorfile.Case, entries []vectorEntry) {
	t.Helper()
	agePath, err := exec.LookPath("age")
	if err != nil || !c.Has("file") {
		return
	}
	idFile := filepath.Join(t.TempDir(), "id")
	if err := os.WriteFile(idFile, []byte(c.Header["age-identity"]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(agePath, "-d", "-i", idFile, filepath.Join(vectorDir, c.Header["file"])).Output()
	if err != nil {
		t.Fatalf("age -d: %v", err)
	}
	checkVectorArchive(t, out, entries)
}

func checkRestored(t *testing.T, dst string, entries []vectorEntry) {
	t.Helper()
	for _, e := range entries {
		p := filepath.Join(dst, strings.TrimSuffix(e.Name, "/"))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch e.Type {
		case "file":
			got, _ := os.ReadFile(p)
			if !fi.Mode().IsRegular() || !bytes.Equal(got, e.Content) || modeString(fi.Mode()) != modeString(e.Mode) {
				t.Errorf("%s: %q %v", e.Name, got, fi.Mode())
			}
		case "dir":
			if !fi.IsDir() || modeString(fi.Mode()) != modeString(e.Mode) {
				t.Errorf("%s: %v", e.Name, fi.Mode())
			}
		case "symlink":
			if target, _ := os.Readlink(p); fi.Mode()&fs.ModeSymlink == 0 || target != e.Target {
				t.Errorf("%s -> %q", e.Name, target)
			}
			continue // a link's own time is not restored (SPEC.md)
		}
		if fi.ModTime().Unix() != e.MTime {
			t.Errorf("%s: mtime %v, want %d", e.Name, fi.ModTime(), e.MTime)
		}
	}
}

func modeString(m fs.FileMode) string { return fmt.Sprintf("%04o", m.Perm()) }

func decryptTo(w io.Writer, r io.Reader, id age.Identity) error {
	pr, err := age.Decrypt(r, id)
	if err != nil {
		return err
	}
	_, err = io.Copy(w, pr)
	return err
}

// checkVectorArchive reads the tar archive and checks that it holds exactly
// entries, in order, with the headers SPEC.md says a writer produces.
func checkVectorArchive(t *testing.T, plain []byte, entries []vectorEntry) {
	t.Helper()
	tr := tar.NewReader(bytes.NewReader(plain))
	for i := 0; ; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			if i != len(entries) {
				t.Fatalf("%d entries, want %d", i, len(entries))
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(entries) {
			t.Fatalf("entry %d is %q, beyond the %d listed", i, h.Name, len(entries))
		}
		e := entries[i]
		typ := map[byte]string{tar.TypeDir: "dir", tar.TypeReg: "file", tar.TypeSymlink: "symlink"}[h.Typeflag]
		if h.Name != e.Name || typ != e.Type || h.Mode != int64(e.Mode) || h.ModTime.Unix() != e.MTime ||
			h.Linkname != e.Target || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Fatalf("entry %d: %+v, want %+v", i, h, e)
		}
		content, err := io.ReadAll(tr)
		if err != nil || !bytes.Equal(content, e.Content) {
			t.Fatalf("entry %d: content %q (%v), want %q", i, content, err, e.Content)
		}
	}
}

// padme/: lengths and their padded lengths, from SPEC.md's construction.
func TestPadmeVectors(t *testing.T) {
	cases := clientVectors(t, "padme")
	expectAll(t, cases, "success")
	for _, c := range cases {
		l, want := c.Uint(t, "length"), c.Uint(t, "padded-length")
		if got := PadmeLength(int64(l)); got != int64(want) {
			t.Errorf("%s: PadmeLength(%d) = %d, want %d", c.Path, l, got, want)
		}
	}
}
