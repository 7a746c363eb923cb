package qemu

import (
	"bytes"
	"errors"
	"io"
)

// FileFuse is the QEMU board's fake of the OTP fuse the OS blows before it
// programs the RPMB key (on the USB armory: board/usbarmory, OCOTP_GP2 bit
// 0): a host file that is empty until the fuse is blown, and then holds
// fileFuseBlown. Unlike a real fuse, whoever controls the host can delete
// it; the QEMU board is insecure anyway.
type FileFuse struct{ f File }

var fileFuseBlown = []byte("coffer fake OTP fuse: RPMB key programmed\n")

// NewFileFuse returns the fake fuse kept in f.
func NewFileFuse(f File) *FileFuse { return &FileFuse{f: f} }

// Blown reports whether the fuse is blown. A file that is neither empty nor
// blown is an error, never taken for a fuse that is not blown.
func (u *FileFuse) Blown() (bool, error) {
	size, err := u.f.Size()
	if err != nil {
		return false, err
	}
	if size == 0 {
		return false, nil
	}
	b := make([]byte, len(fileFuseBlown)+1)
	n, err := u.f.ReadAt(b, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	if int64(n) != size || !bytes.Equal(b[:n], fileFuseBlown) {
		return false, errors.New("qemu: the fake fuse file is damaged")
	}
	return true, nil
}

// Blow blows the fuse.
func (u *FileFuse) Blow() error {
	_, err := u.f.WriteAt(fileFuseBlown, 0)
	return err
}
