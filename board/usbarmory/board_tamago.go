//go:build tamago && board_usbarmory && arm

package usbarmory

import (
	"crypto/aes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"time"

	usbarmory "github.com/usbarmory/tamago/board/usbarmory/mk2"
	"github.com/usbarmory/tamago/dma"
	"github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/cofferhsm/coffer/board"
	"github.com/cofferhsm/coffer/internal/storage"
)

type mk2 struct{}

func init() { board.Register(&mk2{}) }

func (*mk2) Name() string {
	_, model := usbarmory.Model()
	return "usbarmory-mk2-" + model
}

func (*mk2) Init() error {
	if !imx6ul.Native {
		return errors.New("usbarmory: this firmware is for the USB armory; under QEMU build it with BOARD=qemu")
	}
	// The OS's DMA buffers (USB, uSDHC, DCP key derivation) in DDR, inside
	// the Secure World's memory, rather than in the OCRAM.
	if err := dma.Init(board.DMAStart, board.DMASize); err != nil {
		return err
	}
	switch imx6ul.Family {
	case imx6ul.IMX6UL:
		imx6ul.SetARMFreq(imx6ul.Freq528)
		imx6ul.CAAM.DeriveKeyMemory = dma.Default()
	case imx6ul.IMX6ULL:
		imx6ul.SetARMFreq(imx6ul.FreqMax)
		imx6ul.DCP.Init()
		imx6ul.DCP.DeriveKeyMemory = dma.Default()
	}
	return nil
}

func (*mk2) Insecure() string {
	if !imx6ul.SNVS.Available() {
		return "secure boot (HAB) is not closed: the SoC's unique key is the test key shared by every chip"
	}
	return ""
}

// DeviceKey derives the device-unique key from the SoC's OTPMK, and refuses
// while that key is the shared test key.
func (*mk2) DeviceKey() (key [32]byte, err error) {
	if !imx6ul.SNVS.Available() {
		return key, errors.New("secure boot is not enabled (SNVS not in trusted or secure state), so the SoC's unique key is a shared test key: refusing to seal secrets")
	}
	switch {
	case imx6ul.DCP != nil:
		iv := make([]byte, aes.BlockSize)
		a, err := imx6ul.DCP.DeriveKey([]byte(dcpDiversifierA), iv, -1)
		if err != nil {
			return key, fmt.Errorf("dcp: %w", err)
		}
		b, err := imx6ul.DCP.DeriveKey([]byte(dcpDiversifierB), iv, -1)
		if err != nil {
			return key, fmt.Errorf("dcp: %w", err)
		}
		h := sha256.New()
		h.Write(a)
		h.Write(b)
		h.Sum(key[:0])
		clear(a)
		clear(b)
	case imx6ul.CAAM != nil:
		k := make([]byte, 32)
		if err := imx6ul.CAAM.DeriveKey([]byte(caamDiversifier), k); err != nil {
			return key, fmt.Errorf("caam: %w", err)
		}
		copy(key[:], k)
		clear(k)
	default:
		return key, errors.New("no DCP or CAAM on this SoC")
	}
	return key, nil
}

func (*mk2) DevProvisioningSeed() ([32]byte, bool) { return [32]byte{}, false }

func (*mk2) SecureBootClosed() bool { return secureBootClosed() }

func (*mk2) RPMBKeyFuse() (board.Fuse, string, error) {
	return otpFuse{}, fmt.Sprintf("OCOTP_GP2 bit %d (bank %d, word %d)", RPMBFuseBit, RPMBFuseBank, RPMBFuseWord), nil
}

func (*mk2) Storage() (storage.Device, storage.RPMBTransport, error) {
	card := usbarmory.MMC
	if err := card.Detect(); err != nil {
		return nil, nil, fmt.Errorf("eMMC: %w", err)
	}
	info := card.Info()
	if !info.MMC || info.BlockSize != storage.SectorSize {
		return nil, nil, fmt.Errorf("eMMC: unexpected card (mmc %v, block size %d)", info.MMC, info.BlockSize)
	}
	if uint64(info.Blocks) < StoreFirstSector+StoreSectors {
		return nil, nil, fmt.Errorf("eMMC: %d sectors, the store needs %d", info.Blocks, StoreFirstSector+StoreSectors)
	}
	return &emmcDevice{card: card, first: StoreFirstSector, sectors: StoreSectors}, card, nil
}

func (*mk2) MinAnchorInterval() time.Duration { return MinAnchorMillis * time.Millisecond }

func (*mk2) Rand() io.Reader { return rand.Reader }

func (*mk2) Transport() (io.ReadWriter, error) { return startACM(usbarmory.USB1) }

func (*mk2) Halt(int) {
	for {
		time.Sleep(time.Hour)
	}
}
