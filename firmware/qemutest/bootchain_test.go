package qemutest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/testclient"
	"github.com/cofferhsm/coffer/board/qemu"
	"github.com/cofferhsm/coffer/firmware/bootcheck"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/releaselog"
	"github.com/cofferhsm/coffer/protocol/releaselog/releaselogtest"
)

// The test bootloader is built with this policy (firmware.mk's default
// BOOT_POLICY); its private keys are committed next to it, marked TEST-ONLY.
const testPolicyFile = "testdata/boot-policy-TEST-ONLY.txt"

func bootloaderImage(t *testing.T) string {
	t.Helper()
	img := os.Getenv("COFFER_BOOTLOADER")
	if img == "" {
		t.Skip("SKIPPED: boot chain tests need COFFER_BOOTLOADER (a QEMU coffer-boot.elf built with the TEST policy; `make test-firmware` sets it)")
	}
	abs, err := filepath.Abs(img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(abs); err != nil {
		t.Skipf("SKIPPED: no bootloader image at %s", abs)
	}
	return abs
}

// testReleaseLog is an in-memory release log signed and cosigned with the
// committed TEST keys, which the test bootloader's policy pins.
func testReleaseLog(t *testing.T) (*releaselogtest.Log, *releaselog.Policy) {
	t.Helper()
	text, err := os.ReadFile(testPolicyFile)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := releaselog.ParsePolicy(text)
	if err != nil {
		t.Fatal(err)
	}
	key := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	l := releaselogtest.New(t, pol.Origin, 0)
	if l.LogSigner, err = note.NewSigner(key("release-TEST-ONLY.key")); err != nil {
		t.Fatal(err)
	}
	l.LogKey = pol.LogKey
	for i := range pol.Witnesses {
		s, err := fnote.NewSignerForCosignatureV1(key(fmt.Sprintf("witness-%d-TEST-ONLY.key", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		l.Witnesses = append(l.Witnesses, s)
	}
	l.WitnessKeys = pol.Witnesses
	return l, pol
}

// putBootFiles puts the OS image and its proof where the QEMU board's
// bootloader reads them.
func putBootFiles(t *testing.T, dir string, osELF []byte, pr *releaselog.Proof) {
	t.Helper()
	b, err := pr.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, qemu.OSImageFile), osELF, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, qemu.OSProofFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func osImage(t *testing.T) ([]byte, []byte) {
	t.Helper()
	b, err := os.ReadFile(firmwareImage(t))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.Sum256(b)
	return b, h[:]
}

// bootRefused boots the bootloader in dir and checks that it refuses, its
// console naming why (want), and that nothing answers on the protocol UART:
// a client connected from the start, which sends a status request, gets
// not one byte before QEMU halts; no OS ever printed a line, and no vault
// reported ready.
func bootRefused(t *testing.T, dir, want string) {
	t.Helper()
	v, _ := startKernel(t, dir, bootloaderImage(t))
	var conn net.Conn
dial:
	for {
		c, err := net.Dial("unix", v.sock)
		if err == nil {
			conn = c
			break
		}
		select {
		case <-v.exited:
			break dial
		case <-time.After(10 * time.Millisecond):
		}
	}
	if conn != nil {
		defer conn.Close()
		req, _ := protocol.Encode(protocol.TypeStatus, protocol.NewStatusRequest())
		protocol.WriteFrame(conn, protocol.Frame{ID: 1, Payload: req})
	}
	select {
	case status := <-v.ready:
		t.Fatalf("an OS booted and serves (%s):\n%s", status, v.Console())
	case <-v.exited:
	case <-time.After(bootTimeout):
		t.Fatalf("the bootloader neither halted nor booted:\n%s", v.Console())
	}
	if conn != nil {
		// QEMU has exited: the socket ends; whatever came is all there is.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(conn)
		if len(got) != 0 {
			t.Fatalf("the protocol UART sent %d bytes (%v) although the boot was refused", len(got), err)
		}
	}
	err := v.cmd.Wait()
	con := v.Console()
	if code := v.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("QEMU exit status %d (%v), want 1 (the bootloader's halt)", code, err)
	}
	if !strings.Contains(con, "REFUSING TO BOOT THE OS") || !strings.Contains(con, want) {
		t.Fatalf("console does not refuse with %q:\n%s", want, con)
	}
	if strings.Contains(con, "coffer trusted OS") || strings.Contains(con, "starting the OS") {
		t.Fatalf("an OS started:\n%s", con)
	}
	t.Logf("refused: %s", refusalLine(con))
}

func refusalLine(con string) string {
	for _, l := range strings.Split(con, "\n") {
		if strings.Contains(l, "REFUSING") {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// minVersionIn reads the minimum release version from the emulated RPMB in
// dir, as the bootloader does.
func minVersionIn(t *testing.T, dir string) uint64 {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, qemu.AnchorFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	part, err := qemu.OpenEmulatedRPMB(emulate.OSFile{File: f})
	if err != nil {
		t.Fatal(err)
	}
	ff, err := os.OpenFile(filepath.Join(dir, qemu.FuseFile), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer ff.Close()
	_, pol := testReleaseLog(t)
	owner, err := bootcheck.ReleaseKeyID(pol)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tos.ReadMinVersion(part, tos.DeriveRPMBKey(&qemu.DevSealingKey), qemu.NewFileFuse(emulate.OSFile{File: ff}), owner)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// A logged OS boots through the bootloader and serves; its identity carries
// the OS image's SHA-256; the RPMB minimum is raised to its release. Its
// store key is bound to the release key: the same files booted without the
// bootloader (no release key) do not open the vault's records, and booted
// through it again they do. Also measures boots through the bootloader
// against direct boots of the same OS.
func TestBootChainLoggedOSBoots(t *testing.T) {
	bootloader := bootloaderImage(t)
	ctx := context.Background()
	img, hash := osImage(t)
	l, _ := testReleaseLog(t)
	l.Append(releaselogtest.Release(1, "qemu", bytes.Repeat([]byte{1}, 32)))
	idx := l.Append(releaselogtest.Release(2, "qemu", hash))
	l.Append(releaselogtest.Release(2, "usbarmory", bytes.Repeat([]byte{2}, 32)))
	dir := t.TempDir()
	putBootFiles(t, dir, img, l.Proof(idx, 2))

	v := bootKernel(t, dir, bootloader)
	con := v.Console()
	for _, want := range []string{"coffer-boot: starting the OS", "booted by the bootloader", fmt.Sprintf("release %d", 2)} {
		if !strings.Contains(con, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if strings.Contains(con, "NOT BOOTED THROUGH THE BOOTLOADER") {
		t.Error("the OS says it was not booted by the bootloader")
	}
	id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(id.FirmwareHash, hash) {
		t.Fatalf("identity firmware hash %x, want the OS image's %x", id.FirmwareHash, hash)
	}
	var st protocol.StatusReply
	challenge := protocol.NewStatusRequest()
	req, _ := protocol.Encode(protocol.TypeStatus, challenge)
	reply, err := v.rt(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := protocol.Decode(reply, protocol.TypeStatus, &st); err != nil {
		t.Fatal(err)
	}
	status, err := st.Verify(id.SigningKey, challenge.Nonce)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	if !bytes.Equal(status.FirmwareHash, hash) {
		t.Fatalf("status firmware hash %x, want the OS image's %x, as the bootloader measured it", status.FirmwareHash, hash)
	}
	alice := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("alice")}
	key := bytes.Repeat([]byte{5}, 32)
	if _, err := alice.Register(ctx, []byte("pw"), key, 5); err != nil {
		t.Fatal(err)
	}
	v.kill()
	if got := minVersionIn(t, dir); got != 2 {
		t.Fatalf("RPMB minimum release version %d after booting release 2", got)
	}

	// The same files, the OS started directly: no release key, so another
	// store key; the vault's records do not open.
	d := boot(t, dir)
	if !strings.Contains(d.Console(), "NOT BOOTED THROUGH THE BOOTLOADER") {
		t.Error("a direct boot does not say so")
	}
	if _, err := testclient.FetchIdentity(ctx, d.rt, devProvisioningKey); err == nil {
		alice.RoundTrip = d.rt
		if s, _, err := alice.Login(ctx, []byte("pw")); err == nil && bytes.Equal(s.BackupKey, key) {
			t.Fatal("an OS without the release key opened the vault's records")
		}
	}
	t.Logf("direct boot on the bootloader's files: %s", d.status)
	d.kill()

	v = bootKernel(t, dir, bootloader)
	id2, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
	if err != nil {
		t.Fatal(err)
	}
	alice.RoundTrip, alice.Identity = v.rt, id2
	if s, _, err := alice.Login(ctx, []byte("pw")); err != nil || !bytes.Equal(s.BackupKey, key) {
		t.Fatalf("login through the bootloader again: %v", err)
	}
	v.kill()

	// Boot time through the bootloader against a direct boot (process
	// start to the ready line), same OS, fresh files each, alternated.
	var via, direct []time.Duration
	for range 5 {
		dd := t.TempDir()
		putBootFiles(t, dd, img, l.Proof(idx, 2))
		b := bootKernel(t, dd, bootloader)
		via = append(via, b.booted)
		b.kill()
		o := boot(t, t.TempDir())
		direct = append(direct, o.booted)
		o.kill()
	}
	med := func(d []time.Duration) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[len(d)/2]
	}
	t.Logf("boot to ready, median of %d: through the bootloader %s (fastest %s), direct %s (fastest %s); ratio of medians %.2f, of fastest %.2f",
		len(via), ms(med(via)), ms(via[0]), ms(med(direct)), ms(direct[0]),
		float64(med(via))/float64(med(direct)), float64(via[0])/float64(direct[0]))
}

// modifySymbols flips one byte of the image's symbol table: the loaded
// code is untouched (without the hash check it would boot and serve), only
// the SHA-256 changes.
func modifySymbols(t *testing.T, img []byte) []byte {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	s := f.Section(".symtab")
	if s == nil || s.Size < 64 {
		t.Fatal("the OS image has no symbol table")
	}
	out := bytes.Clone(img)
	out[s.Offset+s.Size/2] ^= 0x01
	return out
}

// A logged OS with one byte changed is refused, naming the hash mismatch.
func TestBootChainRefusesModifiedOS(t *testing.T) {
	bootloaderImage(t)
	img, hash := osImage(t)
	l, _ := testReleaseLog(t)
	idx := l.Append(releaselogtest.Release(1, "qemu", hash))
	dir := t.TempDir()
	putBootFiles(t, dir, modifySymbols(t, img), l.Proof(idx, 2))
	bootRefused(t, dir, "SHA-256 differs from the logged release's firmware hash")
}

// An OS that is not in the log is refused: its entry passed off under
// another entry's index and inclusion proof, a proof for another logged
// release, or a logged release whose checkpoint only one witness cosigned
// (the policy wants two).
func TestBootChainRefusesUnloggedOS(t *testing.T) {
	bootloaderImage(t)
	img, hash := osImage(t)
	l, _ := testReleaseLog(t)
	other := l.Append(releaselogtest.Release(1, "qemu", bytes.Repeat([]byte{7}, 32)))
	forged := l.Proof(other, 2)
	forged.Entry, _ = releaselogtest.Release(1, "qemu", hash).Marshal()
	idx := l.Append(releaselogtest.Release(2, "qemu", hash))
	for _, c := range []struct {
		name  string
		proof *releaselog.Proof
		want  string
	}{
		{"entry not in the log", forged, "not included"},
		{"proof for another release", l.Proof(other, 2), "SHA-256 differs"},
		{"one witness short", l.Proof(idx, 1), "lacks the witness cosignatures"},
		{"no witness", l.Proof(idx, 0), "lacks the witness cosignatures"},
	} {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) {
			dir := t.TempDir()
			putBootFiles(t, dir, img, c.proof)
			bootRefused(t, dir, c.want)
		})
	}
}

// Release 2 boots and a user registers; the upgrade to release 3 raises the
// RPMB minimum to 3 and keeps the vault (same release key); then release 2
// of the very same image, validly logged and witnessed, is refused, and
// release 3 still boots and serves the user.
func TestBootChainRefusesDowngrade(t *testing.T) {
	bootloader := bootloaderImage(t)
	ctx := context.Background()
	img, hash := osImage(t)
	l, _ := testReleaseLog(t)
	older := l.Append(releaselogtest.Release(2, "qemu", hash))
	newer := l.Append(releaselogtest.Release(3, "qemu", hash))
	dir := t.TempDir()
	key := bytes.Repeat([]byte{6}, 32)
	login := func(v *vm, register bool) {
		t.Helper()
		id, err := testclient.FetchIdentity(ctx, v.rt, devProvisioningKey)
		if err != nil {
			t.Fatal(err)
		}
		c := &testclient.Client{RoundTrip: v.rt, Identity: id, UserID: []byte("bob")}
		if register {
			if _, err := c.Register(ctx, []byte("pw"), key, 5); err != nil {
				t.Fatal(err)
			}
		}
		if s, _, err := c.Login(ctx, []byte("pw")); err != nil || !bytes.Equal(s.BackupKey, key) {
			t.Fatalf("login: %v", err)
		}
	}

	putBootFiles(t, dir, img, l.Proof(older, 2))
	v := bootKernel(t, dir, bootloader)
	login(v, true)
	v.kill()
	if got := minVersionIn(t, dir); got != 2 {
		t.Fatalf("minimum %d after booting release 2", got)
	}
	putBootFiles(t, dir, img, l.Proof(newer, 2))
	v = bootKernel(t, dir, bootloader)
	login(v, false)
	v.kill()
	if got := minVersionIn(t, dir); got != 3 {
		t.Fatalf("minimum %d after booting release 3", got)
	}

	putBootFiles(t, dir, img, l.Proof(older, 2))
	bootRefused(t, dir, "older than the minimum version this device boots: release 2, minimum 3")

	putBootFiles(t, dir, img, l.Proof(newer, 2))
	v = bootKernel(t, dir, bootloader)
	login(v, false)
}
