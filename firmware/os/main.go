//go:build tamago && arm

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	_ "embed"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/firmware/api"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/protocol"
)

// The applet image, built first by firmware.mk.
//
//go:embed applet.elf
var appletELF []byte

// Version is set by the build (-X main.Version=...).
var Version = "dev"

// maxInFlight bounds the requests relayed to the applet at once.
const maxInFlight = 8

var bootTime = time.Now()

func logf(format string, args ...any) {
	log.Printf("[%8.3f] "+format, append([]any{time.Since(bootTime).Seconds()}, args...)...)
}

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	b, err := board.Current()
	if err != nil {
		halt(nil, "%v", err)
	}
	if err := b.Init(); err != nil {
		halt(b, "board init: %v", err)
	}
	initIdle()
	initSlices()
	appletHash := sha256.Sum256(appletELF)
	logf("coffer trusted OS %s (%s %s/%s) on %s", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH, b.Name())
	logf("applet image %d bytes, sha256 %x", len(appletELF), appletHash)
	boot, bootErr := takeBootInfo()
	// The firmware hash a vault reports: the OS image's, as the
	// bootloader measured it; without a bootloader, only the applet's.
	hash := appletHash
	var releaseKey tos.ReleaseKeyID
	switch {
	case bootErr == nil:
		hash, releaseKey = boot.OSHash, boot.ReleaseKey
		logf("booted by the bootloader: OS image sha256 %x, release %d, release key id %x", boot.OSHash, boot.Release, boot.ReleaseKey)
	case errors.Is(bootErr, tos.ErrNoBootInfo):
		shout("NOT BOOTED THROUGH THE BOOTLOADER",
			"no boot info: this OS was started directly, not checked against the release log",
			"its firmware hash is the applet's and its keys are not bound to a release key;",
			"no logged release matches it, so clients refuse it unless told --insecure")
	}

	flags := uint32(0)
	if why := b.Insecure(); why != "" {
		flags |= api.FlagInsecure
		shout("INSECURE VAULT", why,
			"its identity bundle is flagged insecure; clients refuse it unless told --insecure",
			"never keep real backup keys in it")
	}
	link, err := b.Transport()
	if err != nil {
		halt(b, "transport: %v", err)
	}
	if bootErr != nil && !errors.Is(bootErr, tos.ErrNoBootInfo) {
		shout("VAULT REFUSES SERVICE", "the bootloader's boot info is damaged: "+bootErr.Error(), "every request is answered with an error")
		refuseForever(link, protocol.Errorf(protocol.CodeUnavailable, "boot info damaged"))
	}
	deviceKey, err := b.DeviceKey()
	if err != nil {
		shout("VAULT DISABLED", err.Error(), "every request is answered with an error")
		refuseForever(link, protocol.Errorf(protocol.CodeUnavailable, "this device cannot protect secrets (%v)", err))
	}
	// One key per purpose; the device key itself goes no further.
	keys := tos.DeriveKeys(&deviceKey, releaseKey)
	clear(deviceKey[:])
	seed, dev := b.DevProvisioningSeed()
	if dev {
		flags |= api.FlagDevProvisioning | api.FlagEmulated
		pub := ed25519.NewKeyFromSeed(seed[:]).Public().(ed25519.PublicKey)
		logf("development provisioning public key (pin it only with --insecure): %x", pub)
	}
	device, rpmb, err := b.Storage()
	if err != nil {
		shout("VAULT DISABLED", "storage: "+err.Error(), "every request is answered with an error")
		refuseForever(link, protocol.Errorf(protocol.CodeUnavailable, "storage unavailable"))
	}
	logf("storage: %d sectors (%d MiB)", device.Sectors(), device.Sectors()>>11)
	fuse, where, err := b.RPMBKeyFuse()
	if err != nil {
		shout("VAULT DISABLED", "RPMB key fuse: "+err.Error(), "every request is answered with an error")
		refuseForever(link, protocol.Errorf(protocol.CodeUnavailable, "storage unavailable"))
	}
	logf("RPMB key fuse: %s", where)
	// The OS owns the RPMB partition and its key. Only an emulated board
	// flagged insecure may provision it with secure boot open.
	anchor, err := tos.OpenAnchor(tos.RPMBSetup{
		Transport:        rpmb,
		Key:              keys.RPMB,
		Fuse:             fuse,
		SecureBootClosed: b.SecureBootClosed(),
		InsecureEmulator: dev && flags&api.FlagInsecure != 0,
		Log:              func(line string) { logf("%s", line) },
	})
	if err != nil {
		shout("VAULT REFUSES SERVICE", "RPMB: "+err.Error(),
			"the RPMB key is never sent in the field; every request is answered with an error")
	} else if bootErr == nil {
		// No downgrade below this release from now on. Before the
		// applet starts: nothing else uses the RPMB yet.
		// A partition that fails it now is failing or tampered with, as
		// for the anchor: no service.
		// A block another release key owns: the bootloader refused it
		// already, unless it is another bootloader; the OS never writes
		// the partition for a foreign release key either.
		if err := tos.RaiseMinVersion(rpmb, keys.RPMB, boot.ReleaseKey, boot.Release); errors.Is(err, tos.ErrForeignReleaseKey) {
			shout("VAULT REFUSES SERVICE", "RPMB: "+err.Error(),
				"this device belongs to another release log; every request is answered with an error")
			refuseForever(link, protocol.Errorf(protocol.CodeUnavailable, "this device's RPMB partition belongs to another release key"))
		} else if err != nil {
			shout("VAULT REFUSES SERVICE", fmt.Sprintf("RPMB: raising the minimum release version to %d: %v", boot.Release, err),
				"every request is answered with an error")
			refuseForever(link, protocol.Errorf(protocol.CodeTampered, "the RPMB partition failed the device's integrity checks"))
		} else {
			logf("RPMB: minimum release version is now at least %d", boot.Release)
		}
	}

	relay := tos.NewRelay()
	svc := &tos.Service{
		Config: api.Config{
			Flags:               flags,
			MaxLimit:            protocol.DefaultLimit,
			Sectors:             device.Sectors(),
			MinAnchorMillis:     uint32(b.MinAnchorInterval() / time.Millisecond),
			StoreKey:            keys.Store,
			FirmwareHash:        hash,
			DevProvisioningSeed: seed,
			Board:               b.Name(),
		},
		Device:  device,
		Anchor:  anchor,
		Rand:    b.Rand(),
		Relay:   relay,
		Console: func(line string) { logf("applet: %s", line) },
		Ready:   func(status string) { logf("coffer: ready: %s", status) },
	}
	keys.Wipe()
	clear(seed[:])

	go serve(link, relay.Handle)
	sup, err := newSupervisor(svc, relay)
	if err != nil {
		halt(b, "applet region: %v", err)
	}
	sup.run()
}

// serve relays frames between the transport and h for ever.
func serve(link interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}, h protocol.Handler) {
	for {
		err := protocol.ServeStream(context.Background(), link, h, maxInFlight)
		logf("transport: %v", err)
		time.Sleep(100 * time.Millisecond)
	}
}

func refuseForever(link interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}, e *protocol.Error) {
	reply := protocol.EncodeError(e)
	serve(link, func(context.Context, []byte) []byte { return reply })
}

func shout(title string, lines ...string) {
	bar := strings.Repeat("*", 76)
	logf("%s", bar)
	logf("*** %s", title)
	for _, l := range lines {
		logf("*** %s", l)
	}
	logf("%s", bar)
}

func halt(b board.Board, format string, args ...any) {
	logf("coffer: FATAL: %s", fmt.Sprintf(format, args...))
	if b != nil {
		b.Halt(1)
	}
	for {
		time.Sleep(time.Hour)
	}
}
