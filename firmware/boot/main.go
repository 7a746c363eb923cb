//go:build tamago && arm

package main

import (
	_ "embed"
	"errors"
	"fmt"
	"log"
	"os"
	"runtime"
	"time"

	"github.com/usbarmory/tamago/dma"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/firmware/bootcheck"
	"github.com/cofferhsm/coffer/firmware/tos"
	"github.com/cofferhsm/coffer/protocol/releaselog"
)

// The release log policy this bootloader boots under: copied here by the
// build (firmware.mk, BOOT_POLICY).
//
//go:embed policy.txt
var policyText []byte

// Version is set by the build (-X main.Version=...).
var Version = "dev"

var bootTime = time.Now()

func logf(format string, args ...any) {
	log.Printf("[%8.3f] coffer-boot: "+format, append([]any{time.Since(bootTime).Seconds()}, args...)...)
}

func main() {
	log.SetFlags(0)
	log.SetOutput(os.Stdout)

	b, err := board.Current()
	if err != nil {
		halt(nil, "%v", err)
	}
	bt, ok := b.(board.Booter)
	if !ok {
		halt(b, "board %s cannot boot an OS", b.Name())
	}
	if err := b.Init(); err != nil {
		halt(b, "board init: %v", err)
	}
	logf("bootloader %s (%s) on %s", Version, runtime.Version(), b.Name())
	// No boot info survives from an earlier boot, whatever happens next.
	infoMem := reserve(b, board.BootInfoStart, tos.BootInfoSize)
	clear(infoMem)

	policy, err := releaselog.ParsePolicy(policyText)
	if err != nil {
		halt(b, "the compiled-in release log policy: %v", err)
	}
	keyID, err := bootcheck.ReleaseKeyID(policy)
	if err != nil {
		halt(b, "the compiled-in release log policy: %v", err)
	}
	logf("release log %q, release key %s (id %x), %d of %d witnesses", policy.Origin, policy.LogKey, keyID, policy.Quorum, len(policy.Witnesses))
	if err := bootcheck.CheckPolicy(policy, b.SecureBootClosed()); err != nil {
		refuse(b, "%v: this bootloader must not have been signed for this device", err)
	}
	if bootcheck.IsTestPolicy(policy) {
		logf("WARNING: this bootloader was built with a TEST policy whose private keys are public: it checks nothing")
	}

	minVersion, err := readMinVersion(b, bt, keyID)
	if err != nil {
		refuse(b, "minimum release version: %v", err)
	}
	logf("minimum release version (RPMB): %d", minVersion)

	osELF, proof, err := bt.BootImage()
	if err != nil {
		refuse(b, "reading the OS image: %v", err)
	}
	res, err := bootcheck.Check(policy, bt.ReleaseBoard(), osELF, proof, minVersion)
	if err != nil {
		refuse(b, "%v", err)
	}
	logf("OS image %d bytes, sha256 %x: release %d %q (commit %s), entry in a log of %d, cosigned by %q",
		len(osELF), res.Info.OSHash, res.Release.Version, res.Release.Name, res.Release.Commit,
		res.Checkpoint.Size, res.Checkpoint.Witnessed)

	osMem := reserve(b, board.OSStart, board.OSSize)
	entry, err := tos.LoadELF(osELF, tos.Image{
		Base:  board.OSStart,
		Size:  board.OSSize,
		Write: func(off uint32, p []byte) { copy(osMem[off:], p) },
		Name:  "OS image",
	})
	if err != nil {
		refuse(b, "%v", err)
	}
	info := res.Info.Marshal()
	copy(infoMem, info[:])
	logf("starting the OS at %#x", entry)
	startOS(entry)
}

// readMinVersion reads the minimum release version for release key keyID
// from RPMB under the device's RPMB key; a block another release key owns
// is a refusal (tos.ErrForeignReleaseKey). A board without its device key
// (a USB armory whose secure boot is open) can only have an RPMB partition
// Coffer never provisioned: that is minimum 0 while the provisioning fuse
// is not blown, and a refusal once it is.
func readMinVersion(b board.Board, bt board.Booter, keyID tos.ReleaseKeyID) (uint64, error) {
	fuse, _, err := b.RPMBKeyFuse()
	if err != nil {
		return 0, fmt.Errorf("RPMB key fuse: %w", err)
	}
	fuse = readOnlyFuse{fuse}
	dk, err := b.DeviceKey()
	if err != nil {
		if blown, ferr := fuse.Blown(); ferr != nil || blown {
			return 0, fmt.Errorf("no device key (%v), and the RPMB was provisioned", err)
		}
		logf("no device key (%v): the RPMB was never provisioned, minimum 0", err)
		return 0, nil
	}
	key := tos.DeriveRPMBKey(&dk)
	clear(dk[:])
	defer clear(key[:])
	part, err := bt.RPMB()
	if err != nil {
		return 0, err
	}
	return tos.ReadMinVersion(part, key, fuse, keyID)
}

// readOnlyFuse: the bootloader never blows the provisioning fuse.
type readOnlyFuse struct{ board.Fuse }

func (readOnlyFuse) Blow() error { return errors.New("the bootloader never blows the fuse") }

// reserve returns the memory [addr, addr+size) as a slice.
func reserve(b board.Board, addr uint, size int) []byte {
	r, err := dma.NewRegion(addr, size, false)
	if err != nil {
		halt(b, "memory %#x+%d: %v", addr, size, err)
	}
	got, mem := r.Reserve(size, 0)
	if got != addr || len(mem) != size {
		halt(b, "memory %#x+%d: reserved %#x+%d", addr, size, got, len(mem))
	}
	return mem
}

// refuse says why the OS does not boot, and halts.
func refuse(b board.Board, format string, args ...any) {
	logf("REFUSING TO BOOT THE OS: %s", fmt.Sprintf(format, args...))
	halt(b, "nothing booted")
}

func halt(b board.Board, format string, args ...any) {
	logf("HALT: %s", fmt.Sprintf(format, args...))
	if b != nil {
		b.Halt(1)
	}
	for {
		time.Sleep(time.Hour)
	}
}
