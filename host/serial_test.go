//go:build linux

package host

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cofferhsm/coffer/applet/vault/vaulttest/syncbuf"
	"github.com/cofferhsm/coffer/protocol"
	"github.com/cofferhsm/coffer/protocol/transport"
	"golang.org/x/sys/unix"
)

// openPTY returns a pseudo-terminal's master and the path of its slave, a
// stand-in for a USB armory's /dev/ttyACM0.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		t.Skipf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		t.Skipf("ptsname: %v", err)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// TestSerialDeviceOverAPseudoTerminal runs a software vault behind the
// master side of a pseudo-terminal and cofferd's serial device on the slave
// side: the serial path (open, line settings, framing over a tty, reconnect
// after the line drops) short of real USB hardware.
func TestSerialDeviceOverAPseudoTerminal(t *testing.T) {
	master, slave := openPTY(t)
	inst, pub, _ := softVault(t)
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() {
		defer close(served)
		protocol.ServeStream(ctx, master, inst.Vault.Handle, 16)
	}()
	t.Cleanup(func() { stop(); master.Close(); <-served })

	dev := NewStreamDevice("armory", transport.SerialDialer(slave, transport.DefaultUSBID), StreamOptions{Kind: "serial", Address: slave, MinBackoff: 10 * time.Millisecond, Log: quiet})
	accounts, accts, tokens := testAccounts(t, "alice")
	_, hs := testServer(t, Config{Devices: []Device{dev}, Store: accounts})
	waitFor(t, "the serial device to connect", dev.Connected)
	alice := userClient(t, hs.URL, tokens["alice"], accts["alice"], pub)
	if _, err := alice.Register(context.Background(), []byte("pw"), make([]byte, 32), 10); err != nil {
		t.Fatal(err)
	}
	s, _, err := alice.Login(context.Background(), []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Release(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestSerialAutoWithoutADevice: serial:auto with no matching USB port keeps
// the device disconnected (503), and says why in the log.
func TestSerialAutoWithoutADevice(t *testing.T) {
	var logs syncbuf.Buffer
	log := slogTo(&logs)
	// An id no real device uses.
	dev := NewStreamDevice("armory", transport.SerialDialer("auto", transport.USBID{Vendor: 0xffff, Product: 0xfffe}), StreamOptions{MinBackoff: 10 * time.Millisecond, Log: log})
	defer dev.Close()
	waitFor(t, "a failed dial", func() bool { return strings.Contains(logs.String(), "cannot connect") })
	if dev.Connected() {
		t.Fatal("connected to nothing")
	}
	if _, err := dev.RoundTrip(context.Background(), []byte{0}); err == nil {
		t.Fatal("round trip to nothing")
	}
	if !strings.Contains(logs.String(), "ffff:fffe") && !strings.Contains(logs.String(), "serial ports") {
		t.Fatalf("log does not say why:\n%s", logs.String())
	}
}
