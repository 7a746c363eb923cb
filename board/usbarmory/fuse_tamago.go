//go:build tamago && board_usbarmory && arm

package usbarmory

import (
	"fmt"

	"github.com/usbarmory/tamago/soc/nxp/imx6ul"

	"github.com/cofferhsm/coffer/board"
)

// otpFuse is the OCOTP fuse bit that records that the RPMB key was
// programmed (RPMBFuseBank, RPMBFuseWord, RPMBFuseBit).
//
// NOT YET TESTED ON HARDWARE, and blowing it is irreversible.
type otpFuse struct{}

var _ board.Fuse = otpFuse{}

func (otpFuse) Blown() (bool, error) {
	v, err := imx6ul.OCOTP.Read(RPMBFuseBank, RPMBFuseWord)
	if err != nil {
		return false, fmt.Errorf("ocotp: reading bank %d word %d: %w", RPMBFuseBank, RPMBFuseWord, err)
	}
	return v&(1<<RPMBFuseBit) != 0, nil
}

// Blow programs the one bit (OTP programming only sets bits, so the rest of
// the word is untouched) and reloads the shadow registers.
func (otpFuse) Blow() error {
	if err := imx6ul.OCOTP.Blow(RPMBFuseBank, RPMBFuseWord, 1<<RPMBFuseBit); err != nil {
		return fmt.Errorf("ocotp: blowing bank %d word %d bit %d: %w", RPMBFuseBank, RPMBFuseWord, RPMBFuseBit, err)
	}
	return nil
}

// secureBootClosed: the SEC_CONFIG[1] fuse is blown (HAB closed: the boot
// ROM authenticates the image) and the SNVS is in the trusted or secure
// state, in which the OTPMK, not the shared test key, is in use.
func secureBootClosed() bool {
	cfg5, err := imx6ul.OCOTP.Read(secConfigBank, secConfigWord)
	return err == nil && cfg5&(1<<secConfigBit) != 0 && imx6ul.SNVS.Available()
}
