// Package qemutest boots the Coffer firmware (Trusted OS + Trusted Applet)
// in QEMU's mcimx6ul-evk and tests it through its protocol UART, as a host
// would: boot to ready, the insecure identity bundle, registration, recovery,
// counted wrong passwords and lockout, state kept across a killed QEMU,
// damaged and oversized frames, and a rolled-back store image.
//
// The tests need qemu-system-arm and a built QEMU firmware image; they skip,
// saying why, when either is missing. `make test-firmware` builds the image
// and runs them. COFFER_FIRMWARE names the image (default
// build/firmware/qemu/coffer-os.elf), COFFER_QEMU the QEMU binary.
package qemutest
