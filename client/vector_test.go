package client

import (
	"archive/tar"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

// backupVector is testdata/backup-vector.json: a tiny backup file and the
// K that opens it, with what it must restore to.
type backupVector struct {
	Comment     string        `json:"comment"`
	K           string        `json:"k"`
	KeyText     string        `json:"key_text"`
	AgeIdentity string        `json:"age_identity"`
	File        string        `json:"file"`
	Entries     []vectorEntry `json:"entries"`
}

type vectorEntry struct {
	Name    string `json:"name"`
	Type    string `json:"type"` // dir, file, symlink
	Mode    string `json:"mode,omitempty"`
	Content string `json:"content,omitempty"`
	Target  string `json:"target,omitempty"`
}

func TestBackupVector(t *testing.T) {
	const path = "testdata/backup-vector.json"
	if *update {
		k := mustKey(t, vectorKeys()[2])
		src := filepath.Join(t.TempDir(), "coffer-vector")
		os.MkdirAll(filepath.Join(src, "sub"), 0o700)
		writeFile(t, filepath.Join(src, "hello.txt"), []byte("hello, coffer\n"), 0o644)
		writeFile(t, filepath.Join(src, "empty"), nil, 0o600)
		os.Symlink("../hello.txt", filepath.Join(src, "sub", "link"))
		os.Chmod(filepath.Join(src, "sub"), 0o700)
		os.Chmod(src, 0o755)
		id, _ := k.AgeIdentity()
		backupTo(t, "testdata/backup-vector.age", id.Recipient(), []string{src}, nil)
		v := backupVector{
			Comment: "A tiny Coffer backup (SPEC.md): backup-vector.age is an age file, encrypted to the recipient derived from K, " +
				"of a tar archive holding these entries in this order. Regenerate with go test ./client -run TestBackupVector -update.",
			K: hex.EncodeToString(k.Bytes()), KeyText: k.KeyText(), AgeIdentity: k.AgeIdentityString(), File: "backup-vector.age",
			Entries: []vectorEntry{
				{Name: "coffer-vector/", Type: "dir", Mode: "0755"},
				{Name: "coffer-vector/empty", Type: "file", Mode: "0600"},
				{Name: "coffer-vector/hello.txt", Type: "file", Mode: "0644", Content: "hello, coffer\n"},
				{Name: "coffer-vector/sub/", Type: "dir", Mode: "0700"},
				{Name: "coffer-vector/sub/link", Type: "symlink", Target: "../hello.txt"},
			},
		}
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var v backupVector
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	kb, _ := hex.DecodeString(v.K)
	k := mustKey(t, kb)
	if k.KeyText() != v.KeyText || k.AgeIdentityString() != v.AgeIdentity {
		t.Fatal("the vector's key text or identity does not match its K")
	}
	id, _ := k.AgeIdentity()

	// The archive inside is exactly the entries listed, in order.
	f, err := os.Open(filepath.Join("testdata", v.File))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var plain bytes.Buffer
	if err := decryptTo(&plain, f, id); err != nil {
		t.Fatal(err)
	}
	checkVectorArchive(t, plain.Bytes(), v.Entries)

	// And it restores to them.
	dst := t.TempDir()
	if _, err := restoreFrom(filepath.Join("testdata", v.File), id, dst, nil); err != nil {
		t.Fatal(err)
	}
	for _, e := range v.Entries {
		p := filepath.Join(dst, strings.TrimSuffix(e.Name, "/"))
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		switch e.Type {
		case "file":
			got, _ := os.ReadFile(p)
			if string(got) != e.Content || modeString(fi.Mode()) != e.Mode {
				t.Errorf("%s: %q %v", e.Name, got, fi.Mode())
			}
		case "dir":
			if !fi.IsDir() || modeString(fi.Mode()) != e.Mode {
				t.Errorf("%s: %v", e.Name, fi.Mode())
			}
		case "symlink":
			if target, _ := os.Readlink(p); target != e.Target {
				t.Errorf("%s -> %q", e.Name, target)
			}
		}
	}

	// Stock age opens it with the identity, when installed.
	if agePath, err := exec.LookPath("age"); err == nil {
		idFile := filepath.Join(t.TempDir(), "id")
		os.WriteFile(idFile, []byte(v.AgeIdentity+"\n"), 0o600)
		out, err := exec.Command(agePath, "-d", "-i", idFile, filepath.Join("testdata", v.File)).Output()
		if err != nil {
			t.Fatalf("age -d: %v", err)
		}
		checkVectorArchive(t, out, v.Entries)
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
		if i >= len(entries) || h.Name != entries[i].Name {
			t.Fatalf("entry %d is %q", i, h.Name)
		}
	}
}
