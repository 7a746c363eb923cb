//go:build tamago && board_qemu && arm

package qemu

import (
	"crypto/rand"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"

	// tamago's USB armory Mk II package: SoC init and console on UART2,
	// which is QEMU's second -serial.
	_ "github.com/usbarmory/tamago/board/usbarmory/mk2"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/internal/storage"
	"github.com/cofferhsm/coffer/internal/storage/emulate"
)

type qemuBoard struct {
	rand io.Reader
}

func init() { board.Register(&qemuBoard{}) }

func (*qemuBoard) Name() string { return "qemu-mcimx6ul-evk" }

func (b *qemuBoard) Init() error {
	if imx6ul.Native {
		return fmt.Errorf("qemu: this firmware is built for QEMU but runs on a real %s", imx6ul.Model())
	}
	if err := dma.Init(board.DMAStart, board.DMASize); err != nil {
		return err
	}
	imx6ul.UART1.Init()
	if f, err := shOpen("/dev/urandom", modeRB); err == nil {
		b.rand = f
	} else {
		log.Printf("qemu: WARNING: no host /dev/urandom through semihosting (%v); the applet gets tamago's time-seeded emulation RNG", err)
		b.rand = rand.Reader
	}
	return nil
}

func (*qemuBoard) Insecure() string {
	return "QEMU emulation: public development device key, store, RPMB anchor and fake OTP fuse in host files, no secure boot"
}

func (*qemuBoard) DeviceKey() ([32]byte, error) { return DevSealingKey, nil }

// SecureBootClosed: QEMU has no secure boot. The OS still provisions the
// emulated RPMB, because this board is emulated and flagged insecure.
func (*qemuBoard) SecureBootClosed() bool { return false }

func (*qemuBoard) RPMBKeyFuse() (board.Fuse, string, error) {
	f, err := openOrCreate(FuseFile)
	if err != nil {
		return nil, "", err
	}
	return NewFileFuse(f), "fake OTP fuse in the host file " + FuseFile, nil
}

func (*qemuBoard) DevProvisioningSeed() ([32]byte, bool) { return DevProvisioningSeed, true }

func (*qemuBoard) Storage() (storage.Device, storage.RPMBTransport, error) {
	sf, err := openOrCreate(StoreFile)
	if err != nil {
		return nil, nil, err
	}
	dev, err := emulate.NewFileDevice(sf, StoreSectors)
	if err != nil {
		return nil, nil, fmt.Errorf("qemu: %s: %w", StoreFile, err)
	}
	af, err := openOrCreate(AnchorFile)
	if err != nil {
		return nil, nil, err
	}
	rpmb, err := OpenEmulatedRPMB(af)
	if err != nil {
		return nil, nil, fmt.Errorf("qemu: %s: %w", AnchorFile, err)
	}
	return dev, rpmb, nil
}

func (*qemuBoard) MinAnchorInterval() time.Duration { return MinAnchorMillis * time.Millisecond }

func (b *qemuBoard) Rand() io.Reader { return b.rand }

func (*qemuBoard) Transport() (io.ReadWriter, error) { return newUARTLink(imx6ul.UART1), nil }

func (*qemuBoard) Halt(code int) { exit(code) }
