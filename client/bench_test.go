package client

import (
	"archive/tar"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"filippo.io/age"
)

// benchSize is the plaintext the throughput benchmarks stream: 64 MiB, or
// COFFER_BENCH_MIB MiB (the report uses 1024).
func benchSize(b *testing.B) int64 {
	if s := os.Getenv("COFFER_BENCH_MIB"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			b.Fatal(err)
		}
		return n << 20
	}
	return 64 << 20
}

// benchFiles makes a file of benchSize bytes and its backup.
func benchFiles(b *testing.B) (dir, plain, backup string, id *age.X25519Identity) {
	b.Helper()
	dir = b.TempDir()
	plain = filepath.Join(dir, "data.bin")
	f, err := os.Create(plain)
	if err != nil {
		b.Fatal(err)
	}
	block := make([]byte, 1<<20)
	rand.Read(block)
	for n := benchSize(b); n > 0; n -= int64(len(block)) {
		f.Write(block)
	}
	f.Close()
	_, id, rec := testKey(b)
	backup = filepath.Join(dir, "data.age")
	out, _ := os.Create(backup)
	if _, err := WriteBackup(out, rec, []string{plain}, nil); err != nil {
		b.Fatal(err)
	}
	out.Close()
	return dir, plain, backup, id
}

// BenchmarkEncrypt: a backup of one file to io.Discard with WriteBackup,
// and the age command encrypting the same file to /dev/null.
func BenchmarkEncrypt(b *testing.B) {
	dir, plain, _, id := benchFiles(b)
	rec := id.Recipient()
	b.Run("coffer", func(b *testing.B) {
		b.SetBytes(benchSize(b))
		for b.Loop() {
			if _, err := WriteBackup(io.Discard, rec, []string{plain}, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("age-cli", func(b *testing.B) {
		agePath := ageCLI(b)
		b.SetBytes(benchSize(b))
		for b.Loop() {
			cmd := exec.Command(agePath, "-r", rec.String(), "-o", os.DevNull, plain)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
	_ = dir
}

// BenchmarkDecrypt: the backup decrypted and its tar stream read to
// io.Discard (the restore path without the disk), a full RestoreBackup
// into a folder, and the age command decrypting to /dev/null.
func BenchmarkDecrypt(b *testing.B) {
	dir, _, backup, id := benchFiles(b)
	b.Run("coffer-stream", func(b *testing.B) {
		b.SetBytes(benchSize(b))
		for b.Loop() {
			f, _ := os.Open(backup)
			src := &authReader{r: mustDecrypt(b, f, id)}
			tr := tar.NewReader(src)
			for {
				if _, err := tr.Next(); err == io.EOF {
					break
				} else if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, tr)
			}
			if err := drainZeros(src); err != nil || src.err != nil {
				b.Fatal(err, src.err)
			}
			f.Close()
		}
	})
	b.Run("coffer-restore", func(b *testing.B) {
		b.SetBytes(benchSize(b))
		for b.Loop() {
			out := filepath.Join(dir, "out")
			f, _ := os.Open(backup)
			if _, err := RestoreBackup(f, id, out, nil); err != nil {
				b.Fatal(err)
			}
			f.Close()
			os.RemoveAll(out)
		}
	})
	b.Run("age-cli", func(b *testing.B) {
		agePath := ageCLI(b)
		idFile := filepath.Join(dir, "id")
		os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
		b.SetBytes(benchSize(b))
		for b.Loop() {
			cmd := exec.Command(agePath, "-d", "-i", idFile, "-o", os.DevNull, backup)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("%v: %s", err, out)
			}
		}
	})
}

func mustDecrypt(b *testing.B, r io.Reader, id age.Identity) io.Reader {
	pr, err := age.Decrypt(r, id)
	if err != nil {
		b.Fatal(err)
	}
	return pr
}

func ageCLI(b *testing.B) string {
	p, err := exec.LookPath("age")
	if err != nil {
		b.Skip("the age command is not installed")
	}
	return p
}
