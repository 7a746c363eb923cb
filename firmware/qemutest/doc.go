// Package qemutest boots the Coffer firmware (Trusted OS + Trusted Applet)
// in QEMU's mcimx6ul-evk and tests it through its protocol UART, as a host
// would: boot to ready, the insecure identity bundle, registration, recovery,
// counted wrong passwords and lockout, state kept across a killed QEMU
// (once, and at random moments during logins over many runs), damaged and
// oversized frames, a rolled-back store image, and an applet's crash, hang,
// read of the OS's memory and semihosting calls; and three instances at
// once serving one 2-of-3 realm version (protocol/REALMS.md), one of them
// stopped, another killed right after a counted evaluation.
//
// The tests need qemu-system-arm and a QEMU firmware image named by
// COFFER_FIRMWARE; they skip, saying why, when either is missing, so a plain
// `go test ./...` does not boot QEMU. `make test-firmware` builds the image
// (with the coffer_crashtest tag, for the restart test) and runs them.
// COFFER_QEMU names another QEMU binary.
package qemutest
