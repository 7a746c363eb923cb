package provision

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"

	"github.com/cofferhsm/coffer/protocol"
)

func TestKeyFileRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "prov.key")
	pub, err := NewKey(path)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ReadKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(key.Public().(ed25519.PublicKey), pub) {
		t.Fatal("the key read back is not the key written")
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if _, err := NewKey(path); err == nil {
		t.Fatal("NewKey overwrote a key")
	}
	if _, err := NewKey(""); err == nil {
		t.Fatal("NewKey without a file accepted")
	}
	for name, content := range map[string]string{
		"empty":  "",
		"short":  "# coffer provisioning key\nabcd\n",
		"nothex": "# c\n" + string(bytes.Repeat([]byte("zz"), 32)) + "\n",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(content), 0o600)
		if _, err := ReadKey(p); err == nil {
			t.Errorf("ReadKey accepted %s", name)
		}
	}
}

func TestWriteCBORWritesWhatProtocolReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id.cbor")
	if err := WriteCBOR("", &protocol.Identity{}); err == nil {
		t.Fatal("WriteCBOR without a file accepted")
	}
	k := bytes.Repeat([]byte{1}, 32)
	in := protocol.Identity{Version: protocol.Version, SigningKey: k, AKEKey: k, HPKEKey: k, FirmwareHash: k, Name: "v", MaxLimit: 7, Insecure: true}
	if err := WriteCBOR(path, &in); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	var out protocol.Identity
	if err := protocol.Unmarshal(b, &out); err != nil || out.Name != "v" || out.MaxLimit != 7 || !out.Insecure {
		t.Fatalf("read back %+v, %v", out, err)
	}
}
